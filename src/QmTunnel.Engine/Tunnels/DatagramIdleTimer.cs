namespace QmTunnel.Engine.Tunnels;

/// <summary>
/// Expires a UDP association after <c>timeout</c> without a datagram in EITHER direction: every datagram carried
/// (client to target, or back) calls <see cref="Touch"/>, so a one-way flow stays alive while it flows (chisel and frp
/// reset their timers on reads only, and expire such flows). Time from the injected TimeProvider; the callback runs
/// once, on a timer thread.
/// </summary>
internal sealed class DatagramIdleTimer : IDisposable
{
    private readonly TimeProvider _time;
    private readonly TimeSpan _timeout;
    private readonly Action _expired;
    private readonly ITimer _timer;
    private readonly object _gate = new();
    private long _last;
    private bool _done;

    public DatagramIdleTimer(TimeProvider time, TimeSpan timeout, Action expired)
    {
        _time = time;
        _timeout = timeout;
        _expired = expired;
        _last = time.GetTimestamp();
        _timer = time.CreateTimer(_ => Check(), null, timeout, Timeout.InfiniteTimeSpan);
    }

    /// <summary>A datagram went through (either way): the idle time starts again.</summary>
    public void Touch() => Volatile.Write(ref _last, _time.GetTimestamp());

    private void Check()
    {
        lock (_gate)
        {
            if (_done)
            {
                return;
            }
            var idle = _time.GetElapsedTime(Volatile.Read(ref _last));
            if (idle < _timeout)
            {
                _timer.Change(_timeout - idle, Timeout.InfiniteTimeSpan);
                return;
            }
            _done = true;
        }
        _expired();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _done = true;
        }
        _timer.Dispose();
    }
}
