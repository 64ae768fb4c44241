using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// Hold streams served by this server (docs/protocol.md, "Hold"): admitted like any stream of the tunnel, passed on by
/// a gateway, answered and kept open by the last server. They carry no data and are not application connections, so
/// they do not count as transit streams; a stopping server resets them (Shutdown) before it waits for connections to
/// drain, so the owner of a permanent tunnel learns at once that the chain is down.
/// </summary>
internal sealed partial class StreamRouter
{
    private readonly HashSet<MuxStream> _holds = [];
    private bool _holdsClosed;

    /// <summary>Hold streams this server carries now (as last server or gateway).</summary>
    internal int HoldCount
    {
        get
        {
            lock (_holds)
            {
                return _holds.Count;
            }
        }
    }

    /// <summary>An admitted Hold: passed on to the next server of its route, or (last server) acknowledged and kept until the owner's Fin.</summary>
    private async Task HoldAsync(MuxStream stream, OpenMessage open, CancellationToken cancellationToken)
    {
        lock (_holds)
        {
            if (!_holdsClosed)
            {
                _holds.Add(stream);
            }
        }
        try
        {
            if (_holdsClosed && !IsHeld(stream))
            {
                stream.Reset(ProtocolErrorCode.Shutdown, $"{_context.ServerName} is stopping");
                return;
            }
            if (open.Route.Count > 0)
            {
                await ForwardAsync(stream, open, cancellationToken).ConfigureAwait(false);
                return;
            }
            stream.SendOpenAck();
            try
            {
                await stream.ReadToEndAsync(0, cancellationToken).ConfigureAwait(false);
                stream.SendFin();
            }
            catch (StreamResetException)
            {
                // the owner reset it, or a link of the chain broke: nothing to answer
            }
            catch (InvalidDataException)
            {
                stream.Reset(ProtocolErrorCode.ConnectionReset, $"{_context.ServerName}: a Hold stream carries no data");
            }
            catch (OperationCanceledException)
            {
                stream.Reset(ProtocolErrorCode.Shutdown, $"{_context.ServerName} is stopping");
            }
        }
        finally
        {
            lock (_holds)
            {
                _holds.Remove(stream);
            }
        }
    }

    private bool IsHeld(MuxStream stream)
    {
        lock (_holds)
        {
            return _holds.Contains(stream);
        }
    }

    /// <summary>Server stopping: every Hold it carries is reset (Shutdown), and new ones are refused.</summary>
    internal void CloseHolds()
    {
        MuxStream[] holds;
        lock (_holds)
        {
            _holdsClosed = true;
            holds = [.. _holds];
        }
        foreach (var hold in holds)
        {
            hold.Reset(ProtocolErrorCode.Shutdown, $"{_context.ServerName} is stopping");
        }
    }
}
