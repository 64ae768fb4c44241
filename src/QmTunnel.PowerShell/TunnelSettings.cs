using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell;

/// <summary>
/// The tunnel settings New-QmTunnel and Set-QmTunnel share: turns the ones a user gave (bound parameters) into a
/// <see cref="TunnelChange"/> that sets those and leaves the rest as they are. Switches count as on unless turned off
/// (-NoDelay:$false). It does not validate: the engine checks the whole profile.
/// </summary>
internal static class TunnelSettings
{
    /// <summary>Every setting parameter, in the order a -WhatIf message lists them.</summary>
    public static readonly string[] Names =
    [
        nameof(TunnelProfile.Listen), nameof(TunnelProfile.Via), nameof(TunnelProfile.Target), nameof(TunnelProfile.MaxConnections),
        nameof(TunnelProfile.ConnectTimeout), nameof(TunnelProfile.NoDelay), nameof(TunnelProfile.KeepAlive), nameof(TunnelProfile.BufferSize),
        nameof(TunnelProfile.Description), nameof(TunnelProfile.Persistent), nameof(TunnelChange.Permanent), nameof(TunnelChange.OnDemand),
        nameof(TunnelProfile.IdleTimeout), nameof(TunnelProfile.FailureTolerance), nameof(TunnelProfile.UdpIdleTimeout),
    ];

    /// <summary>The settings that switch the tunnel's mode: a running tunnel takes a new mode at once, without restarting its listener.</summary>
    public static readonly string[] ModeNames = [nameof(TunnelChange.Permanent), nameof(TunnelChange.OnDemand)];

    /// <summary>The settings whose change restarts a running tunnel (QmTunnelEngine.NeedsRestart); the others apply to its next connections.</summary>
    public static readonly string[] RestartingNames = [nameof(TunnelProfile.Listen), nameof(TunnelProfile.Via), nameof(TunnelProfile.Target)];

    /// <summary>Whether the given settings may restart a running tunnel (when their values differ from the current ones).</summary>
    public static bool Restarts(IReadOnlyDictionary<string, object?> given) => RestartingNames.Any(given.ContainsKey);

    /// <summary>
    /// A valid profile whose values a change's given settings replace, to check those alone. It is on demand, so that
    /// -IdleTimeout alone passes here (the server then checks it against the tunnel's real mode).
    /// </summary>
    public static TunnelProfile Sample => new()
    {
        Name = "sample", Listen = "tcp://127.0.0.1:0", Via = ["qmt://127.0.0.1:9200"], Target = "tcp://127.0.0.1:1", Mode = TunnelMode.OnDemand,
    };

    /// <summary>The bound setting parameters, copied (the copy can be used off the pipeline thread).</summary>
    public static Dictionary<string, object?> Given(InvocationInfo invocation) =>
        Names.Where(invocation.BoundParameters.ContainsKey).ToDictionary(n => n, n => (object?)invocation.BoundParameters[n], StringComparer.OrdinalIgnoreCase);

    /// <summary>The given settings applied to <paramref name="p"/> (New-QmTunnel: to a new profile).</summary>
    public static TunnelProfile Apply(TunnelProfile p, IReadOnlyDictionary<string, object?> given) => ToChange(given).Apply(p);

    /// <summary>
    /// The given settings as a <see cref="TunnelChange"/> (Set-QmTunnel sends it to the server, local or remote): each
    /// given one set, the rest null (unchanged). -Via keeps only the URIs; the logins travel beside the change.
    /// </summary>
    public static TunnelChange ToChange(IReadOnlyDictionary<string, object?> given)
    {
        T? Get<T>(string name) where T : struct => given.TryGetValue(name, out var value) ? Convert<T>(value) : null;
        return new TunnelChange
        {
            Listen = given.TryGetValue(nameof(TunnelChange.Listen), out var listen) ? Convert<string>(listen) : null,
            Via = given.TryGetValue(nameof(TunnelChange.Via), out var via) ? QmTunnelHop.Split(Convert<object[]>(via)).Via : null,
            Target = given.TryGetValue(nameof(TunnelChange.Target), out var target) ? Convert<string>(target) : null,
            MaxConnections = Get<int>(nameof(TunnelChange.MaxConnections)),
            ConnectTimeout = Get<TimeSpan>(nameof(TunnelChange.ConnectTimeout)),
            NoDelay = Get<bool>(nameof(TunnelChange.NoDelay)),
            KeepAlive = Get<bool>(nameof(TunnelChange.KeepAlive)),
            BufferSize = Get<int>(nameof(TunnelChange.BufferSize)),
            // -Description $null clears it, like -Description ''.
            Description = given.TryGetValue(nameof(TunnelChange.Description), out var description) ? Convert<string?>(description) ?? string.Empty : null,
            Persistent = Get<bool>(nameof(TunnelChange.Persistent)),
            Permanent = Get<bool>(nameof(TunnelChange.Permanent)),
            OnDemand = Get<bool>(nameof(TunnelChange.OnDemand)),
            IdleTimeout = Get<TimeSpan>(nameof(TunnelChange.IdleTimeout)),
            FailureTolerance = Get<TimeSpan>(nameof(TunnelChange.FailureTolerance)),
            UdpIdleTimeout = Get<TimeSpan>(nameof(TunnelChange.UdpIdleTimeout)),
        };
    }

    private static T Convert<T>(object? value) => value switch
    {
        SwitchParameter s when typeof(T) == typeof(bool) => (T)(object)s.IsPresent,
        PSObject o => Convert<T>(o.BaseObject),
        _ => (T)LanguagePrimitives.ConvertTo(value, typeof(T), System.Globalization.CultureInfo.InvariantCulture)!,
    };
}
