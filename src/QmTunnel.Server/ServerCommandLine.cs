using System.Globalization;
using Microsoft.Extensions.Configuration;
using QmTunnel.Engine.Management;

namespace QmTunnel.Server;

/// <summary>Command line of qmtunnel-server: maps --port/--listen/--data-path onto configuration keys.</summary>
internal static class ServerCommandLine
{
    public const string Usage = """
        usage: qmtunnel-server [--port 9200] [--listen 127.0.0.1] [--data-path DIR]
          --port       link port (default 9200; 0 picks a free port)
          --listen     interface address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
          --data-path  folder of the LiteDB database (default $QMTUNNEL_DATA or ~/.local/share/qmTunnel)
          --log-file   append everything the server prints to this file instead of the console
        """;

    public static bool WantsHelp(string[] args) => args.Any(a => a is "-h" or "--help" or "-?");

    /// <summary>Accepts --data-path as well as --DataPath, and --listen for ListenAddress.</summary>
    public static string[] Normalize(string[] args) => args.Select(a => a switch
    {
        "--data-path" => "--DataPath",
        "--listen" => "--ListenAddress",
        "--port" => "--Port",
        "--log-file" => "--LogFile",
        _ => a,
    }).ToArray();

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
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", errors));
        }
        return options;
    }
}
