using System.Globalization;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Management.Remote;

/// <summary>
/// The pins of the servers a management client connected to (trust on first use, like ssh's known_hosts): one line per
/// server, <c>host:port SHA256-THUMBPRINT first-seen</c>, in an owner-only text file, by default
/// <c>known-servers.txt</c> in the user's qmTunnel folder (<see cref="ServerOptions.DefaultDataPath"/>). A changed
/// certificate is refused with CertificateMismatch; deleting the server's line accepts the new one.
/// </summary>
public sealed class ClientKnownServers(string path) : IKnownServers
{
    public static string DefaultPath => Path.Combine(ServerOptions.DefaultDataPath, "known-servers.txt");

    private static readonly Lock Gate = new();

    public string FilePath { get; } = path;

    public IReadOnlyList<KnownServer> GetAll()
    {
        lock (Gate)
        {
            if (!File.Exists(FilePath))
            {
                return [];
            }
            var result = new List<KnownServer>();
            foreach (var line in File.ReadAllLines(FilePath))
            {
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 2 && !line.StartsWith('#'))
                {
                    var seen = parts.Length >= 3 && DateTimeOffset.TryParse(parts[2], CultureInfo.InvariantCulture, DateTimeStyles.None, out var t) ? t : DateTimeOffset.MinValue;
                    result.Add(new KnownServer { Server = parts[0], Thumbprint = parts[1], FirstSeen = seen }.With(QmTunnelOrigin.ClientPins(FilePath)));
                }
            }
            return result;
        }
    }

    public string? Find(string server) =>
        GetAll().FirstOrDefault(k => string.Equals(k.Server, server, StringComparison.OrdinalIgnoreCase))?.Thumbprint;

    /// <summary>Forgets the pin of <paramref name="server"/> (host:port); false when there was none.</summary>
    public bool Remove(string server)
    {
        lock (Gate)
        {
            if (!File.Exists(FilePath))
            {
                return false;
            }
            var lines = File.ReadAllLines(FilePath);
            var kept = lines.Where(l => !string.Equals(l.Split(' ', 2)[0], server, StringComparison.OrdinalIgnoreCase)).ToArray();
            if (kept.Length == lines.Length)
            {
                return false;
            }
            var temporary = FilePath + ".tmp";
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            using (var writer = new StreamWriter(temporary, System.Text.Encoding.UTF8, options))
            {
                foreach (var line in kept)
                {
                    writer.WriteLine(line);
                }
            }
            File.Move(temporary, FilePath, overwrite: true); // all or nothing
            return true;
        }
    }

    public void Add(string server, string thumbprint)
    {
        lock (Gate)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);
            var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows() && !File.Exists(FilePath))
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            using var writer = new StreamWriter(FilePath, System.Text.Encoding.UTF8, options);
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{server.ToLowerInvariant()} {thumbprint} {DateTimeOffset.UtcNow:O}"));
        }
    }
}
