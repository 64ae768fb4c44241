using System.Text;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Tunnels;
using Reply = QmTunnel.Engine.Tunnels.Socks5Handler.Reply;

namespace QmTunnel.Engine.Tests.Tunnels;

/// <summary>
/// The parts of SOCKS5 forwarding that need no network: a dial's failure text to a Reset code, a Reset code to a SOCKS
/// reply, which names may go into a target URI, and allow-rules matching a tunnel without a target.
/// </summary>
public sealed class Socks5HandlerTests
{
    [Theory]
    [InlineData("ConnectionRefused: Connection refused", ProtocolErrorCode.TargetRefused)]
    [InlineData("HostUnreachable: No route to host", ProtocolErrorCode.TargetHostUnreachable)]
    [InlineData("HostNotFound: Name or service not known", ProtocolErrorCode.TargetHostUnreachable)]
    [InlineData("TryAgain: Temporary failure in name resolution", ProtocolErrorCode.TargetHostUnreachable)]
    [InlineData("NoData: No address associated with hostname", ProtocolErrorCode.TargetHostUnreachable)]
    [InlineData("NetworkUnreachable: Network is unreachable", ProtocolErrorCode.TargetNetworkUnreachable)]
    [InlineData("NetworkDown: Network is down", ProtocolErrorCode.TargetNetworkUnreachable)]
    [InlineData("TimedOut: Connection timed out", ProtocolErrorCode.TargetTimedOut)]
    [InlineData("no answer within 5000 ms", ProtocolErrorCode.TargetTimedOut)]
    [InlineData("AccessDenied: Permission denied", ProtocolErrorCode.TargetConnectFailed)]
    [InlineData("the server is stopping", ProtocolErrorCode.TargetConnectFailed)]
    [InlineData("NotASocketError: whatever", ProtocolErrorCode.TargetConnectFailed)]
    [InlineData("", ProtocolErrorCode.TargetConnectFailed)]
    [InlineData(null, ProtocolErrorCode.TargetConnectFailed)]
    public void A_dial_failure_becomes_the_reset_code_of_its_cause(string? failure, ProtocolErrorCode expected) =>
        Assert.Equal(expected, TargetDialer.CodeFor(failure));

    [Theory]
    [InlineData(ProtocolErrorCode.PermissionDenied, (byte)Reply.NotAllowedByRuleset)]
    [InlineData(ProtocolErrorCode.TargetRefused, (byte)Reply.ConnectionRefused)]
    [InlineData(ProtocolErrorCode.TargetHostUnreachable, (byte)Reply.HostUnreachable)]
    [InlineData(ProtocolErrorCode.TargetNetworkUnreachable, (byte)Reply.NetworkUnreachable)]
    [InlineData(ProtocolErrorCode.TargetTimedOut, (byte)Reply.TtlExpired)]
    [InlineData(ProtocolErrorCode.TargetConnectFailed, (byte)Reply.GeneralFailure)]
    [InlineData(ProtocolErrorCode.HopAuthenticationFailed, (byte)Reply.GeneralFailure)]
    [InlineData(ProtocolErrorCode.StreamLimit, (byte)Reply.GeneralFailure)]
    [InlineData(ProtocolErrorCode.LinkLost, (byte)Reply.GeneralFailure)]
    public void A_reset_code_becomes_the_socks_reply_of_RFC_1928(ProtocolErrorCode code, byte expected) =>
        Assert.Equal(expected, (byte)Socks5Handler.ReplyFor(code));

    [Fact]
    public void Every_target_failure_code_counts_as_one()
    {
        foreach (var code in new[] { ProtocolErrorCode.TargetConnectFailed, ProtocolErrorCode.TargetRefused, ProtocolErrorCode.TargetHostUnreachable,
                     ProtocolErrorCode.TargetNetworkUnreachable, ProtocolErrorCode.TargetTimedOut })
        {
            Assert.True(ProtocolErrorCodes.IsTargetFailure(code), code.ToString());
        }
        Assert.False(ProtocolErrorCodes.IsTargetFailure(ProtocolErrorCode.PermissionDenied));
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("db.lan.")]
    [InlineData("_service.example-1.net")]
    [InlineData("10.0.0.5")]
    public void A_host_name_of_letters_digits_hyphens_underscores_and_dots_is_taken(string name) =>
        Assert.Null(Socks5Handler.NameProblem(Encoding.ASCII.GetBytes(name)));

    [Theory]
    [InlineData("user@127.0.0.1", "0x40")]
    [InlineData("host/path", "0x2F")]
    [InlineData("host:80", "0x3A")]
    [InlineData("host?x", "0x3F")]
    [InlineData("a..b", "empty label")]
    [InlineData(".a", "empty label")]
    [InlineData("", "0 characters")]
    [InlineData(".", "0 characters")]
    [InlineData("h\u00e9", "0xC3")]
    [InlineData("a b", "0x20")]
    public void A_name_that_could_change_the_target_uri_or_is_no_dns_name_is_refused(string name, string why) =>
        Assert.Contains(why, Socks5Handler.NameProblem(Encoding.UTF8.GetBytes(name)), StringComparison.Ordinal);

    [Fact]
    public void Names_are_bounded_at_253_characters_and_labels_at_63()
    {
        var label63 = new string('a', 63);
        var longest = string.Join('.', label63, label63, label63, new string('b', 61)); // 253
        Assert.Equal(253, longest.Length);
        Assert.Null(Socks5Handler.NameProblem(Encoding.ASCII.GetBytes(longest)));
        Assert.Contains("254 characters", Socks5Handler.NameProblem(Encoding.ASCII.GetBytes(longest + "b")), StringComparison.Ordinal);
        Assert.Contains("longer than 63", Socks5Handler.NameProblem(Encoding.ASCII.GetBytes(label63 + "a.lan")), StringComparison.Ordinal);
    }

    private static TunnelRequest WithoutTarget(string bind, params (string, int)[] servers) => new()
    {
        Direction = RuleDirection.LocalToRemote,
        BindHost = bind,
        BindPort = 1080,
        Servers = servers,
        TargetHost = string.Empty,
        TargetPort = 0,
        AnyTarget = true,
    };

    [Fact]
    public void A_tunnel_without_a_target_is_matched_on_its_bind_and_servers_only_and_reads_as_a_rule_ending_in_any()
    {
        var request = WithoutTarget("127.0.0.1", ("gw", 9200));
        Assert.Equal("L#127.0.0.1:1080#gw:9200#*:*", request.ToString());
        Assert.True(AllowRule.Parse("L#127.0.0.1:*#gw#db.lan:5432").Matches(request));
        Assert.False(AllowRule.Parse("L#10.0.0.1:*#gw#db.lan:5432").Matches(request));
        Assert.False(AllowRule.Parse("L#127.0.0.1:*#other#*:*").Matches(request));
        Assert.False(AllowRule.Parse("R#*:*#*#*:*").Matches(request));
        Assert.True(AllowRule.Parse(request.ToString()).Matches(request));
    }

    [Fact]
    public void The_chains_own_streams_of_a_socks5_tunnel_carry_no_target_and_a_tcp_stream_must_name_one()
    {
        OpenMessage Open(StreamProtocol protocol) => new(protocol, "proxy", string.Empty, [], 5000, OpenOptions.None, "c")
        {
            Listen = "127.0.0.1:1080",
            Servers = ["127.0.0.1:9200"],
        };
        foreach (var protocol in new[] { StreamProtocol.Hold, StreamProtocol.Check, StreamProtocol.LinkInfo, StreamProtocol.AuthQuery })
        {
            Assert.True(AccessControl.RequestFor(Open(protocol)).AnyTarget, protocol.ToString());
        }
        var refused = Assert.Throws<ProtocolException>(() => AccessControl.RequestFor(Open(StreamProtocol.Tcp)));
        Assert.Equal(ProtocolErrorCode.OpenRejected, refused.Code);
        Assert.False(AccessControl.RequestFor(Open(StreamProtocol.Tcp) with { Target = "tcp://db.lan:5432" }).AnyTarget);
    }
}
