using System.Management.Automation;
using QmTunnel.Engine.Management;

namespace QmTunnel.PowerShell;

/// <summary>
/// The tunnel settings New-QmTunnel and Set-QmTunnel share: applies the ones a user gave (bound parameters) to a
/// profile and leaves the rest as they are. Switches count as on unless turned off (-NoDelay:$false). It does not
/// validate: the engine checks the whole profile.
/// </summary>
internal static class TunnelSettings
{
    /// <summary>Every setting parameter, in the order a -WhatIf message lists them.</summary>
    public static readonly string[] Names =
    [
        nameof(TunnelProfile.Listen), nameof(TunnelProfile.Via), nameof(TunnelProfile.Target), nameof(TunnelProfile.MaxConnections),
        nameof(TunnelProfile.ConnectTimeout), nameof(TunnelProfile.NoDelay), nameof(TunnelProfile.KeepAlive), nameof(TunnelProfile.BufferSize),
        nameof(TunnelProfile.Description), nameof(TunnelProfile.Persistent),
    ];

    /// <summary>The bound setting parameters, copied (the copy can be used off the pipeline thread).</summary>
    public static Dictionary<string, object?> Given(InvocationInfo invocation) =>
        Names.Where(invocation.BoundParameters.ContainsKey).ToDictionary(n => n, n => (object?)invocation.BoundParameters[n], StringComparer.OrdinalIgnoreCase);

    public static TunnelProfile Apply(TunnelProfile p, IReadOnlyDictionary<string, object?> given)
    {
        T Get<T>(string name, T current) => given.TryGetValue(name, out var value) ? Convert<T>(value) : current;
        return p with
        {
            Listen = Get(nameof(p.Listen), p.Listen),
            Via = given.TryGetValue(nameof(p.Via), out var via) ? QmTunnelHop.Split(Convert<object[]>(via)).Via : p.Via,
            Target = Get(nameof(p.Target), p.Target),
            MaxConnections = Get(nameof(p.MaxConnections), p.MaxConnections),
            ConnectTimeout = Get(nameof(p.ConnectTimeout), p.ConnectTimeout),
            NoDelay = Get(nameof(p.NoDelay), p.NoDelay),
            KeepAlive = Get(nameof(p.KeepAlive), p.KeepAlive),
            BufferSize = Get(nameof(p.BufferSize), p.BufferSize),
            Description = Get<string?>(nameof(p.Description), p.Description) ?? string.Empty,
            Persistent = Get(nameof(p.Persistent), p.Persistent),
        };
    }

    private static T Convert<T>(object? value) => value switch
    {
        SwitchParameter s when typeof(T) == typeof(bool) => (T)(object)s.IsPresent,
        PSObject o => Convert<T>(o.BaseObject),
        _ => (T)LanguagePrimitives.ConvertTo(value, typeof(T), System.Globalization.CultureInfo.InvariantCulture)!,
    };
}
