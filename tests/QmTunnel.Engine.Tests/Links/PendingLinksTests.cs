using System.Net;
using System.Net.Sockets;
using QmTunnel.Engine.Links;

namespace QmTunnel.Engine.Tests.Links;

/// <summary>The pending-link table on its own: the per-source cap refuses, the overall cap evicts the oldest.</summary>
public sealed class PendingLinksTests
{
    private static PendingLink Link(string address) =>
        new(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp), IPAddress.Parse(address), address + ":1", new CancellationTokenSource());

    [Fact]
    public void A_source_at_its_cap_is_refused_and_the_others_are_not()
    {
        var table = new PendingLinks(maxTotal: 10, maxPerSource: 2);
        Assert.True(table.TryAdd(Link("192.0.2.1"), out _));
        Assert.True(table.TryAdd(Link("192.0.2.1"), out _));
        Assert.False(table.TryAdd(Link("192.0.2.1"), out var evicted));
        Assert.Null(evicted);
        Assert.True(table.TryAdd(Link("192.0.2.2"), out _));
        Assert.Equal(3, table.Count);
        Assert.Equal(1, table.Refused);
        Assert.Equal(0, table.Evicted);
    }

    [Fact]
    public void At_the_overall_cap_the_oldest_is_evicted_and_the_count_never_passes_the_cap()
    {
        var table = new PendingLinks(maxTotal: 3, maxPerSource: 3);
        var first = Link("192.0.2.1");
        var second = Link("192.0.2.2");
        Assert.True(table.TryAdd(first, out _));
        Assert.True(table.TryAdd(second, out _));
        Assert.True(table.TryAdd(Link("192.0.2.3"), out _));
        Assert.True(table.TryAdd(Link("192.0.2.4"), out var evicted));
        Assert.Same(first, evicted);
        Assert.False(table.Remove(first)); // already out: whoever evicted it aborts it
        Assert.True(table.TryAdd(Link("192.0.2.5"), out evicted));
        Assert.Same(second, evicted);
        Assert.Equal(3, table.Count);
        Assert.Equal(3, table.Peak);
        Assert.Equal(2, table.Evicted);
    }

    [Fact]
    public void An_evicted_link_frees_its_source_slot()
    {
        var table = new PendingLinks(maxTotal: 2, maxPerSource: 1);
        Assert.True(table.TryAdd(Link("192.0.2.1"), out _));
        Assert.True(table.TryAdd(Link("192.0.2.2"), out _));
        Assert.True(table.TryAdd(Link("192.0.2.3"), out var evicted)); // evicts the one of .1
        Assert.NotNull(evicted);
        Assert.True(table.TryAdd(Link("192.0.2.1"), out _)); // .1 may come again
    }

    [Fact]
    public void Removing_a_link_frees_its_slot_once()
    {
        var table = new PendingLinks(maxTotal: 5, maxPerSource: 1);
        var link = Link("192.0.2.1");
        Assert.True(table.TryAdd(link, out _));
        Assert.False(table.TryAdd(Link("192.0.2.1"), out _));
        Assert.True(table.Remove(link));
        Assert.False(table.Remove(link));
        Assert.Equal(0, table.Count);
        Assert.True(table.TryAdd(Link("192.0.2.1"), out _));
        Assert.Single(table.RemoveAll());
        Assert.Equal(0, table.Count);
    }

    [Theory]
    [InlineData("2001:db8:1:2::1", "2001:db8:1:2:ffff::7", true)]   // one /64
    [InlineData("2001:db8:1:2::1", "2001:db8:1:3::1", false)]       // the next /64
    [InlineData("::ffff:192.0.2.1", "192.0.2.1", true)]             // IPv4-mapped is its IPv4 address
    [InlineData("192.0.2.1", "192.0.2.2", false)]
    [InlineData("::1", "::ffff:0.0.0.1", false)]                    // never mixed up with IPv4
    public void Sources_are_IPv4_addresses_and_IPv6_slash_64s(string a, string b, bool same)
    {
        Assert.Equal(same, SourceKey.Of(IPAddress.Parse(a)) == SourceKey.Of(IPAddress.Parse(b)));
        var table = new PendingLinks(maxTotal: 10, maxPerSource: 1);
        Assert.True(table.TryAdd(Link(a), out _));
        Assert.Equal(!same, table.TryAdd(Link(b), out _));
    }

    [Fact]
    public void A_source_is_shown_as_its_address_or_its_slash_64()
    {
        Assert.Equal("192.0.2.1", SourceKey.Of(IPAddress.Parse("::ffff:192.0.2.1")).ToString());
        Assert.Equal("2001:db8:1:2::/64", SourceKey.Of(IPAddress.Parse("2001:db8:1:2:3:4:5:6")).ToString());
    }
}
