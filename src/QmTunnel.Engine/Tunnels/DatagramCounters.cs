namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// The datagram counters of one UDP association (or of a tunnel's closed ones): datagrams and payload bytes each way
/// (the 2-byte frame lengths not counted), and datagrams dropped (no credit in the stream, a full queue, an empty or
/// oversized datagram, a send the network refused). Thread-safe.
/// </summary>
public sealed class DatagramCounters
{
    private long _in, _out, _bytesIn, _bytesOut, _dropped;

    /// <summary>Datagrams from the application side carried into the tunnel.</summary>
    public long DatagramsIn => Volatile.Read(ref _in);
    /// <summary>Datagrams that came out of the tunnel and were sent to the application side.</summary>
    public long DatagramsOut => Volatile.Read(ref _out);
    public long BytesIn => Volatile.Read(ref _bytesIn);
    public long BytesOut => Volatile.Read(ref _bytesOut);
    /// <summary>Datagrams dropped, either way.</summary>
    public long Dropped => Volatile.Read(ref _dropped);

    internal void AddIn(int bytes)
    {
        Interlocked.Increment(ref _in);
        Interlocked.Add(ref _bytesIn, bytes);
    }

    /// <summary>Several datagrams carried in at once (one coalesced frame), <paramref name="bytes"/> of payload in all.</summary>
    internal void AddIn(int datagrams, int bytes)
    {
        Interlocked.Add(ref _in, datagrams);
        Interlocked.Add(ref _bytesIn, bytes);
    }

    internal void AddOut(int bytes)
    {
        Interlocked.Increment(ref _out);
        Interlocked.Add(ref _bytesOut, bytes);
    }

    internal void AddDropped(long count = 1) => Interlocked.Add(ref _dropped, count);

    /// <summary>Adds <paramref name="other"/>'s counts to these (a closed association's into a tunnel's totals).</summary>
    internal void Add(DatagramCounters other)
    {
        Interlocked.Add(ref _in, other.DatagramsIn);
        Interlocked.Add(ref _out, other.DatagramsOut);
        Interlocked.Add(ref _bytesIn, other.BytesIn);
        Interlocked.Add(ref _bytesOut, other.BytesOut);
        Interlocked.Add(ref _dropped, other.Dropped);
    }
}
