using System.Collections;
using System.Reflection;
using System.Text.Json;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Management;

/// <summary>A tunnel's hop keys stay in the engine: no output object, management answer or log line carries them.</summary>
public sealed class SecretOutputTests : TwoEngineTests
{
    private TunnelProfile Profile(string name) => new()
    {
        Name = name, Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_b)], Target = _echo.Uri,
    };

    /// <summary>Every secret byte string the engine keeps for the tunnel, as the texts a leak would show (base64, hex).</summary>
    private List<string> SecretTexts(QmTunnelEngine owner, string tunnel)
    {
        var credential = Assert.Single(owner.ProfileWithCredentials(tunnel).Credentials)!;
        Assert.True(credential.HasKeys);
        return new[] { credential.ClientKey!, credential.ServerKey! }
            .SelectMany(k => new[] { Convert.ToBase64String(k), Convert.ToHexString(k), Convert.ToHexString(k).ToLowerInvariant(), string.Join(", ", k) })
            .ToList();
    }

    /// <summary>Every public property, recursively (what ConvertTo-Json and Format-List * walk): no byte array, no key text.</summary>
    private static void AssertNoSecret(object? value, IReadOnlyList<string> secrets, string path = "", int depth = 0)
    {
        if (value is null || depth > 6)
        {
            return;
        }
        Assert.False(value is byte[], $"{path} is a byte array");
        if (value is string text)
        {
            Assert.DoesNotContain(secrets, s => text.Contains(s, StringComparison.Ordinal));
            return;
        }
        var type = value.GetType();
        if (type.IsPrimitive || type.IsEnum || value is DateTimeOffset or TimeSpan or DateTime)
        {
            return;
        }
        Assert.DoesNotContain(secrets, s => (value.ToString() ?? "").Contains(s, StringComparison.Ordinal));
        if (value is IEnumerable items)
        {
            var i = 0;
            foreach (var item in items)
            {
                AssertNoSecret(item, secrets, $"{path}[{i++}]", depth + 1);
            }
            return;
        }
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0))
        {
            Assert.False(property.Name is "ClientKey" or "ServerKey" or "Salt" && property.GetValue(value) is not null, $"{path}.{property.Name} is set");
            AssertNoSecret(property.GetValue(value), secrets, $"{path}.{property.Name}", depth + 1);
        }
    }

    [Fact]
    public async Task Tunnel_objects_show_who_logs_in_at_each_hop_and_carry_no_key()
    {
        var created = await _a.NewTunnelAsync(Profile("keys"), [EngineFixture.AdminLogin]);
        var secrets = SecretTexts(_a, "keys");
        var local = new LocalQmTunnelServer(_a);
        var objects = new List<object>
        {
            created,
            _a.GetTunnel("keys"),
            await local.GetTunnelAsync("keys", default),
            await local.GetTunnelsAsync(default),
            await local.StartTunnelAsync("keys", default),
            await local.SetTunnelAsync("keys", new TunnelChange { Description = "changed" }, null, default),
            await local.GetTunnelStatsAsync("keys", default),
        };
        foreach (var item in objects)
        {
            AssertNoSecret(item, secrets);
            var json = JsonSerializer.Serialize(item, item.GetType());
            Assert.DoesNotContain(secrets, json.Contains);
            Assert.DoesNotContain("ClientKey", json, StringComparison.Ordinal);
        }
        var hop = Assert.Single(created.Hops);
        Assert.Equal(("admin", HopLoginKind.Password), (hop.User, hop.Login));
        Assert.Equal(EngineFixture.TlsHop(_b), hop.Server);
        Assert.Empty(created.Profile.Credentials);
    }

    [Fact]
    public async Task A_management_answer_carries_no_key_and_still_tells_how_each_hop_logs_in()
    {
        await using var session = await QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt://127.0.0.1:{_a.Port}", "test"),
            new PasswordLogin("admin", EngineFixture.AdminPassword), TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins));
        var created = await session.NewTunnelAsync(Profile("remote"), [EngineFixture.AdminLogin], default);
        var secrets = SecretTexts(_a, "remote");
        foreach (var item in new object[] { created, await session.GetTunnelAsync("remote", default), await session.GetTunnelsAsync(default) })
        {
            AssertNoSecret(item, secrets);
        }
        Assert.Equal(HopLoginKind.Password, Assert.Single(created.Hops).Login);

        // The answers themselves, as they cross the wire (the client drops credentials it is sent, so the objects
        // above would look clean either way): read through a plain session and a relay that records what A sends.
        await using var relay = new RecordingRelay(_a.Port);
        await using (var plain = await QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt+plain://127.0.0.1:{relay.Port}?compress=none", "test"),
            new PasswordLogin("admin", EngineFixture.AdminPassword), TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins)))
        {
            await plain.GetTunnelAsync("remote", default);
            await plain.GetTunnelsAsync(default);
            await plain.GetTunnelStatsAsync("remote", default);
        }
        var answers = System.Text.Encoding.UTF8.GetString(relay.FromServer);
        Assert.Contains(EngineFixture.TlsHop(_b), answers, StringComparison.Ordinal); // the recording holds the answers
        Assert.DoesNotContain(secrets, s => answers.Contains(s, StringComparison.Ordinal));
        Assert.DoesNotContain("clientKey", answers, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Printing_a_credential_or_an_Open_never_shows_the_keys()
    {
        // Real-sized keys, and every text a printed key would show (Base64, hex, the bytes as numbers), for both keys.
        var credential = new HopCredential
        {
            User = "alice", Salt = System.Security.Cryptography.RandomNumberGenerator.GetBytes(16), Iterations = 100_000,
            ClientKey = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32), ServerKey = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32),
        };
        var secrets = new[] { credential.ClientKey!, credential.ServerKey! }
            .SelectMany(k => new[] { Convert.ToBase64String(k), Convert.ToHexString(k), Convert.ToHexString(k).ToLowerInvariant(), string.Join(", ", k), string.Join(" ", k) })
            .ToList();
        var route = credential.ToRouteCredential();
        var open = new QmTunnel.Engine.Protocol.OpenMessage(QmTunnel.Engine.Protocol.StreamProtocol.Tcp, "t", "tcp://x:1", ["qmt://b:9200"], 1000, QmTunnel.Engine.Protocol.OpenOptions.None, "c") { RouteCredentials = [route] };
        var profile = new TunnelProfile { Name = "t", Listen = "tcp://127.0.0.1:1", Via = ["qmt://b:9200"], Target = "tcp://x:1", Credentials = [credential] };
        foreach (var text in new[] { $"{credential}", credential.ToString(), $"{route}", $"{open}", $"{profile}", $"{profile with { }}" })
        {
            Assert.DoesNotContain(secrets, s => text.Contains(s, StringComparison.Ordinal));
            Assert.DoesNotContain("System.Byte[]", text, StringComparison.Ordinal);
        }
        Assert.Contains("alice", credential.ToString(), StringComparison.Ordinal);
        Assert.Contains("alice", route.ToString(), StringComparison.Ordinal);
    }
}
