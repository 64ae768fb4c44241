using System.Management.Automation;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.PowerShell.Commands;

/// <summary>
/// Base of every qmTunnel cmdlet: waits on engine tasks on the pipeline thread (so output and errors are written
/// from it), cancels them when the user presses Ctrl+C (<see cref="StopProcessing"/>), turns
/// <see cref="QmTunnelException"/> into ErrorRecords, and finds the in-process server (<see cref="ServerCmdlet"/>
/// adds -Session for the cmdlets that manage a server). It holds no engine state itself (see
/// <see cref="ServerRegistry"/>) and does not decide whether an error is terminating: a cmdlet writes one per failed
/// item with WriteError and throws only when it cannot start at all.
/// </summary>
public abstract class QmTunnelCmdlet : PSCmdlet, IDisposable
{
    /// <summary>Parameter set of the tunnel cmdlets that take -Name.</summary>
    protected const string ByName = nameof(ByName);

    /// <summary>Parameter set of the tunnel cmdlets that take tunnel objects (-InputObject, the pipeline).</summary>
    protected const string ByInputObject = nameof(ByInputObject);

    private readonly CancellationTokenSource _cancellation = new();

    /// <summary>Cancelled when the pipeline is stopped (Ctrl+C, Select-Object -First, a timeout).</summary>
    protected CancellationToken CancellationToken => _cancellation.Token;

    protected override void StopProcessing()
    {
        try
        {
            _cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The pipeline finished while it was being stopped.
        }
    }

    /// <summary>Blocks the pipeline thread until <paramref name="task"/> ends; a cancelled wait stops the pipeline.</summary>
    protected T Wait<T>(Task<T> task)
    {
        try
        {
            return task.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (_cancellation.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
    }

    /// <summary>Blocks the pipeline thread until <paramref name="task"/> ends; a cancelled wait stops the pipeline.</summary>
    protected void Wait(Task task)
    {
        try
        {
            task.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (_cancellation.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
    }

    /// <summary>Blocks the pipeline thread until <paramref name="task"/> ends; a cancelled wait stops the pipeline.</summary>
    protected void Wait(ValueTask task) => Wait(task.AsTask());

    /// <summary>-Follow's -Interval: refused (terminating) when under the server's 250 ms update limit or over an hour.</summary>
    protected void ValidateFollowInterval(TimeSpan interval)
    {
        if (TimeSpanRange.Problem("Interval", interval, QmTunnelEngine.MinimumWatchInterval, QmTunnelEngine.MaximumWatchInterval) is { } problem)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.FollowIntervalInvalid, QmErrorKind.InvalidArgument, interval,
                problem + " The server sends at most one update per 250 ms."));
        }
    }

    /// <summary>How long a wait may take before it shows progress.</summary>
    internal static readonly TimeSpan ProgressDelay = TimeSpan.FromSeconds(1);

    /// <summary>
    /// As <see cref="Wait{T}(Task{T})"/>, and when the wait takes over a second (a server that does not answer, a slow
    /// chain) it shows progress: <paramref name="activity"/>, <paramref name="status"/> and the time waited, against
    /// <paramref name="expected"/> when given (the timeout that ends it). The progress is closed when the task ends.
    /// </summary>
    protected T WaitWithProgress<T>(Task<T> task, string activity, string status, TimeSpan? expected = null)
    {
        ShowProgressUntilDone(task, activity, status, expected);
        return Wait(task);
    }

    /// <summary>As <see cref="WaitWithProgress{T}"/> for a task without result.</summary>
    protected void WaitWithProgress(Task task, string activity, string status, TimeSpan? expected = null)
    {
        ShowProgressUntilDone(task, activity, status, expected);
        Wait(task);
    }

    private void ShowProgressUntilDone(Task task, string activity, string status, TimeSpan? expected)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ProgressRecord? record = null;
        var handle = ((IAsyncResult)task).AsyncWaitHandle;
        while (!handle.WaitOne(TimeSpan.FromMilliseconds(200)))
        {
            if (clock.Elapsed < ProgressDelay)
            {
                continue;
            }
            record ??= new ProgressRecord(ProgressId, activity, status);
            ReportProgress(record, status, clock.Elapsed, expected);
        }
        if (record is not null)
        {
            record.RecordType = ProgressRecordType.Completed;
            WriteProgress(record);
        }
    }

    /// <summary>Progress id of this module's waits (one wait at a time per cmdlet).</summary>
    internal const int ProgressId = 0x716d74;

    /// <summary>Writes <paramref name="record"/> with the time waited so far, and how much of <paramref name="expected"/> that is.</summary>
    internal void ReportProgress(ProgressRecord record, string status, TimeSpan elapsed, TimeSpan? expected)
    {
        record.StatusDescription = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{status} ({elapsed.TotalSeconds:0} s)");
        if (expected is { } limit && limit > TimeSpan.Zero)
        {
            record.PercentComplete = (int)Math.Clamp(elapsed / limit * 100, 0, 99);
            record.SecondsRemaining = (int)Math.Max(0, (limit - elapsed).TotalSeconds);
        }
        WriteProgress(record);
    }

    /// <summary>
    /// -Follow: hands each update of <paramref name="updates"/> to <paramref name="write"/> on the pipeline thread
    /// until Ctrl+C (or a downstream Select-Object -First) stops the pipeline, or the server stops.
    /// </summary>
    protected void FollowUpdates<T>(IAsyncEnumerable<T> updates, Action<T> write)
    {
        var enumerator = updates.GetAsyncEnumerator(CancellationToken);
        try
        {
            while (true)
            {
                bool more;
                try
                {
                    more = enumerator.MoveNextAsync().AsTask().GetAwaiter().GetResult();
                }
                catch (OperationCanceledException) when (_cancellation.IsCancellationRequested)
                {
                    return;
                }
                catch (QmTunnelException ex)
                {
                    WriteError(ToErrorRecord(ex));
                    return;
                }
                if (!more)
                {
                    return;
                }
                write(enumerator.Current);
            }
        }
        finally
        {
            try
            {
                enumerator.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                // cancelled while it was being stopped
            }
        }
    }

    /// <summary>
    /// The ErrorRecord for an engine failure: id = <see cref="QmTunnelException.ErrorId"/>, category from
    /// <see cref="QmTunnelException.Kind"/> (one to one), target = the tunnel, URI or file at fault, message unchanged.
    /// </summary>
    protected static ErrorRecord ToErrorRecord(QmTunnelException exception) =>
        new(exception, exception.ErrorId, ToCategory(exception.Kind), exception.Target);

    /// <summary>An ErrorRecord for a failure the module itself detects, shaped like an engine one.</summary>
    protected static ErrorRecord NewErrorRecord(string errorId, QmErrorKind kind, object? target, string message, Exception? inner = null) =>
        ToErrorRecord(new QmTunnelException(errorId, kind, target, message, inner));

    internal static ErrorCategory ToCategory(QmErrorKind kind) => kind switch
    {
        QmErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
        QmErrorKind.ObjectNotFound => ErrorCategory.ObjectNotFound,
        QmErrorKind.ResourceExists => ErrorCategory.ResourceExists,
        QmErrorKind.ResourceBusy => ErrorCategory.ResourceBusy,
        QmErrorKind.ResourceUnavailable => ErrorCategory.ResourceUnavailable,
        QmErrorKind.ConnectionError => ErrorCategory.ConnectionError,
        QmErrorKind.InvalidOperation => ErrorCategory.InvalidOperation,
        QmErrorKind.InvalidData => ErrorCategory.InvalidData,
        QmErrorKind.NotEnabled => ErrorCategory.NotEnabled,
        QmErrorKind.ProtocolError => ErrorCategory.ProtocolError,
        QmErrorKind.OpenError => ErrorCategory.OpenError,
        QmErrorKind.SecurityError => ErrorCategory.SecurityError,
        QmErrorKind.AuthenticationError => ErrorCategory.AuthenticationError,
        QmErrorKind.PermissionDenied => ErrorCategory.PermissionDenied,
        _ => ErrorCategory.NotSpecified,
    };

    /// <summary>The in-process engine, or a terminating ServerNotRunning error when this session runs none.</summary>
    protected QmTunnelEngine RequireServer()
    {
        var engine = ServerRegistry.Engine;
        if (engine is null)
        {
            ThrowTerminatingError(NewServerNotRunningError());
        }
        return engine!;
    }

    internal static ErrorRecord NewServerNotRunningError() => NewErrorRecord(
        ErrorIds.ServerNotRunning,
        QmErrorKind.ResourceUnavailable,
        target: null,
        "No qmTunnel server is running in this PowerShell session. Start one with Start-QmTunnelServer.");

    public void Dispose()
    {
        _cancellation.Dispose();
        GC.SuppressFinalize(this);
    }
}
