using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Security;

namespace QmTunnel.Engine.Tests.Security;

/// <summary>Allow-rules for path ends (unix:///path, pipe://name): path patterns, and host:port patterns that never match a path but the full wildcard.</summary>
public sealed class PathAllowRuleTests
{
    /// <summary>A request with the given ends: a path end's host is its URI and its port 0 (as AccessControl builds them).</summary>
    private static TunnelRequest Request(RuleDirection direction, string bind, string target, params (string, int)[] servers)
    {
        static (string, int) End(string text) => AccessControl.IsPathText(text) ? (text, 0) : AccessControl.SplitHostPort(text);
        var (bindHost, bindPort) = End(bind);
        var (targetHost, targetPort) = End(target);
        return new TunnelRequest { Direction = direction, BindHost = bindHost, BindPort = bindPort, TargetHost = targetHost, TargetPort = targetPort, Servers = servers };
    }

    private static TunnelRequest L(string bind, string target) => Request(RuleDirection.LocalToRemote, bind, target, ("hostB", 9200));

    private static bool Match(string rule, TunnelRequest request) => AllowRule.Parse(rule).Matches(request);

    [Theory]
    [InlineData("L#*:*#*#*:*")]
    [InlineData("L#*#*#*")]
    [InlineData("L###")]
    public void The_full_wildcard_allows_path_ends_too(string rule)
    {
        Assert.True(Match(rule, L("unix:///run/app.sock?mode=0660", "db:5432")));
        Assert.True(Match(rule, L("127.0.0.1:5432", "unix:///run/postgresql/.s.PGSQL.5432")));
        Assert.True(Match(rule, L("pipe://sql", "pipe://other")));
    }

    [Theory]
    [InlineData("L#127.0.0.1:*#*#*:*")]
    [InlineData("L#*:0#*#*:*")]
    [InlineData("L#*:0-65535#*#*:*")]
    [InlineData("L#unix*:*#*#*:*")]
    [InlineData("L#*:?#*#*:*")]
    [InlineData("L#localhost#*#*:*")]
    public void A_host_port_pattern_that_is_not_the_full_wildcard_never_matches_a_path_listener(string rule)
    {
        Assert.False(Match(rule, L("unix:///run/app.sock", "db:5432")));
        Assert.False(Match(rule, L("pipe://app", "db:5432")));
    }

    [Fact]
    public void A_host_port_target_pattern_never_matches_a_path_target()
    {
        Assert.True(Match("L#127.0.0.1:*#*#db:5432", L("127.0.0.1:15432", "db:5432")));
        Assert.False(Match("L#127.0.0.1:*#*#*:5432", L("127.0.0.1:15432", "unix:///run/db.sock")));
        Assert.False(Match("L#127.0.0.1:*#*#*:0-65535", L("127.0.0.1:15432", "pipe://db")));
    }

    [Theory]
    [InlineData("unix:///run/qmt/*", "unix:///run/qmt/app.sock", true)]
    [InlineData("unix:///run/qmt/*", "unix:///run/qmt/sub/app.sock", true)] // * takes '/' too
    [InlineData("unix:///run/qmt/*", "unix:///run/qmt.sock", false)]
    [InlineData("unix:///run/qmt/*", "unix:///run/qmtx/app.sock", false)]
    [InlineData("unix:///run/qmt/*", "unix:///tmp/run/qmt/app.sock", false)]
    [InlineData("unix:///run/qmt/*", "unix:///run/qmt/app.sock?mode=0660", true)] // the mode is not part of the path
    [InlineData("unix:///run/qmt/*", "unix:///RUN/qmt/app.sock", false)] // case-sensitive
    [InlineData("unix:///run/qmt/app?.sock", "unix:///run/qmt/app1.sock", true)]
    [InlineData("unix:///run/qmt/app?.sock", "unix:///run/qmt/app12.sock", false)]
    [InlineData("unix:///run/a.sock", "unix:///run/a.sock", true)]
    [InlineData("unix:///run/a.sock", "unix:///run/a.sock2", false)]
    [InlineData("UNIX:///run/a.sock", "unix:///run/a.sock", true)] // the scheme is not case-sensitive
    [InlineData("unix://*", "unix:///anything/at/all.sock", true)]
    [InlineData("unix://*", "pipe://anything", false)]
    [InlineData("unix:///run/qmt/*", "pipe://run", false)]
    [InlineData("pipe://sql*", "pipe://sqlquery", true)]
    [InlineData("pipe://sql*", "pipe://SQLquery", false)]
    [InlineData("pipe://sql*", "pipe://mysql", false)]
    [InlineData("pipe://*", "pipe://x", true)]
    [InlineData("pipe://*", "unix:///x", false)]
    [InlineData("pipe://*", "127.0.0.1:80", false)]
    [InlineData("unix://*", "127.0.0.1:80", false)]
    public void Path_patterns(string pattern, string end, bool expected)
    {
        Assert.Equal(expected, Match($"L#{pattern}#*#*:*", L(end, "db:5432")));
        Assert.Equal(expected, Match($"L#*:*#*#{pattern}", L("127.0.0.1:1", end)));
    }

    [Fact]
    public void R_rules_take_path_patterns_in_the_same_fields()
    {
        // R#remote-target#servers#bind: the far listener is last, the owner's target first
        var request = Request(RuleDirection.RemoteToLocal, "unix:///run/qmt/in.sock", "unix:///run/app/api.sock", ("hostB", 9200));
        Assert.True(Match("R#unix:///run/app/*#*#unix:///run/qmt/*", request));
        Assert.False(Match("R#unix:///run/app/*#*#*:0-65535", request));
        Assert.False(Match("L#unix:///run/qmt/*#*#unix:///run/app/*", request));
    }

    public static TheoryData<TunnelRequest, string> Requests() => new()
    {
        { L("unix:///run/qmt/a.sock?mode=0660", "db:5432"), "L#unix:///run/qmt/a.sock#hostB:9200#db:5432" },
        { L("127.0.0.1:8080", "pipe://sql"), "L#127.0.0.1:8080#hostB:9200#pipe://sql" },
        { Request(RuleDirection.RemoteToLocal, "0.0.0.0:2222", "unix:///run/app.sock", ("hostB", 9200)), "R#unix:///run/app.sock#hostB:9200#0.0.0.0:2222" },
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public void A_request_with_paths_written_as_a_rule_allows_itself_and_not_another_path(TunnelRequest request, string text)
    {
        Assert.Equal(text, request.ToString());
        var rule = AllowRule.Parse(request.ToString());
        Assert.True(rule.Matches(request));
        var other = AccessControl.IsPathText(request.TargetHost) ? request with { TargetHost = request.TargetHost + "2" }
            : request with { BindHost = request.BindHost.Replace(".sock", ".sock2", StringComparison.Ordinal) };
        Assert.False(rule.Matches(other));
    }

    [Theory]
    [InlineData("L#unix://#*#*:*", "field 2 (bind host:port) 'unix://': a unix pattern needs a path")]
    [InlineData("L#*:*#*#pipe://", "field 4 (target host:port) 'pipe://': a pipe pattern needs a name")]
    [InlineData("L#unix://run/app.sock#*#*:*", "three slashes: unix:///run/app.sock")]
    [InlineData("L#unix:///run/../etc/*#*#*:*", "without '//', '.' or '..' parts")]
    [InlineData("L#unix:///run//x#*#*:*", "without '//', '.' or '..' parts")]
    [InlineData("L#unix:///run/a.sock?mode=0660#*#*:*", "leave ?mode= out")]
    [InlineData("L#*:*#*#pipe://a/b", "a pipe name pattern has letters")]
    [InlineData("L#*:*#unix:///run/x#*:*", "field 3 (server 1) 'unix:///run/x': a server is host[:port]")]
    [InlineData("L#/run/app.sock#*#*:*", "a Unix socket is written unix:///path")]
    public void Invalid_path_patterns_name_the_field_and_the_fix(string rule, string expected)
    {
        var ex = Assert.Throws<QmTunnelException>(() => AllowRule.Parse(rule));
        Assert.Equal(SecurityErrorIds.AllowRuleInvalid, ex.ErrorId);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains($"'{rule}'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_path_listener_is_seen_by_the_next_server_as_its_path_not_as_the_previous_hosts_address()
    {
        var open = new OpenMessage(StreamProtocol.Tcp, "t", "tcp://db:5432", [], 5000, OpenOptions.None, "t")
        {
            Listen = "unix:///run/qmt/a.sock?mode=0600",
            Servers = ["hostB:9200"],
        };
        var (seen, problem) = AccessControl.AsSeenBy(open, System.Net.IPAddress.Parse("10.0.0.5"), "hostB");
        Assert.Null(problem);
        var request = AccessControl.RequestFor(seen);
        Assert.False(Match("L#10.0.0.5:*#*#db:5432", request)); // the address rule of the owner's host does not allow its socket listeners
        Assert.True(Match("L#unix:///run/qmt/*#*#db:5432", request));

        // a claimed path is read as an endpoint is: one that walks out of a directory is no request at all
        var walking = open with { Listen = "unix:///run/qmt/../../var/run/docker.sock" };
        Assert.Throws<QmTunnelException>(() => AccessControl.RequestFor(AccessControl.AsSeenBy(walking, System.Net.IPAddress.Parse("10.0.0.5"), "hostB").Seen));

        var tcp = AccessControl.RequestFor(AccessControl.AsSeenBy(open with { Listen = "127.0.0.1:80" }, System.Net.IPAddress.Parse("10.0.0.5"), "hostB").Seen);
        Assert.True(Match("L#10.0.0.5:*#*#db:5432", tcp)); // a tcp listener is still seen as the previous host's address
        Assert.False(Match("L#unix://*#*#db:5432", tcp));
    }
}
