using System.Text.Json.Nodes;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tests.Functional;

namespace QmTunnel.Engine.Tests.Management;

/// <summary>
/// Every object of the management API carries where it came from (Origin), set by the side that receives it: the
/// session, the in-process server, the client pins. It is never sent on the wire, and a peer cannot set it.
/// </summary>
public sealed class OriginTests : TwoEngineTests
{
    private Task<QmTunnelSession> ConnectAsync(QmTunnelEngine engine) =>
        QmTunnelSession.ConnectAsync(EndpointUri.ParseServer($"qmt://127.0.0.1:{engine.Port}", "test"), new PasswordLogin("admin", EngineFixture.AdminPassword),
            TimeSpan.FromSeconds(10), CancellationToken.None, new ClientKnownServers(_pins));

    private TunnelProfile Profile(string name) => new() { Name = name, Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(_a)], Target = _echo.Uri };

    [Fact]
    public async Task Every_answer_of_a_session_carries_that_session_as_its_origin()
    {
        await using var session = await ConnectAsync(_b);
        Assert.Equal(_b.ServerId, session.ServerId);
        _b.NewGroup("Twins", GroupRights.None, []);
        var answers = new List<QmTunnelObject>
        {
            session.ServerInfo!,
            await session.GetServerInfoAsync(default),
            await session.NewTunnelAsync(Profile("twin"), [EngineFixture.AdminLogin], default),
            await session.GetTunnelAsync("twin", default),
            await session.StartTunnelAsync("twin", default),
            await session.GetTunnelStatsAsync("twin", default),
            await session.SetTunnelAsync("twin", new TunnelChange { Description = "x" }, null, default),
            await session.StopTunnelAsync("twin", default),
            await session.NewUserAsync("twin", "Twins", null, null, true, "", default),
            await session.GetUserAsync("twin", default),
            await session.SetUserAsync("twin", new UserChange { Description = "x" }, default),
            await session.GetGroupAsync("Twins", default),
            await session.SetGroupAsync("Twins", new GroupChange { Description = "x" }, default),
            await session.NewGroupAsync("Spare", GroupRights.None, [], "", default),
            await session.GetServerConfigAsync(default),
            await session.SetServerConfigAsync(new ServerConfigChange(), default),
        };
        answers.AddRange(await session.GetTunnelsAsync(default));
        answers.AddRange(await session.GetUsersAsync(null, default));
        answers.AddRange(await session.GetGroupsAsync(default));
        answers.AddRange(await session.GetKnownServersAsync(default));
        using (var watching = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            await foreach (var update in session.WatchTunnelStatsAsync(["twin"], QmTunnelEngine.MinimumWatchInterval, watching.Token))
            {
                answers.AddRange(update);
                break;
            }
        }
        Assert.Contains(answers, a => a is KnownServer); // B pinned A when the tunnel's hop logged in
        Assert.Contains(answers, a => a is TunnelStats);
        foreach (var answer in answers)
        {
            var origin = answer.Origin;
            Assert.NotNull(origin);
            Assert.Equal(OriginKind.Session, origin.Kind);
            Assert.Same(session, origin.GetSession());
            Assert.Equal(session.Address, origin.Server);
            Assert.Equal("admin", origin.User);
            Assert.Equal(_b.ServerId, origin.ServerId);
            Assert.Equal(session.Address, origin.ToString());
        }
    }

    [Fact]
    public async Task The_in_process_server_and_the_client_pins_stamp_their_own_origin()
    {
        var local = new LocalQmTunnelServer(_b);
        await local.NewTunnelAsync(Profile("twin"), [EngineFixture.AdminLogin], default);
        var answers = new List<QmTunnelObject> { await local.GetServerInfoAsync(default), await local.GetTunnelAsync("twin", default), await local.GetServerConfigAsync(default) };
        answers.AddRange(await local.GetKnownServersAsync(default));
        answers.AddRange(await local.GetConnectionsAsync("twin", default));
        Assert.All(answers, a =>
        {
            Assert.Equal(OriginKind.InProcess, a.Origin!.Kind);
            Assert.Equal(_b.ServerId, a.Origin.ServerId);
            Assert.Null(a.Origin.GetSession());
            Assert.Equal("in-process", a.Origin.ToString());
        });

        await using (await ConnectAsync(_a))
        {
            // pins A for this client
        }
        var pin = Assert.Single(new ClientKnownServers(_pins).GetAll());
        Assert.Equal(OriginKind.ClientPins, pin.Origin!.Kind);
        Assert.Equal(_pins, pin.Origin.Server);
        Assert.Null(pin.Origin.ServerId);
        Assert.Equal("client", pin.Origin.ToString());
    }

    [Fact]
    public void The_origin_is_never_sent_and_a_peer_cannot_set_it()
    {
        var stats = new TunnelStats { Name = "twin", State = TunnelState.Stopped, Origin = QmTunnelOrigin.InProcess("id-of-this-server") };
        var sent = ManagementMessages.ToNode(stats)!.AsObject();
        Assert.DoesNotContain(sent, p => p.Key.Contains("origin", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain("id-of-this-server", sent.ToJsonString(), StringComparison.Ordinal);

        var forged = JsonNode.Parse("""{"name":"twin","state":"Stopped","origin":{"kind":"InProcess","server":"in-process","serverId":"x"}}""");
        Assert.Null(ManagementMessages.FromNode<TunnelStats>(forged, "a stats answer").Origin);
        var user = JsonNode.Parse("""{"name":"twin","group":"g","Origin":"in-process"}""");
        Assert.Null(ManagementMessages.FromNode<UserInfo>(user, "a user answer").Origin);
    }
}
