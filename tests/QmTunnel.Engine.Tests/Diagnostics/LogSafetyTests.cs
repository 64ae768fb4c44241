using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using QmTunnel.Engine.Diagnostics;

namespace QmTunnel.Engine.Tests.Diagnostics;

/// <summary>What peers put in log lines is escaped and bounded; a flood of one event is held to a few lines and a count.</summary>
public sealed partial class LogSafetyTests
{
    [Theory]
    [InlineData("plain text, a path C:\\data and ünïcødé 🙂", "plain text, a path C:\\data and ünïcødé 🙂")]
    [InlineData("a\r\nforged: line", "a\\r\\nforged: line")]
    [InlineData("\u001b[2J\u001b[31mred", "\\x1B[2J\\x1B[31mred")]
    [InlineData("tab\there\0nul\u007fdel", "tab\\there\\x00nul\\x7Fdel")]
    [InlineData("c1 \u0085 \u009b31m", "c1 \\x85 \\x9B31m")]
    [InlineData("line\u2028sep \u202Eevil\u2066", "line\\u2028sep \\u202Eevil\\u2066")]
    public void Control_characters_are_escaped_and_the_rest_is_kept(string text, string expected) =>
        Assert.Equal(expected, LogText.Sanitize(text));

    [Fact]
    public void A_lone_surrogate_is_escaped() => Assert.Equal("lone \\uD800 surrogate", LogText.Sanitize("lone \ud800 surrogate"));

    [Fact]
    public void A_long_line_is_cut_saying_how_much_was_left_out()
    {
        var text = new string('x', LogText.MaxLineLength + 500);
        var safe = LogText.Sanitize(text);
        Assert.StartsWith(new string('x', LogText.MaxLineLength), safe);
        Assert.EndsWith("... (500 more characters not logged)", safe);
        Assert.True(safe.Length < LogText.MaxLineLength + 100);
        var escaped = LogText.Sanitize(new string('\u001b', LogText.MaxLineLength));
        Assert.True(escaped.Length < LogText.MaxLineLength + 100, "escapes count against the limit too");
    }

    [Fact]
    public void The_safe_factory_hands_on_a_safe_message_safe_values_and_a_safe_exception()
    {
        var sink = new CapturingLoggerFactory();
        var logger = new SafeLoggerFactory(sink, TimeProvider.System).CreateLogger("test");
        LogPeer(logger, "evil\r\n2025-01-01 00:00:00 crit: forged\u001b[0m", new InvalidOperationException("bad \u001b]0;title\u0007"));
        var line = Assert.Single(sink.Lines);
        Assert.Equal(EventIds.LinkRefused, line.EventId);
        Assert.Equal("Peer evil\\r\\n2025-01-01 00:00:00 crit: forged\\x1B[0m said no", line.Message);
        Assert.Equal("evil\\r\\n2025-01-01 00:00:00 crit: forged\\x1B[0m", line.State.Single(p => p.Key == "Name").Value);
        Assert.DoesNotContain(line.Exception!.ToString(), c => c is '\u001b' or '\u0007' or '\r' or '\n');
        Assert.Contains("bad \\x1B]0;title\\x07", line.Exception!.ToString());
    }

    [LoggerMessage(EventId = EventIds.LinkRefused, Level = LogLevel.Warning, Message = "Peer {Name} said no")]
    private static partial void LogPeer(ILogger logger, string name, Exception exception);

    [Fact]
    public void A_flood_of_one_event_writes_a_few_lines_per_window_then_one_line_with_the_count()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var sink = new CapturingLoggerFactory();
        var logger = new SafeLoggerFactory(sink, time).CreateLogger("test");
        for (var i = 0; i < 1000; i++)
        {
            logger.Log(LogLevel.Warning, new EventId(EventIds.LinkRefused), $"refused {i}", null, static (s, _) => s);
            logger.Log(LogLevel.Warning, new EventId(EventIds.LoginFailed), $"login {i}", null, static (s, _) => s);
        }
        Assert.Equal(LogThrottle.Burst, sink.Event(EventIds.LinkRefused).Count);
        Assert.Equal(LogThrottle.Burst, sink.Event(EventIds.LoginFailed).Count); // each event has its own budget
        time.Advance(LogThrottle.Window);
        var summary = sink.Event(EventIds.LinkRefused)[^1].Message;
        Assert.Equal($"{1000 - LogThrottle.Burst} more messages of this kind (event {EventIds.LinkRefused}) were left out in the last 10 s; the last: refused 999", summary);
        Assert.Equal(LogThrottle.Burst + 1, sink.Event(EventIds.LoginFailed).Count);

        // A new window: a few lines again, and nothing to report for the quiet event.
        for (var i = 0; i < 20; i++)
        {
            logger.Log(LogLevel.Warning, new EventId(EventIds.LinkRefused), $"again {i}", null, static (s, _) => s);
        }
        Assert.Equal(2 * LogThrottle.Burst + 1, sink.Event(EventIds.LinkRefused).Count);
        time.Advance(LogThrottle.Window);
        Assert.StartsWith("10 more messages", sink.Event(EventIds.LinkRefused)[^1].Message);
        Assert.Equal(LogThrottle.Burst + 1, sink.Event(EventIds.LoginFailed).Count);
    }

    [Fact]
    public void Lifecycle_events_are_never_held_back_and_Flush_reports_what_was_left_out()
    {
        var sink = new CapturingLoggerFactory();
        var factory = new SafeLoggerFactory(sink, new FakeTimeProvider());
        var logger = factory.CreateLogger("test");
        for (var i = 0; i < 50; i++)
        {
            logger.Log(LogLevel.Information, new EventId(EventIds.TunnelStarted), $"tunnel {i} started", null, static (s, _) => s);
            logger.Log(LogLevel.Warning, new EventId(EventIds.PendingLinkRefused), $"refused {i}", null, static (s, _) => s);
        }
        Assert.Equal(50, sink.Event(EventIds.TunnelStarted).Count);
        Assert.Equal(LogThrottle.Burst, sink.Event(EventIds.PendingLinkRefused).Count);
        factory.Flush();
        Assert.StartsWith("40 more messages", sink.Event(EventIds.PendingLinkRefused)[^1].Message);
        factory.Flush();
        Assert.Equal(LogThrottle.Burst + 1, sink.Event(EventIds.PendingLinkRefused).Count);
    }
}
