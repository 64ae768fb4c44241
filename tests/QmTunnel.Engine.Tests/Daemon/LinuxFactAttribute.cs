namespace QmTunnel.Engine.Tests.Daemon;

/// <summary>A test that needs Linux (file descriptors 1 and 2, /proc, bash, ulimit): skipped, and saying so, elsewhere.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux())
        {
            Skip = "Linux only: file descriptors, /proc, bash and ulimit";
        }
    }
}
