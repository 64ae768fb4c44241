using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Set-QmTunnel: changes the settings given (and only those) of each tunnel given; the engine checks the result
/// and saves it. Settings not given keep their current value, so -NoDelay:$false turns TCP_NODELAY off while
/// leaving -NoDelay out changes nothing.
/// </summary>
[Cmdlet(VerbsCommon.Set, "QmTunnel", SupportsShouldProcess = true, DefaultParameterSetName = ByName)]
[OutputType(typeof(TunnelInfo))]
public sealed class SetQmTunnelCommand : TunnelActionCmdlet
{
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Listen { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? Via { get; set; }

    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Target { get; set; }

    [Parameter]
    public int MaxConnections { get; set; }

    [Parameter]
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

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private static readonly string[] Settings =
    [
        nameof(Listen), nameof(Via), nameof(Target), nameof(MaxConnections), nameof(ConnectTimeout), nameof(NoDelay),
        nameof(KeepAlive), nameof(BufferSize), nameof(Description), nameof(Persistent),
    ];

    private HashSet<string> _changed = [];

    protected override string Action =>
        _changed.Count == 0 ? "Set (no setting given)" : "Set " + string.Join(", ", Settings.Where(_changed.Contains));

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        _changed = [.. Settings.Where(MyInvocation.BoundParameters.ContainsKey)];
    }

    protected override void Process(string name)
    {
        var tunnel = Wait(Engine.SetTunnelAsync(name, Change, CancellationToken));
        if (PassThru)
        {
            WriteObject(tunnel);
        }
    }

    /// <summary>The profile with the bound settings applied; runs inside the engine, so it reads only this cmdlet's fields.</summary>
    private TunnelProfile Change(TunnelProfile p) => p with
    {
        Listen = _changed.Contains(nameof(Listen)) ? Listen! : p.Listen,
        Via = _changed.Contains(nameof(Via)) ? [.. Via!] : p.Via,
        Target = _changed.Contains(nameof(Target)) ? Target! : p.Target,
        MaxConnections = _changed.Contains(nameof(MaxConnections)) ? MaxConnections : p.MaxConnections,
        ConnectTimeout = _changed.Contains(nameof(ConnectTimeout)) ? ConnectTimeout : p.ConnectTimeout,
        NoDelay = _changed.Contains(nameof(NoDelay)) ? NoDelay.IsPresent : p.NoDelay,
        KeepAlive = _changed.Contains(nameof(KeepAlive)) ? KeepAlive.IsPresent : p.KeepAlive,
        BufferSize = _changed.Contains(nameof(BufferSize)) ? BufferSize : p.BufferSize,
        Description = _changed.Contains(nameof(Description)) ? Description ?? string.Empty : p.Description,
        Persistent = _changed.Contains(nameof(Persistent)) ? Persistent.IsPresent : p.Persistent,
    };
}
