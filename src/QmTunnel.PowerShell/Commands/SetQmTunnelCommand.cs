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
    public object[]? Via { get; set; }

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

    private Dictionary<string, object?> _given = [];
    private TunnelChange _change = new();

    protected override string Action =>
        _given.Count == 0 ? "Set (no setting given)" : "Set " + string.Join(", ", TunnelSettings.Names.Where(_given.ContainsKey));

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        _given = TunnelSettings.Given(MyInvocation);
        _change = TunnelSettings.ToChange(_given);
    }

    protected override void Process(IQmTunnelServer server, string name)
    {
        var logins = Via is null ? null : QmTunnelHop.Split(Via).Logins;
        var tunnel = Wait(server.SetTunnelAsync(name, _change, logins, CancellationToken));
        if (PassThru)
        {
            WriteObject(tunnel);
        }
    }
}
