using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;

namespace QmTunnel.Fuzz.Targets;

/// <summary>
/// Random JSON for management messages: objects whose keys come from the argument and answer types the code reads
/// (their properties in camelCase, found by reflection, so new fields are drawn too) and values of every JSON kind,
/// at the edges of what a reader expects (huge numbers, wrong types, deep nesting, names, durations).
/// </summary>
public static class JsonGenerator
{
    private static readonly string[] ArgumentKeys =
    [
        "name", "group", "password", "certificateThumbprint", "enabled", "description", "rights", "allowRules", "change",
        "profile", "logins", "names", "interval", "server", "v", "op", "args", "ok", "result", "error", "id", "kind", "target", "message",
    ];

    /// <summary>Keys of the types management messages carry, as their JSON names.</summary>
    public static readonly string[] Keys = ArgumentKeys.Concat(
        new[] { typeof(TunnelProfile), typeof(TunnelChange), typeof(HopLogin), typeof(UserChange), typeof(GroupChange), typeof(ServerConfigChange),
            typeof(ServerInfo), typeof(TunnelStats), typeof(ConnectionInfo), typeof(UserInfo), typeof(GroupInfo), typeof(ServerConfig) }
        .SelectMany(t => t.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        .Select(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name))).Distinct().ToArray();

    private static readonly string[] Strings =
    [
        "", "web", "admin", "Administrators", "00:00:01", "1.00:00:00", "-00:00:01", "10675199.02:48:05.4775807", "99999999.00:00:00",
        "tcp://db:5432", "qmt://b:9200", "127.0.0.1:8080", "Tcp", "Listening", "CreateTunnels", "None", "2026-11-28T05:00:00Z",
        "ab\u0000c", "é€東🚇", "L#*:*#*#*:*", "GetServerInfo", "ManagementMessageInvalid",
    ];

    private static readonly string[] Numbers =
    [
        "0", "1", "-1", "2", "1.5", "-0", "1e400", "-1e400", "2147483647", "2147483648", "-2147483649", "9223372036854775807",
        "9223372036854775808", "18446744073709551616", "1E2", "0.0000001", "65535", "65536", "4294967296",
    ];

    /// <summary>A JSON value at most <paramref name="depth"/> levels deep.</summary>
    public static JsonNode? Value(Random random, int depth)
    {
        switch (random.Next(depth <= 0 ? 5 : 8))
        {
            case 0:
                return null;
            case 1:
                return JsonValue.Create(random.Next(2) == 0);
            case 2:
                return JsonNode.Parse(Numbers[random.Next(Numbers.Length)]);
            case 3:
                return JsonValue.Create(Strings[random.Next(Strings.Length)]);
            case 4:
                return JsonValue.Create(Generate.Text(random, 64));
            case 5:
                var array = new JsonArray();
                for (var n = random.Next(5); n > 0; n--)
                {
                    array.Add(Value(random, depth - 1));
                }
                return array;
            default:
                return Object(random, depth - 1);
        }
    }

    /// <summary>An object of 0 to 6 properties with known keys (sometimes an unknown one).</summary>
    public static JsonObject Object(Random random, int depth)
    {
        var obj = new JsonObject();
        for (var n = random.Next(7); n > 0; n--)
        {
            var key = random.Next(10) == 0 ? Generate.Text(random, 12) : Keys[random.Next(Keys.Length)];
            obj[key] = Value(random, depth);
        }
        return obj;
    }

    /// <summary>A request as a client would send one (a known operation, version 1), with random arguments.</summary>
    public static JsonObject Request(Random random)
    {
        var operations = ManagementService.Operations.ToArray();
        var request = ManagementMessages.Request(operations[random.Next(operations.Length)], Object(random, 3));
        if (random.Next(10) == 0)
        {
            request["v"] = Value(random, 0);
        }
        return request;
    }

    /// <summary>An answer as a server would send one: a success with a random result, or a failure.</summary>
    public static JsonObject Answer(Random random) => random.Next(3) switch
    {
        0 => ManagementMessages.Success(Value(random, 4)),
        1 => ManagementMessages.Success(new JsonArray(Object(random, 3), Object(random, 2))),
        _ => new JsonObject { ["v"] = 1, ["ok"] = false, ["error"] = Object(random, 1) },
    };

    /// <summary>The bytes of a message on a management stream: u32 length and JSON.</summary>
    public static byte[] Framed(JsonNode node) => ManagementMessages.Frame(node);
}
