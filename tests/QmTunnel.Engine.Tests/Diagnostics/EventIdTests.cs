using System.Reflection;
using Microsoft.Extensions.Logging;
using QmTunnel.Engine.Diagnostics;

namespace QmTunnel.Engine.Tests.Diagnostics;

/// <summary>Every log event of the engine and the daemon has an id of its own, taken from the one list (EventIds).</summary>
public sealed class EventIdTests
{
    private static readonly Assembly[] Assemblies =
    [
        typeof(EventIds).Assembly,
        Assembly.Load("qmtunnel-server"),
    ];

    private static IEnumerable<(string Method, int Id)> LoggerMessages() =>
        Assemblies.SelectMany(a => a.GetTypes())
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Select(m => (Method: m, Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(x => x.Attribute is not null)
            .Select(x => ($"{x.Method.DeclaringType!.FullName}.{x.Method.Name}", x.Attribute!.EventId));

    private static IReadOnlyDictionary<string, int> ListedIds() =>
        typeof(EventIds).GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral).ToDictionary(f => f.Name, f => (int)f.GetValue(null)!);

    [Fact]
    public void The_list_has_no_id_twice()
    {
        var duplicates = ListedIds().GroupBy(p => p.Value).Where(g => g.Count() > 1).Select(g => $"{g.Key}: {string.Join(", ", g.Select(p => p.Key))}").ToList();
        Assert.Empty(duplicates);
    }

    [Fact]
    public void Every_log_event_uses_its_own_id_from_the_list()
    {
        var messages = LoggerMessages().ToList();
        Assert.True(messages.Count >= ListedIds().Count, $"found only {messages.Count} [LoggerMessage] methods: the scan is broken");
        var listed = ListedIds().Values.ToHashSet();
        Assert.Empty(messages.Where(m => !listed.Contains(m.Id)).Select(m => $"{m.Method} uses {m.Id}, which EventIds does not list"));
        Assert.Empty(messages.GroupBy(m => m.Id).Where(g => g.Count() > 1).Select(g => $"{g.Key}: {string.Join(", ", g.Select(m => m.Method))}"));
    }
}
