using System.Buffers;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// Joins two streams on two links (a gateway in a chain): data, FIN, OpenAck and resets pass through, each
/// direction under the flow control of the link it leaves by. It does not open either stream.
/// </summary>
public static class Splice
{
    public static async Task RunAsync(MuxStream inbound, MuxStream onward, int chunkSize, CancellationToken cancellationToken)
    {
        _ = onward.Opened.ContinueWith(t =>
        {
            if (t.Result)
            {
                inbound.SendOpenAck();
            }
        }, TaskScheduler.Default);
        await Task.WhenAll(PumpAsync(inbound, onward, chunkSize, cancellationToken), PumpAsync(onward, inbound, chunkSize, cancellationToken)).ConfigureAwait(false);
    }

    private static async Task PumpAsync(MuxStream from, MuxStream to, int chunkSize, CancellationToken cancellationToken)
    {
        var input = from.Input;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (buffer.IsEmpty)
                {
                    input.AdvanceTo(buffer.End);
                    if (result.IsCompleted)
                    {
                        to.SendFin();
                        return;
                    }
                    continue;
                }
                // One chunk per read, its credit returned as soon as it is passed on: a gateway that returned the
                // credit of a whole read (up to the previous hop's window) only once the next hop had taken all of it
                // left the previous hop with nothing to send meanwhile, so the hops of a chain took turns.
                var sent = 0;
                try
                {
                    var credit = await to.WaitForCreditAsync((int)Math.Min(chunkSize, buffer.Length), cancellationToken).ConfigureAwait(false);
                    var rented = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + credit);
                    buffer.Slice(0, credit).CopyTo(rented.AsSpan(FrameHeader.Size));
                    to.SendData(rented, credit);
                    sent = credit;
                }
                finally
                {
                    input.AdvanceTo(buffer.GetPosition(sent));
                }
                from.Consumed(sent);
            }
        }
        catch (StreamResetException ex)
        {
            // one side was reset: pass the same code and reason to the other side
            var source = from.IsReset ? from : to;
            var other = from.IsReset ? to : from;
            other.Reset(source.IsReset ? source.ResetCode : ex.Code, source.ResetReason ?? ex.Message);
        }
        catch (OperationCanceledException)
        {
            from.Reset(ProtocolErrorCode.Shutdown, "the gateway server is stopping");
            to.Reset(ProtocolErrorCode.Shutdown, "the gateway server is stopping");
        }
    }
}
