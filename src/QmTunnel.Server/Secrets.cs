using System.Runtime.InteropServices;
using System.Text;

namespace QmTunnel.Server;

/// <summary>
/// The daemon's secrets (the admin password of a first start, the certificate's password): read from standard input
/// when Start-QmTunnelServer -Daemon hands them over (<c>--secrets-from-stdin</c>: <c>Name=value</c> lines until end of
/// input), or from the environment (QMTUNNEL_AdminPassword, QMTUNNEL_CertificatePassword: how a service manager gives
/// them). Either way, once read they are wiped from the process environment, including the block
/// <c>/proc/PID/environ</c> shows, so they do not stay readable there for the daemon's life. It does not keep them:
/// the caller puts them in the server options.
/// </summary>
internal static class Secrets
{
    /// <summary>The secrets a daemon may be given, by their configuration key.</summary>
    public static readonly string[] Names = ["AdminPassword", "CertificatePassword"];

    /// <summary>Longest input accepted on stdin (two passwords of at most 1024 characters fit many times).</summary>
    private const int MaxInput = 16 * 1024;

    /// <summary>
    /// Reads <c>Name=value</c> lines from <paramref name="input"/> until its end. ArgumentException for an unknown
    /// name, a line without '=', or more than <see cref="MaxInput"/> characters.
    /// </summary>
    public static Dictionary<string, string?> Read(TextReader input)
    {
        var values = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        var buffer = new char[MaxInput + 1];
        var length = 0;
        int n;
        while ((n = input.Read(buffer, length, buffer.Length - length)) > 0)
        {
            length += n;
            if (length > MaxInput)
            {
                throw new ArgumentException($"--secrets-from-stdin: more than {MaxInput} characters on standard input.");
            }
        }
        foreach (var line in new string(buffer, 0, length).Split('\n'))
        {
            var text = line.TrimEnd('\r');
            if (text.Length == 0)
            {
                continue;
            }
            var equals = text.IndexOf('=', StringComparison.Ordinal);
            var name = equals > 0 ? text[..equals] : text;
            if (equals <= 0 || !Names.Contains(name, StringComparer.OrdinalIgnoreCase))
            {
                throw new ArgumentException($"--secrets-from-stdin: '{(equals > 0 ? name : "a line without '='")}' is not one of {string.Join(", ", Names)} (lines are Name=value).");
            }
            values[name] = text[(equals + 1)..];
        }
        Array.Clear(buffer);
        return values;
    }

    /// <summary>Removes QMTUNNEL_&lt;name&gt; for every secret from the environment, overwriting the original bytes first.</summary>
    public static void WipeFromEnvironment()
    {
        foreach (var name in Names)
        {
            var variable = ServerCommandLine.EnvironmentPrefix + name;
            if (!OperatingSystem.IsWindows())
            {
                // getenv points into the block the kernel shows as /proc/PID/environ (unless something setenv'd it since):
                // overwrite the value there, then drop the variable from libc's list.
                var value = getenv(variable);
                if (value != IntPtr.Zero)
                {
                    for (var i = 0; Marshal.ReadByte(value, i) != 0; i++)
                    {
                        Marshal.WriteByte(value, i, (byte)'*');
                    }
                    _ = unsetenv(variable);
                }
            }
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    // DllImport (not LibraryImport): the project allows no unsafe code; names are ASCII, marshalled as UTF-8 on Unix.
    [DllImport("libc", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
#pragma warning disable SYSLIB1054
    private static extern IntPtr getenv(string name);

    [DllImport("libc", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int unsetenv(string name);
#pragma warning restore SYSLIB1054
}
