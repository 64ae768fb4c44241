using System.Globalization;
using Microsoft.Extensions.Configuration;
using QmTunnel.Engine.Management;

namespace QmTunnel.Server;

/// <summary>
/// Command line of qmtunnel-server: --port/--listen/--data-path/--log-file/--allow-plain-links (or their configuration
/// key names, and --name=value) onto the configuration keys Port/ListenAddress/DataPath/LogFile/AllowPlainLinks, over
/// QMTUNNEL_ environment variables. An unknown option or a missing value is an error (exit code 2), never ignored.
/// </summary>
internal static class ServerCommandLine
{
    /// <summary>The service name given to the Windows service lifetime (sc.exe create qmTunnel ...).</summary>
    public const string WindowsServiceName = "qmTunnel";

    /// <summary>Prefix of the environment variables read as settings (QMTUNNEL_Port, QMTUNNEL_ListenAddress, ...).</summary>
    public const string EnvironmentPrefix = "QMTUNNEL_";

    public const string Usage = """
        usage: qmtunnel-server [--port 9200] [--listen 127.0.0.1] [--data-path DIR] [--log-file FILE] [--allow-plain-links true|false]
          --port       link port (default 9200; 0 picks a free port)
          --listen     interface address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
          --data-path  folder of the LiteDB database (default $QMTUNNEL_DATA or ~/.local/share/qmTunnel)
          --log-file   append everything the server prints to this file instead of the console
          --allow-plain-links true|false
                       accept unencrypted links (qmt+plain://) too; saved in the database (default: the saved value, off)
          --certificate FILE      the server's certificate instead of the generated one: .pfx, or PEM (with its key)
          --certificate-key FILE  the PEM private key, when not in the certificate file
          --password-iterations N PBKDF2 iterations of password verifiers (saved; default 600000, at least 100000)
          --max-pending-links N   connections that have not logged in yet, at most (default 1000); over it the oldest
                                  waiting one is closed to make room
          --max-pending-links-per-source N
                                  the same per IPv4 address or IPv6 /64 (default 64); over it a new one is closed at once
          --accept-compression true|false
                                  compress the links dialers ask to compress (default true; false: answer None)
          --udp-port-range FIRST-LAST
                                  local ports of the UDP sockets this server dials udp:// targets from (saved;
                                  default 33001-63000)
          --log-max-size MIB      with --log-file: start a new file when it reaches this size (default 10; 0: never)
          --log-files N           with --log-file: old files kept, FILE.1 (newest) to FILE.N (default 3)
          --secrets-from-stdin    read the secrets below from standard input, as lines Name=value, until its end
        The certificate's password, if any, and the admin password of a first start never come from the command line:
        from standard input (--secrets-from-stdin: CertificatePassword=..., AdminPassword=...) or from the environment
        (QMTUNNEL_CertificatePassword, QMTUNNEL_AdminPassword); once read they are wiped from the process environment.
        Without an admin password a first start generates one and leaves it in DATA/initial-admin-password,
        owner-only: read it, then delete the file.
        Each can also be set by an environment variable (QMTUNNEL_Port, QMTUNNEL_ListenAddress, QMTUNNEL_DataPath,
        QMTUNNEL_LogFile, QMTUNNEL_AllowPlainLinks); the command line wins. SIGTERM or Ctrl+C stops the server
        gracefully. Running it as a systemd or Windows service: see docs/service.md.
        """;

    /// <summary>Option (and the configuration key name, accepted as an option too) → configuration key.</summary>
    private static readonly Dictionary<string, string> Options = new(StringComparer.OrdinalIgnoreCase)
    {
        ["--port"] = "Port",
        ["--listen"] = "ListenAddress",
        ["--listenaddress"] = "ListenAddress",
        ["--data-path"] = "DataPath",
        ["--datapath"] = "DataPath",
        ["--log-file"] = "LogFile",
        ["--logfile"] = "LogFile",
        ["--allow-plain-links"] = "AllowPlainLinks",
        ["--certificate"] = "CertificatePath",
        ["--certificatepath"] = "CertificatePath",
        ["--certificate-key"] = "CertificateKeyPath",
        ["--certificatekeypath"] = "CertificateKeyPath",
        ["--allowplainlinks"] = "AllowPlainLinks",
        ["--password-iterations"] = "PasswordIterations",
        ["--passworditerations"] = "PasswordIterations",
        ["--max-pending-links"] = "MaxPendingLinks",
        ["--maxpendinglinks"] = "MaxPendingLinks",
        ["--max-pending-links-per-source"] = "MaxPendingLinksPerSource",
        ["--maxpendinglinkspersource"] = "MaxPendingLinksPerSource",
        ["--accept-compression"] = "AcceptCompression",
        ["--acceptcompression"] = "AcceptCompression",
        ["--udp-port-range"] = "UdpPortRange",
        ["--udpportrange"] = "UdpPortRange",
        ["--log-max-size"] = "LogMaxSize",
        ["--logmaxsize"] = "LogMaxSize",
        ["--log-files"] = "LogFiles",
        ["--logfiles"] = "LogFiles",
    };

    public static bool WantsHelp(string[] args) => args.Any(a => a is "-h" or "--help" or "-?");

    /// <summary>
    /// The settings: QMTUNNEL_ environment variables, then the command line over them.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown option, a value without an option, or an option without a value.</exception>
    public static IConfiguration ReadSettings(string[] args) => ReadSettings(args, Console.In);

    /// <summary>As above; with --secrets-from-stdin the secrets are read from <paramref name="stdin"/> until its end.</summary>
    public static IConfiguration ReadSettings(string[] args, TextReader stdin)
    {
        var values = Parse(args);
        if (values.Remove(SecretsFromStdin))
        {
            foreach (var (name, value) in Secrets.Read(stdin))
            {
                values[name] = value;
            }
        }
        return new ConfigurationBuilder()
            .AddEnvironmentVariables(EnvironmentPrefix)
            .AddInMemoryCollection(values)
            .Build();
    }

    /// <summary>The flag that makes the daemon read its secrets from standard input (Start-QmTunnelServer -Daemon uses it).</summary>
    private const string SecretsFromStdin = "SecretsFromStdin";

    /// <summary>The command line as configuration keys and values (the last one wins when an option repeats).</summary>
    public static Dictionary<string, string?> Parse(string[] args)
    {
        var values = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            var name = arg;
            string? value = null;
            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && equals > 2)
            {
                name = arg[..equals];
                value = arg[(equals + 1)..];
            }
            if (string.Equals(name, "--secrets-from-stdin", StringComparison.OrdinalIgnoreCase) && value is null)
            {
                values[SecretsFromStdin] = "true";
                continue;
            }
            if (!Options.TryGetValue(name, out var key))
            {
                throw new ArgumentException(arg.StartsWith('-')
                    ? $"unknown option '{name}'."
                    : $"unexpected argument '{arg}' (every value follows its option, as in --port 9200).");
            }
            if (value is null)
            {
                if (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    throw new ArgumentException($"{name} needs a value.");
                }
                value = args[++i];
            }
            values[key] = value;
        }
        return values;
    }

    /// <summary>
    /// The log file settings: --log-file (null: none), --log-max-size (MiB, or a number with KiB/MiB/GiB; 0: never
    /// rotate; at least 4 KiB otherwise) and --log-files (old files kept, 0 to 100).
    /// </summary>
    /// <exception cref="ArgumentException">A value out of range or not a number.</exception>
    public static (string? Path, long MaxBytes, int Keep) ReadLogOptions(IConfiguration config)
    {
        var path = config["LogFile"] is { Length: > 0 } file ? file : null;
        var maxBytes = LogFile.DefaultMaxBytes;
        if (config["LogMaxSize"] is { } sizeText)
        {
            var match = System.Text.RegularExpressions.Regex.Match(sizeText.Trim(), @"^(?<n>\d{1,10})\s*(?<unit>KiB|MiB|GiB|K|M|G)?$", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
            if (!match.Success)
            {
                throw new ArgumentException($"--log-max-size '{sizeText}' is not a size: give MiB (10), or a number with KiB, MiB or GiB (512KiB).");
            }
            var unit = match.Groups["unit"].Value.ToUpperInvariant();
            var shift = unit.StartsWith('K') ? 10 : unit.StartsWith('G') ? 30 : 20;
            maxBytes = long.Parse(match.Groups["n"].Value, CultureInfo.InvariantCulture) << shift;
            if (maxBytes is > 0 and < 4096 || maxBytes > 1L << 40)
            {
                throw new ArgumentException($"--log-max-size '{sizeText}' is out of range: give 0 (never start a new file) or 4KiB to 1024GiB (10 MiB is the default).");
            }
        }
        var keep = ReadInt(config, "LogFiles", "--log-files", "0 to 100") ?? LogFile.DefaultKeep;
        if (keep > 100)
        {
            throw new ArgumentException($"--log-files {keep} is out of range: give 0 to 100 ({LogFile.DefaultKeep} is the default).");
        }
        return (path, maxBytes, keep);
    }

    /// <summary>A whole number setting, or null when not given; <paramref name="range"/> is for the message.</summary>
    internal static int? ReadInt(IConfiguration config, string key, string option, string range)
    {
        if (config[key] is not { } text)
        {
            return null;
        }
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new ArgumentException($"{option} '{text}' is not a whole number from {range}.");
    }

    public static ServerOptions ReadOptions(IConfiguration config)
    {
        var options = new ServerOptions { ProcessId = Environment.ProcessId };
        if (config["Port"] is { } portText)
        {
            if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port))
            {
                throw new ArgumentException($"--port '{portText}' is not a number from 0 to 65535.");
            }
            options = options with { Port = port };
        }
        if (config["ListenAddress"] is { } listen)
        {
            options = options with { ListenAddress = listen };
        }
        if (config["DataPath"] is { } dataPath)
        {
            options = options with { DataPath = Path.GetFullPath(dataPath) };
        }
        if (config["AllowPlainLinks"] is { } plain)
        {
            if (!bool.TryParse(plain, out var allow))
            {
                throw new ArgumentException($"--allow-plain-links '{plain}' is not true or false.");
            }
            options = options with { AllowPlainLinks = allow };
        }
        if (config["AcceptCompression"] is { } acceptCompression)
        {
            if (!bool.TryParse(acceptCompression, out var accept))
            {
                throw new ArgumentException($"--accept-compression '{acceptCompression}' is not true or false.");
            }
            options = options with { AcceptCompression = accept };
        }
        if (config["CertificatePath"] is { } certificate)
        {
            options = options with { CertificatePath = Path.GetFullPath(certificate) };
        }
        if (config["CertificateKeyPath"] is { } key)
        {
            options = options with { CertificateKeyPath = Path.GetFullPath(key) };
        }
        if (config["CertificatePassword"] is { } password)
        {
            options = options with { CertificatePassword = password };
        }
        if (config["AdminPassword"] is { } adminPassword)
        {
            options = options with { AdminPassword = adminPassword };
        }
        if (config["PasswordIterations"] is { } iterationsText)
        {
            if (!int.TryParse(iterationsText, NumberStyles.None, CultureInfo.InvariantCulture, out var iterations))
            {
                throw new ArgumentException($"--password-iterations '{iterationsText}' is not a number from 100000 to 10000000.");
            }
            options = options with { PasswordIterations = iterations };
        }
        if (config["UdpPortRange"] is { } udpPorts)
        {
            options = options with { UdpPortRange = udpPorts };
        }
        if (ReadInt(config, "MaxPendingLinks", "--max-pending-links", "1 to 1000000") is { } maxPending)
        {
            options = options with { MaxPendingLinks = maxPending };
        }
        if (ReadInt(config, "MaxPendingLinksPerSource", "--max-pending-links-per-source", "1 to --max-pending-links") is { } maxPerSource)
        {
            options = options with { MaxPendingLinksPerSource = maxPerSource };
        }
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", errors));
        }
        return options;
    }
}
