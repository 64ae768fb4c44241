using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Links;

/// <summary>How a <see cref="MemoryLinkTransport"/> connection is cut.</summary>
internal enum MemoryCut
{
    /// <summary>Like an RST: both ends' reads fail with an IOException at once (bytes not read yet are lost), writes fail.</summary>
    Reset,

    /// <summary>Like a FIN both ways: both ends read what was in flight, then the end of the stream; writes fail.</summary>
    Close,
}

/// <summary>
/// One end of an in-memory connection for link tests: <see cref="CreatePair"/> joins two ends with two
/// <see cref="Pipe"/>s, one each way. The wire can be killed the ways networks kill connections: <see cref="Cut"/> (both
/// ends see an error or the end of the stream at once), <see cref="CutAfter"/> (the same, after a number of bytes more in
/// either direction: a write that crosses it delivers its first part, so a frame is cut in the middle) and
/// <see cref="BlackHole"/> (what is written vanishes, no FIN, no RST: reads never complete until their end is aborted).
/// It counts the frames each end wrote, by type (<see cref="FramesWritten"/>). It models no bandwidth, latency or
/// kernel buffer: a write is delivered (or lost) at once and never blocks; it has no TLS and no peer address.
/// </summary>
internal sealed class MemoryLinkTransport : LinkTransport
{
    private static int s_pairs;
    private readonly Wire _wire;
    private readonly int _side;

    private MemoryLinkTransport(Wire wire, int side, TimeProvider time) : base(time)
    {
        _wire = wire;
        _side = side;
        RemoteEndPoint = $"memory-{wire.Number}:{(side == 0 ? "acceptor" : "dialer")}";
    }

    /// <summary>A connected pair: what the dialer's end writes, the acceptor's end reads, and the other way round.</summary>
    public static (MemoryLinkTransport Dialer, MemoryLinkTransport Acceptor) CreatePair(TimeProvider time)
    {
        var wire = new Wire(Interlocked.Increment(ref s_pairs));
        return (new MemoryLinkTransport(wire, 0, time), new MemoryLinkTransport(wire, 1, time));
    }

    /// <inheritdoc/>
    public override PipeReader Input => _wire.Pipes[1 - _side].Reader;

    /// <summary>A name for logs: memory-N, then which end is on the other side.</summary>
    public override string RemoteEndPoint { get; }

    /// <summary>True once the wire was cut, black-holed or closed by either end.</summary>
    public bool IsDead => _wire.IsDead;

    /// <summary>Frames of <paramref name="type"/> this end handed to the wire (delivered or, in a black hole, lost).</summary>
    public int FramesWritten(FrameType type) => _wire.Frames(_side, type);

    /// <summary>Bytes this end handed to the wire.</summary>
    public long BytesWritten => _wire.Written(_side);

    /// <summary>Cuts the connection now, both ways.</summary>
    public void Cut(MemoryCut how = MemoryCut.Reset) => _wire.Cut(how);

    /// <summary>Cuts the connection once either direction has carried <paramref name="bytes"/> more bytes (in the middle of a write, if it falls there).</summary>
    public void CutAfter(long bytes, MemoryCut how = MemoryCut.Reset) => _wire.Arm(bytes, how);

    /// <summary>From now on bytes written either way vanish; nobody sees an error until they give up on the connection.</summary>
    public void BlackHole() => _wire.BlackHole();

    /// <inheritdoc/>
    public override ValueTask WriteAsync(List<ArraySegment<byte>> segments, int total)
    {
        try
        {
            _wire.Write(_side, segments);
            return ValueTask.CompletedTask;
        }
        catch (IOException ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    /// <summary>Closing an end is a FIN to the other (lost in a black hole); its own reads stop by the transport's cancellation.</summary>
    protected override void Close() => _wire.CloseEnd(_side);

    /// <summary>The shared state of a pair: the pipes, how the wire is doing, and the frame counts of each direction.</summary>
    private sealed class Wire(int number)
    {
        private static readonly PipeOptions Options = new(readerScheduler: PipeScheduler.ThreadPool, writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false);

        private readonly Lock _gate = new();
        private readonly Observer[] _observers = [new(), new()];
        private readonly long[] _written = new long[2];
        private readonly bool[] _closed = new bool[2];
        private bool _cut, _blackHole;
        private long _budget = -1;
        private MemoryCut _armed;

        public int Number { get; } = number;
        public Pipe[] Pipes { get; } = [new(Options), new(Options)];

        public bool IsDead
        {
            get
            {
                lock (_gate)
                {
                    return _cut || _blackHole || _closed[0] || _closed[1];
                }
            }
        }

        public int Frames(int side, FrameType type)
        {
            lock (_gate)
            {
                return _observers[side].Count(type);
            }
        }

        public long Written(int side)
        {
            lock (_gate)
            {
                return _written[side];
            }
        }

        public void Write(int side, List<ArraySegment<byte>> segments)
        {
            lock (_gate)
            {
                if (_cut || _closed[side] || (_closed[1 - side] && !_blackHole))
                {
                    throw new IOException($"memory connection {Number}: connection reset");
                }
                var writer = Pipes[side].Writer;
                foreach (var segment in segments)
                {
                    var bytes = segment.AsSpan();
                    if (_budget >= 0 && bytes.Length > _budget && !_blackHole)
                    {
                        var part = bytes[..(int)_budget];
                        _observers[side].Observe(part);
                        _written[side] += part.Length;
                        writer.Write(part);
                        CutLocked(_armed);
                        throw new IOException($"memory connection {Number}: connection reset in the middle of a write");
                    }
                    _observers[side].Observe(bytes);
                    _written[side] += bytes.Length;
                    if (_blackHole)
                    {
                        continue;
                    }
                    writer.Write(bytes);
                    if (_budget >= 0)
                    {
                        _budget -= bytes.Length;
                    }
                }
                if (!_blackHole)
                {
                    // No pause threshold: the flush completes at once, and the reader runs on the thread pool, not under the gate.
                    writer.FlushAsync().GetAwaiter().GetResult();
                }
            }
        }

        public void Cut(MemoryCut how)
        {
            lock (_gate)
            {
                CutLocked(how);
            }
        }

        public void Arm(long bytes, MemoryCut how)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(bytes);
            lock (_gate)
            {
                _budget = bytes;
                _armed = how;
            }
        }

        public void BlackHole()
        {
            lock (_gate)
            {
                _blackHole = true;
            }
        }

        public void CloseEnd(int side)
        {
            lock (_gate)
            {
                if (_closed[side])
                {
                    return;
                }
                _closed[side] = true;
                if (!_cut && !_blackHole)
                {
                    Pipes[side].Writer.Complete(); // the other end reads what is in flight, then the end of the stream
                }
            }
        }

        private void CutLocked(MemoryCut how)
        {
            if (_cut)
            {
                return;
            }
            _cut = true;
            _budget = -1;
            for (var side = 0; side < 2; side++)
            {
                if (!_closed[side])
                {
                    Pipes[side].Writer.Complete(how == MemoryCut.Reset ? new IOException($"memory connection {Number}: connection reset") : null);
                }
            }
        }
    }

    /// <summary>Counts the frames in one direction's byte stream by type (it follows headers and skips payloads).</summary>
    private sealed class Observer
    {
        private readonly byte[] _header = new byte[FrameHeader.Size];
        private readonly int[] _counts = new int[256];
        private int _filled;
        private long _skip;

        public int Count(FrameType type) => _counts[(byte)type];

        public void Observe(ReadOnlySpan<byte> bytes)
        {
            while (!bytes.IsEmpty)
            {
                if (_skip > 0)
                {
                    var n = (int)Math.Min(_skip, bytes.Length);
                    _skip -= n;
                    bytes = bytes[n..];
                    continue;
                }
                var take = Math.Min(FrameHeader.Size - _filled, bytes.Length);
                bytes[..take].CopyTo(_header.AsSpan(_filled));
                _filled += take;
                bytes = bytes[take..];
                if (_filled == FrameHeader.Size)
                {
                    _counts[_header[0]]++;
                    _skip = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(8));
                    _filled = 0;
                }
            }
        }
    }
}
