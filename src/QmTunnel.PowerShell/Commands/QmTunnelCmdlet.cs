using System.Management.Automation;
using QmTunnel.Engine.Management;

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

    /// <summary>-Follow's -Interval: refused (terminating) when under the server's 250 ms update limit.</summary>
    protected void ValidateFollowInterval(TimeSpan interval)
    {
        if (MyInvocation.BoundParameters.ContainsKey("Interval") && interval < QmTunnelEngine.MinimumWatchInterval)
        {
            ThrowTerminatingError(NewErrorRecord(ErrorIds.FollowIntervalInvalid, QmErrorKind.InvalidArgument, interval,
                $"-Interval {interval} is shorter than the server's update limit of 250 ms. Give 00:00:00.25 or more."));
        }
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
