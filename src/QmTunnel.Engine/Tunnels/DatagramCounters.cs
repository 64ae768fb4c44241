namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// The datagram counters of one UDP association (or of a tunnel's closed ones): datagrams and payload bytes each way
/// (the 2-byte frame lengths not counted), and datagrams dropped (no credit in the stream, a full queue, an empty or
/// oversized datagram, a send the network refused). Thread-safe.
/// </summary>
public sealed class DatagramCounters
{
    private long _in, _out, _bytesIn, _bytesOut, _dropped;
    private bool _relayFacesTarget;

    /// <summary>
    /// Counters for a relay whose connection is the TARGET (a reverse tunnel's owner): what it reads from that connection
    /// goes to the client (counted Out) and what it writes there came from the client (counted In), so the counts keep
    /// their meaning from the client's side.
    /// </summary>
    internal static DatagramCounters FacingTarget() => new() { _relayFacesTarget = true };

    /// <summary>Datagrams from the application side carried into the tunnel.</summary>
    public long DatagramsIn => Volatile.Read(ref _in);
    /// <summary>Datagrams that came out of the tunnel and were sent to the application side.</summary>
    public long DatagramsOut => Volatile.Read(ref _out);
    public long BytesIn => Volatile.Read(ref _bytesIn);
    public long BytesOut => Volatile.Read(ref _bytesOut);
    /// <summary>Datagrams dropped, either way.</summary>
    public long Dropped => Volatile.Read(ref _dropped);

    internal void AddIn(int bytes) => AddIn(1, bytes);

    /// <summary>Several datagrams carried in at once (one coalesced frame), <paramref name="bytes"/> of payload in all.</summary>
    internal void AddIn(int datagrams, int bytes)
    {
        if (_relayFacesTarget)
        {
            Count(ref _out, ref _bytesOut, datagrams, bytes);
            return;
        }
        Count(ref _in, ref _bytesIn, datagrams, bytes);
    }

    internal void AddOut(int bytes)
    {
        if (_relayFacesTarget)
        {
            Count(ref _in, ref _bytesIn, 1, bytes);
            return;
        }
        Count(ref _out, ref _bytesOut, 1, bytes);
    }

    private static void Count(ref long datagrams, ref long total, int count, int bytes)
    {
        Interlocked.Add(ref datagrams, count);
        Interlocked.Add(ref total, bytes);
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
