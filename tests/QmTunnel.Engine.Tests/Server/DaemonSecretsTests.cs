using System.Diagnostics;
using System.Text;
using QmTunnel.Server;

namespace QmTunnel.Engine.Tests.Server;

/// <summary>The daemon's passwords: from standard input or the environment, never left in /proc/PID/environ.</summary>
public sealed class DaemonSecretsTests
{
    [Fact]
    public void Secrets_on_standard_input_become_settings_and_nothing_else_is_accepted()
    {
        var settings = ServerCommandLine.ReadSettings(["--port", "0", "--secrets-from-stdin"], new StringReader("AdminPassword=a=b c\r\nCertificatePassword=pfx\n"));
        Assert.Equal("a=b c", settings["AdminPassword"]);
        Assert.Equal("pfx", settings["CertificatePassword"]);
        Assert.Equal("0", settings["Port"]);
        Assert.Null(settings["SecretsFromStdin"]);
        Assert.Contains("Port", Assert.Throws<ArgumentException>(() => ServerCommandLine.ReadSettings(["--secrets-from-stdin"], new StringReader("Port=1\n"))).Message);
        Assert.Throws<ArgumentException>(() => ServerCommandLine.ReadSettings(["--secrets-from-stdin"], new StringReader("no equals sign\n")));
        Assert.Throws<ArgumentException>(() => ServerCommandLine.ReadSettings(["--secrets-from-stdin"], new StringReader(new string('x', 20_000))));
        // Without the flag, standard input is not read.
        Assert.Null(ServerCommandLine.ReadSettings([], new StringReader("AdminPassword=x\n"))["AdminPassword"]);
    }

    [Fact]
    public async Task A_daemon_given_its_admin_password_by_environment_wipes_it_from_proc_environ()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        var data = Path.Combine(Path.GetTempPath(), "qmt-secrets-" + Guid.NewGuid().ToString("n"));
        const string password = "env-secret-password-5a1f";
        var daemon = typeof(ServerCommandLine).Assembly.Location;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var arg in new[] { daemon, "--port", "0", "--data-path", data, "--password-iterations", "100000" })
        {
            start.ArgumentList.Add(arg);
        }
        start.Environment["QMTUNNEL_AdminPassword"] = password;
        using var process = Process.Start(start)!;
        try
        {
            string? line;
            do
            {
                line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            }
            while (line is not null && !line.Contains("listening on", StringComparison.Ordinal));
            Assert.NotNull(line);
            var environ = Encoding.UTF8.GetString(await File.ReadAllBytesAsync($"/proc/{process.Id}/environ"));
            Assert.DoesNotContain(password, environ, StringComparison.Ordinal);
            var cmdline = Encoding.UTF8.GetString(await File.ReadAllBytesAsync($"/proc/{process.Id}/cmdline"));
            Assert.DoesNotContain(password, cmdline, StringComparison.Ordinal);
            Assert.Contains("PATH=", environ, StringComparison.Ordinal); // the block was read: the scan above is real
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact]
    public void Accept_compression_is_read_from_the_command_line_and_a_value_that_is_not_a_boolean_is_refused()
    {
        Assert.Null(ServerCommandLine.ReadOptions(ServerCommandLine.ReadSettings(["--port", "0"], new StringReader(""))).AcceptCompression); // the saved value (true on a new server)
        Assert.False(ServerCommandLine.ReadOptions(ServerCommandLine.ReadSettings(["--accept-compression", "false"], new StringReader(""))).AcceptCompression);
        var e = Assert.Throws<ArgumentException>(() => ServerCommandLine.ReadOptions(ServerCommandLine.ReadSettings(["--accept-compression", "no"], new StringReader(""))));
        Assert.Contains("--accept-compression 'no' is not true or false", e.Message, StringComparison.Ordinal);
    }
}
