namespace QmTunnel.Engine.Tests.Faults;

/// <summary>
/// A test that makes network namespaces (<see cref="NetNs"/>): skipped, with the reason, when this is not Linux, not
/// root, iproute2 is missing, <c>ip netns add</c> is not permitted (a container without CAP_SYS_ADMIN), or, with
/// <see cref="Nft"/>, nftables is missing. The check runs once per test process (it makes and deletes a namespace).
/// </summary>
public sealed class NetNsFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> Namespaces = new(WhyNotNamespaces);
    private static readonly Lazy<string?> Nftables = new(() => OnPath("nft") ? null : "nft not found: apt-get install nftables");

    public NetNsFactAttribute()
    {
        Skip = Namespaces.Value;
    }

    /// <summary>The test also needs nftables (<see cref="NetNs.DropNewInbound"/>, <see cref="NetNs.DropPercent"/>).</summary>
    public bool Nft
    {
        get => false;
        set
        {
            if (value)
            {
                Skip ??= Nftables.Value;
            }
        }
    }

    private static string? WhyNotNamespaces()
    {
        if (!OperatingSystem.IsLinux())
        {
            return "Linux only: network namespaces";
        }
        if (!Environment.IsPrivilegedProcess)
        {
            return "needs root: ip netns add";
        }
        if (!OnPath("ip"))
        {
            return "ip not found: apt-get install iproute2";
        }
        try
        {
            NetNs.Create("probe").Dispose();
            return null;
        }
        catch (InvalidOperationException ex)
        {
            return $"network namespaces are not permitted here: {ex.Message}";
        }
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin"]).Any(d => File.Exists(Path.Combine(d, program)));
}
