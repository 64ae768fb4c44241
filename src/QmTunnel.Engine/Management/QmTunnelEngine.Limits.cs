using System.Globalization;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

/// <summary>
/// The limits a logged-in user meets (docs/security.md, "Limits"): saved settings (streams per link, links accepted,
/// bytes buffered by all links, management sessions per user, idle times of management sessions and of links) and
/// fixed ones (requests per session, request timeout),
/// and the timer that closes what stayed idle. It does not count or refuse by itself: links and sessions do.
/// </summary>
public sealed partial class QmTunnelEngine
{
    private const string MaxManagementSessionsPerUserSetting = "maxManagementSessionsPerUser";
    private const string ManagementIdleTimeoutSetting = "managementIdleTimeoutSeconds";
    private const string MaxStreamsPerLinkSetting = "maxStreamsPerLink";
    private const string LinkIdleTimeoutSetting = "linkIdleTimeoutSeconds";
    private const string MaxLinksSetting = "maxLinks";
    private const string MaxBufferedMBSetting = "maxBufferedMB";

    /// <summary>Management sessions one user without ChangeServerConfiguration may have open at once (default).</summary>
    public const int DefaultMaxManagementSessionsPerUser = 10;
    /// <summary>Requests one management session may have in progress at once, watches included.</summary>
    public const int MaxManagementRequestsPerSession = 16;
    public const int MinStreamsPerLink = 16, MaxStreamsPerLinkLimit = 100_000;
    /// <summary>Range of MaxLinks: link sessions accepted at once.</summary>
    public const int MinLinks = 10, MaxLinksLimit = 100_000;
    /// <summary>Range of MaxBufferedMB: MiB the send queues of all links may hold together (default 512).</summary>
    public const int MinBufferedMB = 16, MaxBufferedMBLimit = 65_536;
    /// <summary>Default of MaxBufferedMB (<see cref="LinkLimits.DefaultMaxBufferedBytes"/> in MiB).</summary>
    public const int DefaultMaxBufferedMB = (int)(LinkLimits.DefaultMaxBufferedBytes / (1024 * 1024));
    /// <summary>A management session without a request in progress for this long is closed (default).</summary>
    public static readonly TimeSpan DefaultManagementIdleTimeout = TimeSpan.FromMinutes(15);
    /// <summary>An accepted link (not a management session) that carried no stream for this long is closed (default, the original's 600 s).</summary>
    public static readonly TimeSpan DefaultLinkIdleTimeout = TimeSpan.FromMinutes(10);
    /// <summary>A management stream whose request has not arrived whole after this long is answered ManagementRequestTimeout.</summary>
    public static readonly TimeSpan ManagementRequestTimeout = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan MinIdleTimeout = TimeSpan.FromMinutes(1), MaxIdleTimeout = TimeSpan.FromDays(7);

    private readonly LinkLimits _linkLimits = new();
    private volatile int _maxManagementSessions = DefaultMaxManagementSessions;
    private volatile int _maxManagementSessionsPerUser = DefaultMaxManagementSessionsPerUser;
    private TimeSpan _managementIdleTimeout = DefaultManagementIdleTimeout;
    private TimeSpan _linkIdleTimeout = DefaultLinkIdleTimeout;
    private ITimer? _idleSweep;

    /// <summary>Reads the saved limits (the default for one unset or out of range). At start, under the gate.</summary>
    private void ReadLimits()
    {
        var store = _store!;
        _maxManagementSessions = store.GetIntSetting(MaxManagementSessionsSetting) is { } max and >= 1 and <= 10_000 ? max : DefaultMaxManagementSessions;
        _maxManagementSessionsPerUser = store.GetIntSetting(MaxManagementSessionsPerUserSetting) is { } perUser and >= 1 and <= 10_000
            ? perUser : DefaultMaxManagementSessionsPerUser;
        _linkLimits.MaxStreams = store.GetIntSetting(MaxStreamsPerLinkSetting) is { } streams and >= MinStreamsPerLink and <= MaxStreamsPerLinkLimit
            ? streams : LinkLimits.DefaultMaxStreams;
        _linkLimits.MaxLinks = store.GetIntSetting(MaxLinksSetting) is { } links and >= MinLinks and <= MaxLinksLimit ? links : LinkLimits.DefaultMaxLinks;
        _linkLimits.MaxBufferedBytes = (store.GetIntSetting(MaxBufferedMBSetting) is { } mb and >= MinBufferedMB and <= MaxBufferedMBLimit ? mb : DefaultMaxBufferedMB) * 1024L * 1024;
        _managementIdleTimeout = ReadTimeout(ManagementIdleTimeoutSetting, DefaultManagementIdleTimeout);
        _linkIdleTimeout = ReadTimeout(LinkIdleTimeoutSetting, DefaultLinkIdleTimeout);
        ReadUdpSettings();
        ReadCompressionSetting();
    }

    private TimeSpan ReadTimeout(string setting, TimeSpan fallback) =>
        _store!.GetIntSetting(setting) is { } seconds && TimeSpan.FromSeconds(seconds) is var saved && saved >= MinIdleTimeout && saved <= MaxIdleTimeout
            ? saved : fallback;

    /// <summary>Every limit of <paramref name="change"/> in range, or ServerSettingInvalid naming the first out of range and the range.</summary>
    private static void CheckLimits(ServerConfigChange change)
    {
        if (change.MaxManagementSessions is { } max && max is < 1 or > 10_000)
        {
            throw SettingInvalid(max, $"MaxManagementSessions {max} is out of range: give 1 to 10000 ({DefaultMaxManagementSessions} is the default).");
        }
        if (change.MaxManagementSessionsPerUser is { } perUser && perUser is < 1 or > 10_000)
        {
            throw SettingInvalid(perUser, $"MaxManagementSessionsPerUser {perUser} is out of range: give 1 to 10000 ({DefaultMaxManagementSessionsPerUser} is the default). Administrators are not limited.");
        }
        if (change.MaxStreamsPerLink is { } streams && streams is < MinStreamsPerLink or > MaxStreamsPerLinkLimit)
        {
            throw SettingInvalid(streams, $"MaxStreamsPerLink {streams} is out of range: give {MinStreamsPerLink} to {MaxStreamsPerLinkLimit} ({LinkLimits.DefaultMaxStreams} is the default).");
        }
        if (change.MaxLinks is { } links && links is < MinLinks or > MaxLinksLimit)
        {
            throw SettingInvalid(links, $"MaxLinks {links} is out of range: give {MinLinks} to {MaxLinksLimit} ({LinkLimits.DefaultMaxLinks} is the default).");
        }
        if (change.MaxBufferedMB is { } mb && mb is < MinBufferedMB or > MaxBufferedMBLimit)
        {
            throw SettingInvalid(mb, $"MaxBufferedMB {mb} is out of range: give {MinBufferedMB} to {MaxBufferedMBLimit} MiB ({DefaultMaxBufferedMB} is the default). " +
                "Each link may queue 5 MiB, so a budget below 5 MiB per busy link makes their senders take turns.");
        }
        CheckTimeout(nameof(ServerConfigChange.ManagementIdleTimeout), change.ManagementIdleTimeout, DefaultManagementIdleTimeout);
        CheckTimeout(nameof(ServerConfigChange.LinkIdleTimeout), change.LinkIdleTimeout, DefaultLinkIdleTimeout);
        CheckUdpSettings(change);
    }

    private static void CheckTimeout(string name, TimeSpan? value, TimeSpan fallback)
    {
        if (value is { } timeout && (timeout < MinIdleTimeout || timeout > MaxIdleTimeout || timeout.Ticks % TimeSpan.TicksPerSecond != 0))
        {
            throw SettingInvalid(timeout, $"{name} {timeout} is out of range: give whole seconds from {MinIdleTimeout} to {MaxIdleTimeout:d\\.hh\\:mm\\:ss} " +
                $"({fallback} is the default), e.g. (New-TimeSpan -Minutes 30).");
        }
    }

    private static QmTunnelException SettingInvalid(object value, string message) =>
        new(SecurityErrorIds.ServerSettingInvalid, QmErrorKind.InvalidArgument, value, message);

    /// <summary>Saves and applies the limits of <paramref name="change"/> (checked before). Under the gate.</summary>
    private void ApplyLimits(ServerConfigChange change)
    {
        var store = _store!;
        if (change.MaxManagementSessions is { } max)
        {
            store.SetIntSetting(MaxManagementSessionsSetting, max);
            _maxManagementSessions = max;
        }
        if (change.MaxManagementSessionsPerUser is { } perUser)
        {
            store.SetIntSetting(MaxManagementSessionsPerUserSetting, perUser);
            _maxManagementSessionsPerUser = perUser;
        }
        if (change.MaxStreamsPerLink is { } streams)
        {
            store.SetIntSetting(MaxStreamsPerLinkSetting, streams);
            _linkLimits.MaxStreams = streams; // every link reads it at its next Open
        }
        if (change.MaxLinks is { } links)
        {
            store.SetIntSetting(MaxLinksSetting, links);
            _linkLimits.MaxLinks = links; // the next link accepted; links up stay
        }
        if (change.MaxBufferedMB is { } mb)
        {
            store.SetIntSetting(MaxBufferedMBSetting, mb);
            _linkLimits.MaxBufferedBytes = mb * 1024L * 1024; // at once: a raise wakes the senders waiting for room
        }
        if (change.ManagementIdleTimeout is { } managementIdle)
        {
            store.SetIntSetting(ManagementIdleTimeoutSetting, (int)managementIdle.TotalSeconds);
            _managementIdleTimeout = managementIdle;
        }
        if (change.LinkIdleTimeout is { } linkIdle)
        {
            store.SetIntSetting(LinkIdleTimeoutSetting, (int)linkIdle.TotalSeconds);
            _linkIdleTimeout = linkIdle;
        }
        ApplyUdpSettings(change);
        ApplyCompressionSetting(change);
        if (change.ManagementIdleTimeout is not null || change.LinkIdleTimeout is not null)
        {
            var period = SweepPeriod();
            _idleSweep?.Change(period, period);
        }
    }

    /// <summary>
    /// How often idle sessions and links are looked for: a quarter of the shorter idle timeout, between 1 and 30
    /// seconds, so one is closed at most that long after its timeout.
    /// </summary>
    private TimeSpan SweepPeriod()
    {
        var quarter = (_managementIdleTimeout < _linkIdleTimeout ? _managementIdleTimeout : _linkIdleTimeout) / 4;
        return quarter < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : quarter > TimeSpan.FromSeconds(30) ? TimeSpan.FromSeconds(30) : quarter;
    }

    private void StartIdleSweep()
    {
        var period = SweepPeriod();
        _idleSweep = _time.CreateTimer(_ => SweepIdle(), null, period, period);
    }

    private void StopIdleSweep()
    {
        _idleSweep?.Dispose();
        _idleSweep = null;
    }

    private void SweepIdle()
    {
        if (!_running)
        {
            return;
        }
        CloseIdleManagementSessions();
        var timeout = _linkIdleTimeout;
        Link[] links;
        lock (_inbound)
        {
            links = [.. _inbound];
        }
        foreach (var link in links)
        {
            if (!link.IsClosed && link.IdleTime >= timeout && !IsManagementLink(link))
            {
                LinkLog.IdleClosed(_logger, link.RemoteEndPoint, link.User ?? "?", timeout);
                _ = link.CloseAsync(ProtocolErrorCode.Shutdown, $"the link carried no stream for {Format(timeout)} (LinkIdleTimeout of {Options.ServerName})");
            }
        }
    }

    /// <summary>A time as an administrator writes it: 15 min, 10 min 30 s, 2 h.</summary>
    private static string Format(TimeSpan time)
    {
        var parts = new List<string>();
        if (time.Days > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{time.Days} d"));
        }
        if (time.Hours > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{time.Hours} h"));
        }
        if (time.Minutes > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{time.Minutes} min"));
        }
        if (time.Seconds > 0 || parts.Count == 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{time.Seconds} s"));
        }
        return string.Join(" ", parts);
    }
}
