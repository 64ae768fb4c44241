using System.Globalization;
using QmTunnel.Engine.Links;

namespace QmTunnel.Engine.Endpoints;

/// <summary>
/// The link timing options of a server address (<c>qmt://</c> and <c>qmt+plain://</c> alike):
/// <c>heartbeat=</c>, <c>receive-timeout=</c>, <c>connect-timeout=</c>, <c>reconnect=</c>, <c>reconnect-multiplier=</c>,
/// <c>reconnect-max=</c>. Durations are a number and a unit, <c>ms</c>, <c>s</c>, <c>m</c> or <c>h</c> (a number alone is
/// seconds; <c>0</c> or <c>off</c> turns heartbeats or the receive timeout off); only values that differ from
/// <see cref="LinkTiming.Default"/> are written, each as a whole number in the largest exact unit (<c>90s</c>, <c>2m</c>,
/// <c>150ms</c>). It reads and writes text only: the link layer applies the values.
/// </summary>
public sealed partial record EndpointUri
{
    /// <summary>
    /// For a tunnel server: the timing of the link to it (heartbeats, receive timeout, connect timeout, reconnect backoff),
    /// written <c>qmt://host:9200?heartbeat=5s&amp;receive-timeout=20s</c>. A tunnel sends the later hops' addresses to its
    /// first server as the route, so each gateway dials its next hop with the timing given for that hop.
    /// </summary>
    public LinkTiming Timing { get; init; } = LinkTiming.Default;

    /// <summary>The option key of each <see cref="LinkTiming"/> property, in the order the address writes them.</summary>
    public static IReadOnlyList<(string Property, string Key)> TimingKeys { get; } =
    [
        (nameof(LinkTiming.HeartbeatInterval), "heartbeat"),
        (nameof(LinkTiming.ReceiveTimeout), "receive-timeout"),
        (nameof(LinkTiming.ConnectTimeout), "connect-timeout"),
        (nameof(LinkTiming.ReconnectInterval), "reconnect"),
        (nameof(LinkTiming.ReconnectMultiplier), "reconnect-multiplier"),
        (nameof(LinkTiming.MaxReconnectInterval), "reconnect-max"),
    ];

    /// <summary>The option key (<c>heartbeat</c>) of a <see cref="LinkTiming"/> property name (<c>HeartbeatInterval</c>).</summary>
    public static string TimingKey(string property) =>
        TimingKeys.FirstOrDefault(k => k.Property == property).Key ?? throw new ArgumentOutOfRangeException(nameof(property), property, "not a LinkTiming setting");

    private static string TimingOptionList => string.Join(", ", TimingKeys.Select(k => k.Key + "="));

    /// <summary>"key=value" for each setting of <paramref name="timing"/> that is not the default, in <see cref="TimingKeys"/> order.</summary>
    private static IEnumerable<string> TimingOptions(LinkTiming timing)
    {
        var d = LinkTiming.Default;
        if (timing.HeartbeatInterval != d.HeartbeatInterval)
        {
            yield return "heartbeat=" + DurationText(timing.HeartbeatInterval);
        }
        if (timing.ReceiveTimeout != d.ReceiveTimeout)
        {
            yield return "receive-timeout=" + DurationText(timing.ReceiveTimeout);
        }
        if (timing.ConnectTimeout != d.ConnectTimeout)
        {
            yield return "connect-timeout=" + DurationText(timing.ConnectTimeout);
        }
        if (timing.ReconnectInterval != d.ReconnectInterval)
        {
            yield return "reconnect=" + DurationText(timing.ReconnectInterval);
        }
        if (!timing.ReconnectMultiplier.Equals(d.ReconnectMultiplier))
        {
            yield return "reconnect-multiplier=" + timing.ReconnectMultiplier.ToString(CultureInfo.InvariantCulture);
        }
        if (timing.MaxReconnectInterval != d.MaxReconnectInterval)
        {
            yield return "reconnect-max=" + DurationText(timing.MaxReconnectInterval);
        }
    }

    /// <summary>A duration of the address: <see cref="LinkTiming.FormatDuration"/>, with zero written <c>off</c>.</summary>
    private static string DurationText(TimeSpan value) => value == TimeSpan.Zero ? "off" : LinkTiming.FormatDuration(value);

    /// <summary>
    /// Reads one option into <paramref name="timing"/> when <paramref name="key"/> (lower case) is a timing key; false
    /// for any other key. A value that is not a duration (or not a multiplier) is EndpointUriInvalid naming the option.
    /// </summary>
    private static bool TryParseTimingOption(string? text, string what, string key, string value, ref LinkTiming timing)
    {
        if (key == "reconnect-multiplier")
        {
            if (!double.TryParse(value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var multiplier))
            {
                throw Invalid(text, what, $"{what} '{text}': reconnect-multiplier={value} is not a number. Give how many times longer each reconnect wait is than the one before, " +
                    "from 1 to 10, e.g. reconnect-multiplier=1.5 (the default) or reconnect-multiplier=2.");
            }
            timing = timing with { ReconnectMultiplier = multiplier };
            return true;
        }
        Func<LinkTiming, TimeSpan, LinkTiming>? set = key switch
        {
            "heartbeat" => static (t, v) => t with { HeartbeatInterval = v },
            "receive-timeout" => static (t, v) => t with { ReceiveTimeout = v },
            "connect-timeout" => static (t, v) => t with { ConnectTimeout = v },
            "reconnect" => static (t, v) => t with { ReconnectInterval = v },
            "reconnect-max" => static (t, v) => t with { MaxReconnectInterval = v },
            _ => null,
        };
        if (set is null)
        {
            return false;
        }
        if (!LinkTiming.TryParseDuration(value, out var duration))
        {
            throw Invalid(text, what, $"{what} '{text}': {key}={value} is not a duration. Write a whole number and a unit: {key}=500ms, {key}=10s, {key}=2m or {key}=1h " +
                "(a number alone is seconds; 0 or off turns heartbeats and the receive timeout off).");
        }
        timing = set(timing, duration);
        return true;
    }

    /// <summary>Every problem of the timing an address gives, in one EndpointUriInvalid naming the options.</summary>
    private static void CheckTiming(string? text, string what, LinkTiming timing)
    {
        if (timing == LinkTiming.Default)
        {
            return;
        }
        var problems = timing.Validate(static property => TimingKey(property) + "=");
        if (problems.Count > 0)
        {
            throw Invalid(text, what, $"{what} '{text}': " + string.Join(" ", problems));
        }
    }
}
