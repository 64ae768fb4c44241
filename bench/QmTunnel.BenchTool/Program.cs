using System.Globalization;

namespace QmTunnel.BenchTool;

/// <summary>
/// qmtunnel-bench: the load generator and echo target of bench/Invoke-QmTunnelBench.ps1. Loopback only by default.
/// Servers print "LISTENING &lt;port&gt;" once they accept; clients print one JSON object (or READY/CLOSED lines for
/// idle). With --watch-stdin 1 a command also ends when its standard input ends (or reads "stop"), so nothing
/// outlives the bench script that started it. It measures; it does not judge (goals and ratios are the bench script's).
/// </summary>
public static class Program
{
    private const string Usage = """
        usage: qmtunnel-bench <command> [options]
          echo-server        --port P [--address 127.0.0.1]                    echo every byte back (port 0: pick one)
          sink-server        --port P [--address 127.0.0.1]                    read and discard
          pingpong           --port P --count N [--size 64] [--warmup 1000]    one connection, N round trips: median/p99 us
          connect-first-byte --port P --count N [--warmup 50] [--socks5-target host:port]
                             new connection + 1 byte echoed, N times; with --socks5-target, P is a SOCKS5 proxy and each
                             connection CONNECTs to that target first (greeting + request + replies, timed)
          idle               --port P --count N --hold-seconds S [--concurrency 64]
                             open N connections (1 byte echoed on each), print READY, hold S seconds or until stdin ends
          stream             --port P --seconds S [--parallel K] [--mode echo|sink] [--chunk 131072] [--data random|text]
                             text: log-like lines that compress about 4-8x (random: incompressible, the default)
          flood              --port P --count N [--sources 127.0.0.10-127.0.0.29] [--mode silent|clienthello|plain|tls]
                             [--reopen 0|1] [--hold-seconds 600] [--concurrency 256]
                             N connections to a qmTunnel server that never log in, round-robin over the source addresses;
                             prints READY once all were tried, STATUS every second, a JSON summary at the end
          resume-probe       --port P --proxy-port Q --target-port T [--cuts 20]
                             a proxy on Q to the server on T (the tunnel's hop must be Q), 1-byte round trips through the
                             tunnel on P; resets the proxied link --cuts times: ms from the cut to the next echo
          churn              --port P --proxy-port Q --target-port T [--slots 1000] [--seconds 180] [--cut-every 5]
                             --slots connections at a time, each connect + 2-byte echo + close, over and over, through a
                             tunnel whose hop is the proxy on Q; every link connection reset each --cut-every seconds
          udp-echo-server    --port P [--address 127.0.0.1]                    every datagram back to its sender
          udp-echo-load      --port P [--seconds 5] [--size 64] [--window 64]
                             one socket, up to --window datagrams in flight: answers/s and Mbit/s (each way), lost %
        common: [--host 127.0.0.1] [--watch-stdin 1: stop when standard input ends or reads "stop"]
        """;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Error.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        Options options;
        try
        {
            options = Options.Parse(args.AsSpan(1));
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine(ex.Message);
            Console.Error.WriteLine(Usage);
            return 2;
        }

        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        if (options.Int("watch-stdin", 0) != 0)
        {
            StdinWatch.Start(stop);
        }
        try
        {
            return args[0] switch
            {
                "echo-server" => await Servers.RunAsync(options, echo: true, stop.Token),
                "sink-server" => await Servers.RunAsync(options, echo: false, stop.Token),
                "pingpong" => await Clients.PingPongAsync(options, stop.Token),
                "connect-first-byte" => await Clients.ConnectFirstByteAsync(options, stop.Token),
                "idle" => await Clients.IdleAsync(options, stop.Token),
                "stream" => await Clients.StreamAsync(options, stop.Token),
                "flood" => await Flood.RunAsync(options, stop.Token),
                "resume-probe" => await ResumeProbe.RunAsync(options, stop.Token),
                "churn" => await ResumeProbe.ChurnAsync(options, stop.Token),
                "udp-echo-server" => await Udp.EchoServerAsync(options, stop.Token),
                "udp-echo-load" => await Udp.EchoLoadAsync(options, stop.Token),
                _ => UnknownCommand(args[0]),
            };
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return 130;
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or IOException or TimeoutException or InvalidDataException)
        {
            Console.Error.WriteLine($"qmtunnel-bench {args[0]}: {ex.GetType().Name}: {ex.Message}");
            return 1;
        }
    }

    private static int UnknownCommand(string command)
    {
        Console.Error.WriteLine($"unknown command '{command}'");
        Console.Error.WriteLine(Usage);
        return 2;
    }
}

/// <summary>"--name value" pairs; numbers parsed invariantly. Does not know which options a command needs.</summary>
public sealed class Options
{
    private readonly Dictionary<string, string> _values = new(StringComparer.OrdinalIgnoreCase);

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var options = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            if (!name.StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new ArgumentException($"expected '--name value', got '{name}'");
            }
            options._values[name[2..]] = args[++i];
        }
        return options;
    }

    public string Host => String("host", "127.0.0.1");

    public string String(string name, string fallback) => _values.TryGetValue(name, out var v) ? v : fallback;

    public int Int(string name, int? fallback = null)
    {
        if (_values.TryGetValue(name, out var v))
        {
            return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= 0
                ? n
                : throw new ArgumentException($"--{name} must be a whole number >= 0, got '{v}'");
        }
        return fallback ?? throw new ArgumentException($"--{name} is required");
    }
}

/// <summary>Cancels when standard input ends (the parent closed it or died) or a line "stop" arrives.</summary>
internal static class StdinWatch
{
    public static void Start(CancellationTokenSource stop)
    {
        if (!Console.IsInputRedirected)
        {
            return;
        }
        var thread = new Thread(() =>
        {
            try
            {
                string? line;
                while ((line = Console.In.ReadLine()) is not null)
                {
                    if (line.Trim().Equals("stop", StringComparison.OrdinalIgnoreCase))
                    {
                        break;
                    }
                }
            }
            catch (IOException)
            {
                // Treated as end of input.
            }
            stop.Cancel();
        })
        {
            IsBackground = true,
            Name = "stdin watch",
        };
        thread.Start();
    }
}
