using System.Diagnostics;
using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.PingFlood;

/// <summary>
/// qmtunnel-pingflood: a logged-in peer that sends Ping frames and never reads what the server sends back (the attack
/// of issue 7, 1.6). It logs in like any link (TLS without pinning, or plain), then writes --count Pings in batches
/// and prints how many the server's TCP took, once a second, until all are sent or --seconds pass; then it closes.
/// It measures nothing on the server: sample the server's RSS from outside (/proc/PID/status). The figures of
/// docs/security.md came from (bash, in a network namespace of one's own):
/// <code>
/// QMTUNNEL_AdminPassword=flood-admin-pw dotnet out/qmTunnel/daemon/qmtunnel-server.dll --port 9400 --data-path /tmp/flood ///     --log-file /tmp/flood/server.log --password-iterations 100000 &amp;
/// while sleep 1; do grep VmRSS /proc/$!/status; done &amp;
/// dotnet build bench/QmTunnel.PingFlood -c Release
/// dotnet bench/QmTunnel.PingFlood/bin/Release/net10.0/qmtunnel-pingflood.dll --port 9400 --user admin --password flood-admin-pw --count 20000000 --seconds 60
/// </code>
/// </summary>
public static class Program
{
    private const string Usage = """
        usage: qmtunnel-pingflood --port P --user U --password PW [--host 127.0.0.1] [--plain] [--count 20000000] [--seconds 60]
        The password may also come from QMTUNNEL_FLOOD_PASSWORD.
        """;

    public static async Task<int> Main(string[] args)
    {
        var options = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--plain")
            {
                options["plain"] = "1";
            }
            else if (args[i].StartsWith("--", StringComparison.Ordinal) && i + 1 < args.Length)
            {
                options[args[i][2..]] = args[++i];
            }
            else
            {
                Console.Error.WriteLine(Usage);
                return 2;
            }
        }
        var password = options.GetValueOrDefault("password") ?? Environment.GetEnvironmentVariable("QMTUNNEL_FLOOD_PASSWORD");
        if (!options.TryGetValue("port", out var portText) || !options.TryGetValue("user", out var user) || password is null)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }
        var host = options.GetValueOrDefault("host") ?? "127.0.0.1";
        var port = int.Parse(portText, CultureInfo.InvariantCulture);
        var count = long.Parse(options.GetValueOrDefault("count") ?? "20000000", CultureInfo.InvariantCulture);
        var seconds = int.Parse(options.GetValueOrDefault("seconds") ?? "60", CultureInfo.InvariantCulture);

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(host, port);
        Stream? tls = null;
        byte[] binding = [];
        if (!options.ContainsKey("plain"))
        {
            var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = host,
                RemoteCertificateValidationCallback = (_, _, _, _) => true, // a measuring tool on loopback: no pin
            });
            binding = PasswordChallenge.TlsServerEndPoint(ssl.RemoteCertificate!);
            tls = ssl;
        }
        // The link is never started: nothing ever reads this socket again after the login.
        _ = await Link.HandshakeAsDialerAsync(socket, new LinkOptions(), NullLogger.Instance, CancellationToken.None, tls,
            new PasswordLogin(user, password), binding, $"{host}:{port}");
        Console.WriteLine($"logged in as {user}; sending {count} Pings without reading");

        const int batchPings = 4096, frame = FrameHeader.Size + 8;
        var batch = new byte[batchPings * frame];
        for (var i = 0; i < batchPings; i++)
        {
            new FrameHeader(FrameType.Ping, FrameFlags.None, 0, 8).Write(batch.AsSpan(i * frame));
        }
        long sent = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var sending = Task.Run(async () =>
        {
            while (sent < count)
            {
                var n = (int)Math.Min(batchPings, count - sent);
                if (tls is not null)
                {
                    await tls.WriteAsync(batch.AsMemory(0, n * frame), stop.Token);
                }
                else
                {
                    await socket.SendAsync(batch.AsMemory(0, n * frame), SocketFlags.None, stop.Token);
                }
                Interlocked.Add(ref sent, n);
            }
        });
        var clock = Stopwatch.StartNew();
        while (!sending.IsCompleted)
        {
            await Task.WhenAny(sending, Task.Delay(1000));
            Console.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s: {Interlocked.Read(ref sent),10} Pings taken by the server's TCP");
        }
        Console.WriteLine(sending.IsCompletedSuccessfully
            ? $"all {count} Pings sent"
            : $"stopped after {seconds} s with {Interlocked.Read(ref sent)} Pings sent: the server stopped reading");
        socket.Dispose();
        return 0;
    }
}
