using QmTunnel.Engine.Endpoints;

namespace QmTunnel.Engine.Management;

/// <summary>
/// The server's UDP setting: the outgoing UDP port range its UDP associations are dialed from at the end of a chain
/// (saved; ServerOptions.UdpPortRange at start and Set-QmTunnelServerConfig -UdpPortRange change it; the next
/// association takes a change, open ones keep their port).
/// </summary>
public sealed partial class QmTunnelEngine
{
    private const string UdpPortFirstSetting = "udpPortFirst";
    private const string UdpPortLastSetting = "udpPortLast";

    /// <summary>The outgoing UDP port range now.</summary>
    public UdpPortRange UdpPortRange => _udp.PortRange;

    /// <summary>Ports of the range held by open UDP associations this server dialed.</summary>
    public int UdpPortsInUse => _udp.PortsInUse;

    /// <summary>At start (under the gate): ServerOptions' range is saved; then the saved one (the default when unset or invalid) is used.</summary>
    private void ReadUdpSettings()
    {
        var store = _store!;
        if (Options.UdpPortRange is { } given && UdpPortRange.Parse(given).Range is { } range)
        {
            store.SetIntSetting(UdpPortFirstSetting, range.First);
            store.SetIntSetting(UdpPortLastSetting, range.Last);
        }
        _udp.PortRange = store.GetIntSetting(UdpPortFirstSetting) is { } first && store.GetIntSetting(UdpPortLastSetting) is { } last
            && UdpPortRange.Problem(first, last) is null ? new UdpPortRange(first, last) : UdpPortRange.Default;
    }

    /// <summary>ServerSettingInvalid when the change's UdpPortRange is no valid range.</summary>
    private static void CheckUdpSettings(ServerConfigChange change)
    {
        if (change.UdpPortRange is { } text && UdpPortRange.Parse(text).Problem is { } problem)
        {
            throw SettingInvalid(text, problem);
        }
    }

    /// <summary>Saves and applies the change's UdpPortRange (checked before). Under the gate.</summary>
    private void ApplyUdpSettings(ServerConfigChange change)
    {
        if (change.UdpPortRange is { } text && UdpPortRange.Parse(text).Range is { } range)
        {
            _store!.SetIntSetting(UdpPortFirstSetting, range.First);
            _store!.SetIntSetting(UdpPortLastSetting, range.Last);
            _udp.PortRange = range;
        }
    }
}
