using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Set-QmTunnel: changes the settings given (and only those) of each tunnel given; the engine checks the result
/// and saves it. Settings not given keep their current value, so -NoDelay:$false turns TCP_NODELAY off while
/// leaving -NoDelay out changes nothing.
/// </summary>
[Cmdlet(VerbsCommon.Set, "QmTunnel", SupportsShouldProcess = true, DefaultParameterSetName = ByName, HelpUri = HelpLinks.Base + "Set-QmTunnel.md")]
[OutputType(typeof(TunnelInfo))]
public sealed class SetQmTunnelCommand : TunnelActionCmdlet
{
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Listen { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public object[]? Via { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Target { get; set; }

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

    /// <summary>
    /// A tunnel's direction never changes: given (or bound from a piped object's Direction), it must be the tunnel's own;
    /// another is refused with TunnelSettingInvalid saying how to change it (remove the tunnel and create it again).
    /// </summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public TunnelDirection Direction { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private Dictionary<string, object?> _given = [];
    private TunnelChange _change = new();

    protected override string Action =>
        _given.Count == 0 ? "Set (no setting given)" : "Set " + string.Join(", ", TunnelSettings.Names.Where(_given.ContainsKey)) + RestartNote;

    /// <summary>What the change does to a running tunnel, for -WhatIf and -Confirm.</summary>
    private string RestartNote => (TunnelSettings.Restarts(_given)
        ? $" (restarts the tunnel if it is running and {string.Join(", ", TunnelSettings.RestartingNames.Where(_given.ContainsKey))} changes: its open connections are closed)"
        : " (no restart: open connections go on; new connections use the new settings)") + ModeNote;

    /// <summary>What a mode switch does to a running tunnel.</summary>
    private string ModeNote => TunnelSettings.ModeNames.Any(_given.ContainsKey)
        ? " (a running tunnel takes the new mode at once, without restarting its listener: the chain is held up or let go)"
        : string.Empty;

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        _given = TunnelSettings.Given(MyInvocation);
        try
        {
            _change = TunnelSettings.ToChange(_given);
            // The given values checked as the server would check them, before -WhatIf: every setting not given keeps a
            // valid value of the sample, so only a given one can be at fault.
            QmTunnelEngine.CheckProfile(_change.Apply(TunnelSettings.Sample));
        }
        catch (QmTunnelException ex)
        {
            var target = ex.ErrorId == Engine.Errors.ErrorIds.EndpointUriInvalid || Name is null ? ex.Target : string.Join(", ", Name);
            ThrowTerminatingError(NewErrorRecord(ex.ErrorId, ex.Kind, target, ex.Message, ex));
        }
    }

    protected override void Process(IQmTunnelServer server, string name)
    {
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Direction)))
        {
            var current = InputObject?.FirstOrDefault(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase))?.Direction
                ?? Wait(server.GetTunnelAsync(name, CancellationToken)).Direction;
            if (current != Direction)
            {
                throw new QmTunnelException(Engine.Errors.ErrorIds.TunnelSettingInvalid, QmErrorKind.InvalidArgument, name, DirectionFixed(name, current, Direction));
            }
        }
        var logins = Via is null ? null : QmTunnelHop.Split(Via).Logins;
        var tunnel = WaitWithProgress(server.SetTunnelAsync(name, _change, logins, CancellationToken), "Set-QmTunnel", $"Changing tunnel '{name}'");
        if (PassThru)
        {
            WriteObject(tunnel);
        }
    }

    /// <summary>Why -Direction cannot change tunnel <paramref name="name"/>, and how to get a tunnel of the other direction.</summary>
    internal static string DirectionFixed(string name, TunnelDirection current, TunnelDirection wanted) =>
        $"Tunnel '{name}' is {current}, and Set-QmTunnel cannot change the direction of a tunnel: a {wanted} tunnel listens on " +
        (wanted == TunnelDirection.RemoteToLocal ? "the last server of -Via and reaches its target from this server" : "this server and reaches its target from the last server of -Via") +
        $", so it is another tunnel. Remove it and create it again: Remove-QmTunnel {name}; New-QmTunnel {name} " +
        (wanted == TunnelDirection.RemoteToLocal
            ? "-Direction RemoteToLocal -Listen <address on the last server of -Via> -Via <hops> -Target <address reached from this server>."
            : "-Listen <address on this server> -Via <hops> -Target <address reached from the last server of -Via>.");
}
