using Microsoft.Extensions.Configuration;
using QmTunnel.Server;

namespace QmTunnel.Engine.Tests.Daemon;

/// <summary>The daemon's log file on its own (without taking over this process's fds 1 and 2), and its settings.</summary>
public sealed class LogFileTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("qmt-log-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void It_starts_a_new_file_before_passing_its_limit_and_keeps_the_newest_old_files_in_order()
    {
        var path = Path.Combine(_folder, "server.log");
        using (var log = LogFile.Open(path, maxBytes: 4096, keep: 2, captureStdio: false))
        {
            for (var i = 0; i < 200; i++)
            {
                log.WriteLine($"line {i:D4} {new string('.', 90)}"); // 101 bytes each
            }
        }
        Assert.False(File.Exists(path + ".3"));
        string[] files = [path + ".2", path + ".1", path];
        Assert.All(files, f => Assert.True(new FileInfo(f).Length <= 4096, $"{f} is {new FileInfo(f).Length} bytes"));
        var lines = files.SelectMany(File.ReadAllLines).Select(l => int.Parse(l[5..9], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(Enumerable.Range(200 - lines.Count, lines.Count), lines); // the last ones, in order, none lost between files
        Assert.Equal(199, lines[^1]);
        foreach (var file in files)
        {
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
            }
        }
    }

    [Fact]
    public void With_no_limit_it_never_starts_a_new_file()
    {
        var path = Path.Combine(_folder, "server.log");
        using (var log = LogFile.Open(path, maxBytes: 0, keep: 2, captureStdio: false))
        {
            for (var i = 0; i < 100; i++)
            {
                log.Write(new string('x', 100));
            }
        }
        Assert.Equal(10_000, new FileInfo(path).Length);
        Assert.False(File.Exists(path + ".1"));
    }

    [Theory]
    [InlineData(null, null, 10L * 1024 * 1024, 3)]
    [InlineData("25", "5", 25L * 1024 * 1024, 5)]
    [InlineData("512KiB", "0", 512L * 1024, 0)]
    [InlineData("1 GiB", null, 1L << 30, 3)]
    [InlineData("0", null, 0L, 3)]
    public void The_log_settings_are_read_with_their_defaults(string? size, string? files, long expectedBytes, int expectedKeep)
    {
        var values = new Dictionary<string, string?> { ["LogFile"] = "x.log" };
        if (size is not null)
        {
            values["LogMaxSize"] = size;
        }
        if (files is not null)
        {
            values["LogFiles"] = files;
        }
        var (path, maxBytes, keep) = ServerCommandLine.ReadLogOptions(new ConfigurationBuilder().AddInMemoryCollection(values).Build());
        Assert.Equal("x.log", path);
        Assert.Equal(expectedBytes, maxBytes);
        Assert.Equal(expectedKeep, keep);
    }

    [Theory]
    [InlineData("--log-max-size", "10 potatoes", "--log-max-size '10 potatoes' is not a size")]
    [InlineData("--log-max-size", "1KiB", "out of range")]
    [InlineData("--log-files", "101", "--log-files 101 is out of range")]
    [InlineData("--log-files", "-1", "--log-files '-1' is not a whole number")]
    [InlineData("--max-pending-links", "0", "MaxPendingLinks 0 is out of range")]
    [InlineData("--max-pending-links-per-source", "2000", "MaxPendingLinksPerSource 2000 is out of range")]
    [InlineData("--max-pending-links", "lots", "--max-pending-links 'lots' is not a whole number")]
    public void Bad_values_are_refused_naming_the_option(string option, string value, string message)
    {
        var settings = ServerCommandLine.ReadSettings([option, value]);
        var error = Assert.Throws<ArgumentException>(() =>
        {
            ServerCommandLine.ReadOptions(settings);
            ServerCommandLine.ReadLogOptions(settings);
        });
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void The_pending_link_caps_come_from_the_command_line()
    {
        var options = ServerCommandLine.ReadOptions(ServerCommandLine.ReadSettings(["--max-pending-links", "300", "--max-pending-links-per-source", "10"]));
        Assert.Equal(300, options.MaxPendingLinks);
        Assert.Equal(10, options.MaxPendingLinksPerSource);
        var defaults = ServerCommandLine.ReadOptions(ServerCommandLine.ReadSettings([]));
        Assert.Equal(1000, defaults.MaxPendingLinks);
        Assert.Equal(64, defaults.MaxPendingLinksPerSource);
    }
}
