using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// New-QmTunnel: defines a tunnel, owned by the caller, on the server (-Session, or the in-process one; saved unless
/// -Persistent:$false) and outputs it, stopped; Start-QmTunnel starts it. Settings not given keep the original
/// qmTunnel's defaults. The engine checks the settings and the URIs; this cmdlet only gathers them.
/// </summary>
[Cmdlet(VerbsCommon.New, "QmTunnel", SupportsShouldProcess = true, HelpUri = HelpLinks.Base + "New-QmTunnel.md")]
[OutputType(typeof(TunnelInfo))]
public sealed class NewQmTunnelCommand : ServerCmdlet
{
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Listen { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 2)]
    [ValidateNotNullOrEmpty]
    public object[] Via { get; set; } = null!;

    /// <summary>Where connections go; left out for a socks5:// listener (each SOCKS5 client names its target), needed otherwise.</summary>
    [Parameter(Position = 3)]
    [ValidateNotNullOrEmpty]
    public string? Target { get; set; }

    /// <summary>
    /// LocalToRemote (default): listen here, reach -Target from the last server of -Via. RemoteToLocal: a reverse tunnel,
    /// listening on the last server of -Via and reaching -Target from this server, which only dials out; always Permanent.
    /// </summary>
    [Parameter]
    public TunnelDirection Direction { get; set; }

    [Parameter]
    public int MaxConnections { get; set; }

    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan ConnectTimeout { get; set; }

    [Parameter]
    public SwitchParameter NoDelay { get; set; }

    [Parameter]
    public SwitchParameter KeepAlive { get; set; }

    [Parameter]
    public int BufferSize { get; set; }

    [Parameter]
    [AllowEmptyString]
    public string? Description { get; set; }

    [Parameter]
    public SwitchParameter Persistent { get; set; }

    /// <summary>Hold the chain up whenever the tunnel runs, clients or not (redialed with backoff when it breaks).</summary>
    [Parameter]
    public SwitchParameter Permanent { get; set; }

    /// <summary>Bring the chain up for the first client and take it down after -IdleTimeout without one.</summary>
    [Parameter]
    public SwitchParameter OnDemand { get; set; }

    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan IdleTimeout { get; set; }

    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan FailureTolerance { get; set; }

    /// <summary>udp:// tunnels: end an association after this long without a datagram in either direction (default 60 s).</summary>
    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan UdpIdleTimeout { get; set; }

    protected override void EndProcessing()
    {
        // Only what was given replaces a default; switches are on unless turned off (-NoDelay:$false).
        try
        {
            var (via, logins) = QmTunnelHop.Split(Via);
            var profile = TunnelSettings.Apply(
                new TunnelProfile { Name = Name, Listen = Listen, Via = via, Target = Target ?? string.Empty },
                TunnelSettings.Given(MyInvocation));
            if (Direction == TunnelDirection.RemoteToLocal)
            {
                // A reverse tunnel holds its far listener up: Permanent unless a mode was asked for (the server refuses any other).
                profile = profile with
                {
                    Direction = Direction,
                    Mode = MyInvocation.BoundParameters.ContainsKey(nameof(Permanent)) || OnDemand.IsPresent ? profile.Mode : TunnelMode.Permanent,
                };
            }
            // Refused here as the server would refuse it, so -WhatIf says so too.
            QmTunnelEngine.CheckProfile(profile);
            QmTunnelEngine.CheckHopLogins(profile, logins);
            WarnOfOpenSocksListener();
            var shape = Direction == TunnelDirection.RemoteToLocal
                ? $"{Listen} on {via[^1]} -> back through {string.Join(" <- ", via)} -> {Target}"
                : $"{Listen} -> {string.Join(" -> ", via)} -> {Target ?? "(target per connection)"}";
            if (!ShouldProcess($"tunnel '{Name}'{OnServer}: {shape}", "Create"))
            {
                return;
            }
            // The server logs in through the whole chain before it saves the tunnel: a hop that does not answer takes
            // up to -ConnectTimeout per server.
            WriteObject(WaitWithProgress(TargetServer.NewTunnelAsync(profile, logins, CancellationToken), "New-QmTunnel",
                $"Tunnel '{Name}': logging in through {string.Join(", ", via)}", profile.ConnectTimeout * via.Length));
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
    }

    /// <summary>A SOCKS5 listener asks for no password: say so when it is bound where other hosts can reach it.</summary>
    private void WarnOfOpenSocksListener()
    {
        var listen = Engine.Endpoints.EndpointUri.ParseApplication(Listen, "Listen");
        if (listen.Scheme != Engine.Endpoints.EndpointScheme.Socks5 || string.Equals(listen.Host, "localhost", StringComparison.OrdinalIgnoreCase)
            || (System.Net.IPAddress.TryParse(listen.Host, out var address) && System.Net.IPAddress.IsLoopback(address)))
        {
            return;
        }
        WriteWarning($"Tunnel '{Name}' takes SOCKS5 clients on {listen.HostPort} without a password: anyone who reaches that address uses the tunnel's " +
            $"logins, to every target the allow-rules allow. Use -Listen socks5://127.0.0.1:{listen.Port} unless that is what you want.");
    }
}
