using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Set-QmTunnelServerConfig: changes the saved settings given (and only those) of the server (-Session, or the
/// in-process one); they apply at once (AllowPlainLinks to the next link accepted, PasswordIterations to the next
/// password set, the session limits to the next session, MaxStreamsPerLink to the next stream, MaxLinks to the next
/// link accepted, MaxBufferedMB at once, the idle timeouts to what is idle now, UdpPortRange to the next UDP association, AcceptCompression to the next link accepted) and are kept across restarts. The engine checks the ranges (ServerSettingInvalid).
/// A configuration piped in (Get-QmTunnelServerConfig) says which server: the one it came from (ServerInputCmdlet).
/// </summary>
[Cmdlet(VerbsCommon.Set, "QmTunnelServerConfig", SupportsShouldProcess = true, HelpUri = HelpLinks.Base + "Set-QmTunnelServerConfig.md")]
[OutputType(typeof(ServerConfig))]
public sealed class SetQmTunnelServerConfigCommand : ServerInputCmdlet
{
    /// <summary>Accept unencrypted links (-AllowPlainLinks) or refuse them (-AllowPlainLinks:$false), as Start-QmTunnelServer -AllowPlainLinks.</summary>
    [Parameter]
    public SwitchParameter AllowPlainLinks { get; set; }

    [Parameter]
    public int PasswordIterations { get; set; }

    [Parameter]
    public int MaxManagementSessions { get; set; }

    [Parameter]
    public int MaxManagementSessionsPerUser { get; set; }

    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan ManagementIdleTimeout { get; set; }

    [Parameter]
    public int MaxStreamsPerLink { get; set; }

    [Parameter]
    [SecondsTimeSpan]
    public TimeSpan LinkIdleTimeout { get; set; }

    [Parameter]
    public int MaxLinks { get; set; }

    [Parameter]
    public int MaxBufferedMB { get; set; }

    /// <summary>Local ports of the UDP sockets the server dials udp:// targets from, FIRST-LAST (default 33001-63000).</summary>
    [Parameter]
    public string UdpPortRange { get; set; } = string.Empty;

    /// <summary>
    /// Agree to compress the links accepted from now on when their dialer asks (-AcceptCompression), or answer every
    /// dialer None (-AcceptCompression:$false); links up keep what they agreed.
    /// </summary>
    [Parameter]
    public SwitchParameter AcceptCompression { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var server = ServerFor(Origin, "server configuration", null);
        if (server is null)
        {
            return;
        }
        var given = MyInvocation.BoundParameters;
        // The idle timeouts' ranges are checked here too, so -WhatIf refuses what the server would refuse.
        foreach (var (name, value) in new[] { (nameof(ManagementIdleTimeout), ManagementIdleTimeout), (nameof(LinkIdleTimeout), LinkIdleTimeout) })
        {
            if (given.ContainsKey(name) && TimeSpanRange.Problem(name, value, QmTunnelEngine.MinIdleTimeout, QmTunnelEngine.MaxIdleTimeout) is { } problem)
            {
                ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument, value, problem));
            }
        }
        var change = new ServerConfigChange
        {
            AllowPlainLinks = given.ContainsKey(nameof(AllowPlainLinks)) ? AllowPlainLinks.IsPresent : null,
            PasswordIterations = given.ContainsKey(nameof(PasswordIterations)) ? PasswordIterations : null,
            MaxManagementSessions = given.ContainsKey(nameof(MaxManagementSessions)) ? MaxManagementSessions : null,
            MaxManagementSessionsPerUser = given.ContainsKey(nameof(MaxManagementSessionsPerUser)) ? MaxManagementSessionsPerUser : null,
            ManagementIdleTimeout = given.ContainsKey(nameof(ManagementIdleTimeout)) ? ManagementIdleTimeout : null,
            MaxStreamsPerLink = given.ContainsKey(nameof(MaxStreamsPerLink)) ? MaxStreamsPerLink : null,
            LinkIdleTimeout = given.ContainsKey(nameof(LinkIdleTimeout)) ? LinkIdleTimeout : null,
            MaxLinks = given.ContainsKey(nameof(MaxLinks)) ? MaxLinks : null,
            MaxBufferedMB = given.ContainsKey(nameof(MaxBufferedMB)) ? MaxBufferedMB : null,
            UdpPortRange = given.ContainsKey(nameof(UdpPortRange)) ? UdpPortRange : null,
            AcceptCompression = given.ContainsKey(nameof(AcceptCompression)) ? AcceptCompression.IsPresent : null,
        };
        if (change.UdpPortRange is { } ports && QmTunnel.Engine.Endpoints.UdpPortRange.Parse(ports).Problem is { } portProblem)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument, ports, portProblem));
        }
        var fields = new[]
        {
            change.AllowPlainLinks is { } allow ? $"AllowPlainLinks = {allow}" : null,
            change.PasswordIterations is { } iterations ? $"PasswordIterations = {iterations}" : null,
            change.MaxManagementSessions is { } max ? $"MaxManagementSessions = {max}" : null,
            change.MaxManagementSessionsPerUser is { } perUser ? $"MaxManagementSessionsPerUser = {perUser}" : null,
            change.ManagementIdleTimeout is { } managementIdle ? $"ManagementIdleTimeout = {managementIdle}" : null,
            change.MaxStreamsPerLink is { } streams ? $"MaxStreamsPerLink = {streams}" : null,
            change.LinkIdleTimeout is { } linkIdle ? $"LinkIdleTimeout = {linkIdle}" : null,
            change.MaxLinks is { } links ? $"MaxLinks = {links}" : null,
            change.MaxBufferedMB is { } mb ? $"MaxBufferedMB = {mb}" : null,
            change.UdpPortRange is { } range ? $"UdpPortRange = {range}" : null,
            change.AcceptCompression is { } accept ? $"AcceptCompression = {accept}" : null,
        }.Where(f => f is not null).ToList();
        if (!ShouldProcess("server configuration" + On(server), fields.Count == 0 ? "Set (no setting given)" : "Set " + string.Join(", ", fields)))
        {
            return;
        }
        try
        {
            var config = Wait(server.SetServerConfigAsync(change, CancellationToken));
            if (PassThru)
            {
                WriteObject(config);
            }
        }
        catch (QmTunnelException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
    }
}
