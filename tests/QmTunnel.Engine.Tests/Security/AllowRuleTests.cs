using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Security;

public sealed class AllowRuleTests
{
    /// <summary>An L request from "host:port" strings: bind, servers…, target.</summary>
    private static TunnelRequest L(string bind, params string[] rest) => Request(RuleDirection.LocalToRemote, bind, rest);

    /// <summary>An R request written in rule order: target (opened by the first server), servers…, bind (on the last server).</summary>
    private static TunnelRequest R(string target, params string[] rest) => Request(RuleDirection.RemoteToLocal, target, rest);

    private static TunnelRequest Request(RuleDirection direction, string first, string[] rest)
    {
        var (firstHost, firstPort) = Split(first);
        var (lastHost, lastPort) = Split(rest[^1]);
        var servers = rest[..^1].Select(Split).ToList();
        return direction == RuleDirection.LocalToRemote
            ? new TunnelRequest { Direction = direction, BindHost = firstHost, BindPort = firstPort, Servers = servers, TargetHost = lastHost, TargetPort = lastPort }
            : new TunnelRequest { Direction = direction, TargetHost = firstHost, TargetPort = firstPort, Servers = servers, BindHost = lastHost, BindPort = lastPort };
    }

    private static (string Host, int Port) Split(string hostPort)
    {
        var colon = hostPort.LastIndexOf(':');
        return (hostPort[..colon], int.Parse(hostPort[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    private static bool Match(string rule, TunnelRequest request) => AllowRule.Parse(rule).Matches(request);

    // ---- the original's defaults ----

    public static TheoryData<TunnelRequest> AnyLocalTunnel() => new()
    {
        L("127.0.0.1:5432", "db.lan:5432"),
        L("127.0.0.1:5432", "hostB:9200", "db.lan:5432"),
        L("0.0.0.0:0", "gw1:9200", "hostB:9201", "db.lan:5432"),
        L("::1:80", "gw1:9200", "gw2:9200", "hostB:9200", "[fe80::1]:80"),
    };

    [Theory]
    [MemberData(nameof(AnyLocalTunnel))]
    public void Default_L_rule_allows_every_local_tunnel_with_0_to_3_servers_and_not_R_tunnels(TunnelRequest request)
    {
        Assert.True(Match("L#*:*#*#*:*", request));
        Assert.False(Match("R#*:*#*#*:*", request));
        var reversed = request with { Direction = RuleDirection.RemoteToLocal };
        Assert.True(Match("R#*:*#*#*:*", reversed));
        Assert.False(Match("L#*:*#*#*:*", reversed));
    }

    [Fact]
    public void Default_rules_of_the_Administrators_group_parse()
    {
        foreach (var rule in Group.AllowEverything)
        {
            Assert.Equal(rule, AllowRule.Parse(rule).Text);
        }
        Assert.Equal(["L#*:*#*#*:*", "R#*:*#*#*:*"], Group.CreateAdministrators().AllowRules);
    }

    // ---- exact rules and single fields ----

    [Theory]
    [InlineData(true, "127.0.0.1:5432", "hostB:9200", "db.lan:5432")]
    [InlineData(false, "127.0.0.1:5433", "hostB:9200", "db.lan:5432")]
    [InlineData(false, "127.0.0.2:5432", "hostB:9200", "db.lan:5432")]
    [InlineData(false, "127.0.0.1:5432", "hostC:9200", "db.lan:5432")]
    [InlineData(false, "127.0.0.1:5432", "hostB:9201", "db.lan:5432")]
    [InlineData(false, "127.0.0.1:5432", "hostB:9200", "db.lan:5433")]
    [InlineData(false, "127.0.0.1:5432", "hostB:9200", "db2.lan:5432")]
    [InlineData(true, "127.0.0.1:5432", "HOSTB:9200", "DB.Lan:5432")]
    public void An_exact_rule_matches_only_that_tunnel(bool expected, string bind, string server, string target)
    {
        Assert.Equal(expected, Match("L#127.0.0.1:5432#hostB:9200#db.lan:5432", L(bind, server, target)));
    }

    [Fact]
    public void An_exact_rule_needs_exactly_its_servers()
    {
        const string rule = "L#127.0.0.1:5432#hostB:9200#db.lan:5432";
        Assert.False(Match(rule, L("127.0.0.1:5432", "db.lan:5432")));
        Assert.False(Match(rule, L("127.0.0.1:5432", "gw:9200", "hostB:9200", "db.lan:5432")));
        Assert.False(Match(rule, L("127.0.0.1:5432", "hostB:9200", "hostB:9200", "db.lan:5432")));
    }

    [Fact]
    public void Rule_text_is_case_insensitive_for_hosts_and_direction()
    {
        Assert.True(Match("l#LOCALHOST:80#HostB#DB.LAN:5432", L("localhost:80", "hostb:9200", "db.lan:5432")));
        Assert.True(Match("r#DB.LAN:5432#*#0.0.0.0:2222", R("db.lan:5432", "hostB:9200", "0.0.0.0:2222")));
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(9200, true)]
    [InlineData(65535, true)]
    public void A_server_without_a_port_matches_any_port(int port, bool expected)
    {
        Assert.Equal(expected, Match("L#*:*#hostB#*:*", L("a:1", $"hostB:{port}", "b:2")));
    }

    [Theory]
    [InlineData("L##*#db:5432")]
    [InlineData("L#:#*#db:5432")]
    [InlineData("L#*#*#db:5432")]
    [InlineData("L#:*#*#db:5432")]
    [InlineData("L#*:#*#db:5432")]
    public void Empty_or_star_parts_mean_any(string rule)
    {
        Assert.True(Match(rule, L("10.1.2.3:4567", "x:9200", "db:5432")));
        Assert.True(Match(rule, L("localhost:0", "db:5432")));
        Assert.False(Match(rule, L("localhost:0", "db:5433")));
    }

    [Fact]
    public void Whitespace_around_the_rule_and_its_fields_is_ignored()
    {
        Assert.True(Match("  L # 127.0.0.1:* # * # db:5432 ", L("127.0.0.1:5", "h:1", "db:5432")));
    }

    // ---- wildcards in hosts ----

    [Theory]
    [InlineData("*.lan", "db.lan", true)]
    [InlineData("*.lan", "a.b.lan", true)]
    [InlineData("*.lan", "lan", false)]
    [InlineData("*.lan", "db.lan.evil.com", false)]
    [InlineData("db*", "db", true)]
    [InlineData("db*", "db01.lan", true)]
    [InlineData("db?", "db1", true)]
    [InlineData("db?", "db", false)]
    [InlineData("db?", "db12", false)]
    [InlineData("d?.*.lan", "db.x.lan", true)]
    [InlineData("d?.*.lan", "db..lan", true)]
    [InlineData("10.0.*.*", "10.0.3.4", true)]
    [InlineData("10.0.*.*", "10.1.3.4", false)]
    [InlineData("*a*b*c", "xaybzc", true)]
    [InlineData("*a*b*c", "xaybzcd", false)]
    [InlineData("*", "anything.at.all", true)]
    [InlineData("DB.LAN", "db.lan", true)]
    public void Host_wildcards(string pattern, string host, bool expected)
    {
        Assert.Equal(expected, Match($"L#*:*#*#{pattern}:5432", L("127.0.0.1:1", "s:9200", $"{host}:5432")));
    }

    [Theory]
    [InlineData("[::1]:5432", "::1", true)]
    [InlineData("[::1]:5432", "[::1]", true)]
    [InlineData("[::1]:5432", "0:0:0:0:0:0:0:1", true)]
    [InlineData("[::1]:5432", "::2", false)]
    [InlineData("[::1]", "::1", true)]
    [InlineData("[fe80::*]:*", "fe80::1", true)]
    [InlineData("[fe80::*]:*", "fe81::1", false)]
    [InlineData("127.0.0.1:5432", "127.0.0.1", true)]
    [InlineData("127.0.0.1:5432", "::ffff:127.0.0.1", false)]
    public void IPv6_in_brackets_and_addresses_compare_as_addresses(string field, string host, bool expected)
    {
        Assert.Equal(expected, Match($"L#{field}#*#*:*", L($"{host}:5432", "s:9200", "t:1")));
    }

    // ---- ports ----

    [Theory]
    [InlineData("5432", 5432, true)]
    [InlineData("5432", 5433, false)]
    [InlineData("05432", 5432, true)]
    [InlineData("*", 1, true)]
    [InlineData("", 65535, true)]
    [InlineData("54??", 5400, true)]
    [InlineData("54??", 5499, true)]
    [InlineData("54??", 5500, false)]
    [InlineData("54??", 540, false)]
    [InlineData("54??", 54000, false)]
    [InlineData("80*", 80, true)]
    [InlineData("80*", 8080, true)]
    [InlineData("80*", 8180, false)]
    [InlineData("1024-65535", 1023, false)]
    [InlineData("1024-65535", 1024, true)]
    [InlineData("1024-65535", 65535, true)]
    [InlineData("0-0", 0, true)]
    [InlineData("0-0", 1, false)]
    public void Port_patterns(string port, int actual, bool expected)
    {
        Assert.Equal(expected, Match($"L#*:*#*#db:{port}", L("127.0.0.1:1", "s:9200", $"db:{actual}")));
        Assert.Equal(expected, Match($"L#*:{port}#*#*:*", L($"127.0.0.1:{actual}", "s:9200", "db:1")));
        Assert.Equal(expected, Match($"L#*:*#s:{port}#*:*", L("127.0.0.1:1", $"s:{actual}", "db:1")));
    }

    // ---- server chains ----

    [Theory]
    [InlineData(0, true)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(3, true)]
    public void A_bare_star_middle_field_matches_any_number_of_servers(int count, bool expected)
    {
        var hops = Enumerable.Range(1, count).Select(i => $"gw{i}:9200").Append("db:5432").ToArray();
        Assert.Equal(expected, Match("L#*:*#*#*:*", L("127.0.0.1:1", hops)));
        Assert.Equal(expected, Match("L#*:*##*:*", L("127.0.0.1:1", hops)));
        Assert.Equal(expected, Match("L#*:*#*#*#*:*", L("127.0.0.1:1", hops)));
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    public void A_star_with_a_port_matches_exactly_one_server(int count, bool expected)
    {
        var hops = Enumerable.Range(1, count).Select(i => $"gw{i}:9200").Append("db:5432").ToArray();
        Assert.Equal(expected, Match("L#*:*#*:*#*:*", L("127.0.0.1:1", hops)));
        Assert.Equal(expected, Match("L#*:*#*:9200#*:*", L("127.0.0.1:1", hops)));
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(1, false)]
    [InlineData(2, false)]
    public void A_rule_without_middle_fields_matches_only_an_empty_chain(int count, bool expected)
    {
        var hops = Enumerable.Range(1, count).Select(i => $"gw{i}:9200").Append("db:5432").ToArray();
        Assert.Equal(expected, Match("L#*:*#*:*", L("127.0.0.1:1", hops)));
    }

    public static TheoryData<string[], bool> Chains() => new()
    {
        { ["gw1.dmz:9200", "hostB:9200"], true },
        { ["gw1.dmz:9200", "x:1", "hostB:9200"], true },
        { ["gw1.dmz:9200", "x:1", "y:2", "hostB:9200"], true },
        { ["gw1.dmz:9200"], false },
        { ["hostB:9200"], false },
        { ["hostB:9200", "gw1.dmz:9200"], false },
        { ["gw1.dmz:9200", "hostB:9200", "x:1"], false },
        { ["gw12.dmz:9200", "hostB:9200"], false },
        { ["gw1.dmz:9201", "hostB:9200"], false },
        { ["gw1.dmz:9200", "hostb:9999"], true },
    };

    [Theory]
    [MemberData(nameof(Chains))]
    public void Fixed_servers_with_stars_between_match_in_order(string[] servers, bool expected)
    {
        Assert.Equal(expected, Match("L#*:*#gw?.dmz:9200#*#HOSTB#db:5432", L("127.0.0.1:1", [.. servers, "db:5432"])));
    }

    [Fact]
    public void A_star_in_front_of_a_fixed_last_server_pins_the_last_hop()
    {
        const string rule = "L#*:*#*#hostB:9200#db:5432";
        Assert.True(Match(rule, L("a:1", "hostB:9200", "db:5432")));
        Assert.True(Match(rule, L("a:1", "g1:1", "g2:2", "hostB:9200", "db:5432")));
        Assert.False(Match(rule, L("a:1", "hostB:9200", "g1:1", "db:5432")));
        Assert.False(Match(rule, L("a:1", "db:5432")));
    }

    // ---- R rules ----

    [Fact]
    public void R_rules_read_remote_target_first_and_the_far_listener_last()
    {
        const string rule = "R#10.0.0.5:22#hostB:9200#0.0.0.0:2222";
        var request = new TunnelRequest
        {
            Direction = RuleDirection.RemoteToLocal,
            TargetHost = "10.0.0.5",
            TargetPort = 22,
            Servers = [("hostB", 9200)],
            BindHost = "0.0.0.0",
            BindPort = 2222,
        };
        Assert.True(Match(rule, request));
        Assert.Equal(rule, request.ToString());
        Assert.False(Match(rule, request with { BindPort = 2223 }));
        Assert.False(Match(rule, request with { TargetHost = "10.0.0.6" }));
        Assert.False(Match(rule, request with { BindHost = "10.0.0.5", BindPort = 22, TargetHost = "0.0.0.0", TargetPort = 2222 }));
        Assert.False(Match(rule, request with { Direction = RuleDirection.LocalToRemote }));
        Assert.False(Match("L#10.0.0.5:22#hostB:9200#0.0.0.0:2222", request));
    }

    [Theory]
    [InlineData(true, "127.0.0.1:3389", "hostB:9200", "0.0.0.0:13389")]
    [InlineData(true, "127.0.0.1:3389", "gw:9200", "hostB:9200", "0.0.0.0:13389")]
    [InlineData(false, "127.0.0.1:3389", "0.0.0.0:13389")]
    [InlineData(false, "127.0.0.1:22", "hostB:9200", "0.0.0.0:13389")]
    [InlineData(false, "127.0.0.1:3389", "hostB:9200", "0.0.0.0:80")]
    [InlineData(true, "127.0.0.1:3389", "hostB:9200", "0.0.0.0:65535")]
    public void R_rules_with_wildcards_and_ranges(bool expected, params string[] hops)
    {
        Assert.Equal(expected, Match("R#127.0.0.1:3389#*#hostB:*#*:1024-65535", R(hops[0], hops[1..])));
    }

    // ---- request text ----

    public static TheoryData<TunnelRequest, string> Requests() => new()
    {
        { L("127.0.0.1:5432", "db.lan:5432"), "L#127.0.0.1:5432#db.lan:5432" },
        { L("127.0.0.1:0", "hostB:9200", "gw:9201", "db.lan:5432"), "L#127.0.0.1:0#hostB:9200#gw:9201#db.lan:5432" },
        { L("::1:8080", "[fe80::1]:9200", "2001:db8::5:443"), "L#[::1]:8080#[fe80::1]:9200#[2001:db8::5]:443" },
        { R("10.0.0.5:22", "hostB:9200", "0.0.0.0:2222"), "R#10.0.0.5:22#hostB:9200#0.0.0.0:2222" },
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public void A_request_written_as_a_rule_allows_itself_and_nothing_else(TunnelRequest request, string text)
    {
        // The text is spelled out: a rule parsed from the request's own text would also match if that text were looser.
        Assert.Equal(text, request.ToString());
        var rule = AllowRule.Parse(request.ToString());
        Assert.True(rule.Matches(request));
        Assert.Equal(request.Direction, rule.Direction);
        // Exactly this tunnel: another port anywhere, one server more or less, or the other direction is not allowed.
        Assert.False(rule.Matches(request with { BindPort = request.BindPort + 1 }));
        Assert.False(rule.Matches(request with { TargetPort = request.TargetPort + 1 }));
        Assert.False(rule.Matches(request with { Servers = [.. request.Servers, ("extra", 1)] }));
        Assert.False(request.Servers.Count > 0 && rule.Matches(request with { Servers = request.Servers.Skip(1).ToList() }));
        Assert.All(request.Servers.Select((_, i) => i), i =>
            Assert.False(rule.Matches(request with { Servers = request.Servers.Select((s, j) => j == i ? (s.Host, s.Port + 1) : s).ToList() })));
        Assert.False(rule.Matches(request with { Direction = request.Direction == RuleDirection.LocalToRemote ? RuleDirection.RemoteToLocal : RuleDirection.LocalToRemote }));
    }

    // ---- parse errors ----

    [Theory]
    [InlineData("", "empty")]
    [InlineData("   ", "empty")]
    [InlineData("L", "1 '#'-separated field")]
    [InlineData("L#*:*", "2 '#'-separated fields")]
    [InlineData("X#*:*#*#*:*", "field 1 (direction) 'X'")]
    [InlineData("LR#*:*#*#*:*", "field 1 (direction)")]
    [InlineData("L#db lan:1#*#*:*", "field 2 (bind host:port) 'db lan:1'")]
    [InlineData("R#db/lan:1#*#*:*", "field 2 (remote host:port)")]
    [InlineData("L#*:*#*#db:99999", "field 4 (target host:port) 'db:99999'")]
    [InlineData("L#*:*#*#db:65536", "out of range")]
    [InlineData("L#*:*#*#db:123456", "field 4 (target host:port)")]
    [InlineData("L#*:*#*#db:http", "port 'http' is not valid")]
    [InlineData("L#*:*#*#db:-1", "port range '-1'")]
    [InlineData("L#*:*#*#db:10-5", "port range '10-5'")]
    [InlineData("R#*:*#*#*:x", "field 4 (bind host:port)")]
    [InlineData("L#*:*#a b#*:*", "field 3 (server 1) 'a b'")]
    [InlineData("L#*:*#*#gw:x#*:*", "field 4 (server 2) 'gw:x'")]
    [InlineData("L#::1:80#*#*:*", "needs brackets")]
    [InlineData("L#[::1#*#*:*", "is not closed")]
    [InlineData("L#[::1]80#*#*:*", "after the IPv6 address")]
    [InlineData("L#[::1/8]:80#*#*:*", "not allowed in an IPv6 address")]
    public void Invalid_rules_name_the_rule_the_field_and_the_fix(string rule, string expected)
    {
        var ex = Assert.Throws<QmTunnelException>(() => AllowRule.Parse(rule));
        Assert.Equal(SecurityErrorIds.AllowRuleInvalid, ex.ErrorId);
        Assert.Equal(QmErrorKind.InvalidArgument, ex.Kind);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        if (rule.Trim().Length > 0)
        {
            Assert.Contains($"'{rule.Trim()}'", ex.Message, StringComparison.Ordinal);
        }
        Assert.False(AllowRule.TryParse(rule, out var parsed, out var error));
        Assert.Null(parsed);
        Assert.Equal(ex.Message, error);
    }

    [Fact]
    public void Errors_about_the_shape_show_the_format()
    {
        var ex = Assert.Throws<QmTunnelException>(() => AllowRule.Parse("Q#a#b"));
        Assert.Contains("L#bind-host:bind-port#server[:port]#…#target-host:target-port", ex.Message, StringComparison.Ordinal);
        Assert.Contains("L#*:*#*#*:*", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Oversize_rules_are_refused()
    {
        Assert.False(AllowRule.TryParse("L#*:*#" + new string('a', AllowRule.MaxLength) + "#*:*", out _, out var error));
        Assert.Contains("characters long", error, StringComparison.Ordinal);
        var many = "L#*:*#" + string.Join('#', Enumerable.Repeat("*", AllowRule.MaxServerFields + 1)) + "#*:*";
        Assert.False(AllowRule.TryParse(many, out _, out error));
        Assert.Contains("server fields", error, StringComparison.Ordinal);
    }

    // ---- rule sets ----

    private static readonly Group Developers = new()
    {
        Name = "Developers",
        Rights = GroupRights.CreateTunnels,
        AllowRules = ["L#127.0.0.1:*#*#*.dev.lan:*", "R#127.0.0.1:22#hostB:9200#*:2200-2299"],
    };

    [Fact]
    public void A_rule_set_allows_by_the_first_matching_rule_and_names_it()
    {
        var decision = AllowRuleSet.Evaluate(Developers, L("127.0.0.1:8080", "hostB:9200", "web.dev.lan:80"));
        Assert.True(decision.Allowed);
        Assert.Equal("L#127.0.0.1:*#*#*.dev.lan:*", decision.Rule?.Text);
        Assert.Equal("Developers", decision.GroupName);
        Assert.Contains("Rule 'L#127.0.0.1:*#*#*.dev.lan:*' of group 'Developers' allows", decision.Reason, StringComparison.Ordinal);

        decision = AllowRuleSet.Evaluate(Developers, R("127.0.0.1:22", "hostB:9200", "0.0.0.0:2222"));
        Assert.True(decision.Allowed);
        Assert.Equal("R#127.0.0.1:22#hostB:9200#*:2200-2299", decision.Rule?.Text);
    }

    [Fact]
    public void A_rule_set_denies_when_no_rule_matches_and_says_which_group_and_tunnel()
    {
        var request = L("0.0.0.0:8080", "hostB:9200", "web.dev.lan:80");
        var decision = AllowRuleSet.Evaluate(Developers, request);
        Assert.False(decision.Allowed);
        Assert.Null(decision.Rule);
        Assert.Contains("No rule of group 'Developers' matches tunnel L#0.0.0.0:8080#hostB:9200#web.dev.lan:80", decision.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_group_without_rules_allows_nothing()
    {
        var decision = AllowRuleSet.Evaluate(Developers with { AllowRules = [] }, L("127.0.0.1:1", "db:5432"));
        Assert.False(decision.Allowed);
        Assert.Contains("has no allow-rules", decision.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Invalid_stored_rules_are_ignored_and_named()
    {
        var set = new AllowRuleSet("Ops", ["L#*:*#*#db:99999", "L#*:*#*#db:5432"]);
        Assert.Single(set.Rules);
        Assert.Equal(["L#*:*#*#db:99999"], set.InvalidRules);
        Assert.True(set.Evaluate(L("a:1", "s:1", "db:5432")).Allowed);
        var denied = set.Evaluate(L("a:1", "s:1", "db:1"));
        Assert.False(denied.Allowed);
        Assert.Contains("L#*:*#*#db:99999", denied.Reason, StringComparison.Ordinal);
    }
}
