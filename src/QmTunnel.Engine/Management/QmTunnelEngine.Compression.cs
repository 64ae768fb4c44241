namespace QmTunnel.Engine.Management;

/// <summary>
/// The server's compression setting: whether links accepted here may be compressed when the dialer asks (saved;
/// ServerOptions.AcceptCompression at start and Set-QmTunnelServerConfig -AcceptCompression change it; the next link
/// accepted takes a change, links up and link sessions resumed later keep what they agreed).
/// </summary>
public sealed partial class QmTunnelEngine
{
    private const string AcceptCompressionSetting = "acceptCompression";

    /// <summary>Whether links accepted from now on may be compressed.</summary>
    public bool AcceptCompression => _linkLimits.AcceptCompression;

    /// <summary>At start (under the gate): ServerOptions' value is saved; then the saved one (true when unset) is used.</summary>
    private void ReadCompressionSetting()
    {
        var store = _store!;
        if (Options.AcceptCompression is { } given)
        {
            store.SetBoolSetting(AcceptCompressionSetting, given);
        }
        _linkLimits.AcceptCompression = store.GetBoolSetting(AcceptCompressionSetting) ?? true;
    }

    /// <summary>Saves and applies the change's AcceptCompression. Under the gate.</summary>
    private void ApplyCompressionSetting(ServerConfigChange change)
    {
        if (change.AcceptCompression is { } accept)
        {
            _store!.SetBoolSetting(AcceptCompressionSetting, accept);
            _linkLimits.AcceptCompression = accept; // each accept handshake reads it: the next link accepted
        }
    }
}
