using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Errors;
using QmTunnel.Engine.Links;

namespace QmTunnel.Engine.Tests.Endpoints;

/// <summary>
/// The compression options of a server address (<c>compress=</c>, <c>compress-level=</c>): the defaults per scheme, read,
/// written back only when they differ from the default, refused with the fix, and kept out of the address pins use.
/// </summary>
public sealed class EndpointUriCompressionTests
{
    [Fact]
    public void A_TLS_hop_is_uncompressed_and_an_unencrypted_hop_uses_LZ4_unless_the_address_says_otherwise()
    {
        Assert.Equal(LinkCompression.None, EndpointUri.ParseServer("qmt://b", "Via").Compression);
        Assert.Equal(LinkCompression.Lz4, EndpointUri.ParseServer("qmt+plain://b", "Via").Compression);
        Assert.Equal(LinkCompression.None, EndpointUri.ParseApplication("tcp://b:1", "Target").Compression);
        Assert.Equal(LinkCompression.None, (new EndpointUri(EndpointScheme.Qmt, "b", 9200)).Compression);
        Assert.Equal(LinkCompression.Lz4, (new EndpointUri(EndpointScheme.QmtPlain, "b", 9200)).Compression);
    }

    [Theory]
    [InlineData("qmt://b?compress=lz4", "qmt://b:9200?compress=lz4", CompressionAlgorithm.Lz4, 0)]
    [InlineData("qmt://b?compress=LZ4&compress-level=9", "qmt://b:9200?compress=lz4&compress-level=9", CompressionAlgorithm.Lz4, 9)]
    [InlineData("qmt://b?compress=zstd", "qmt://b:9200?compress=zstd", CompressionAlgorithm.Zstd, 3)]
    [InlineData("qmt://b?compress=zstd&compress-level=19", "qmt://b:9200?compress=zstd&compress-level=19", CompressionAlgorithm.Zstd, 19)]
    [InlineData("qmt://b?compress=none", "qmt://b:9200", CompressionAlgorithm.None, 0)]
    [InlineData("qmt+plain://b?compress=lz4", "qmt+plain://b:9200", CompressionAlgorithm.Lz4, 0)]
    [InlineData("qmt+plain://b?compress=none", "qmt+plain://b:9200?compress=none", CompressionAlgorithm.None, 0)]
    [InlineData("qmt+plain://b?compress=off", "qmt+plain://b:9200?compress=none", CompressionAlgorithm.None, 0)]
    [InlineData("qmt+plain://b?compress-level=12", "qmt+plain://b:9200?compress=lz4&compress-level=12", CompressionAlgorithm.Lz4, 12)]
    [InlineData("qmt://ops@b?tls=1.3&compress=zstd&compress-level=1&heartbeat=5s", "qmt://ops@b:9200?tls=1.3&heartbeat=5s&compress=zstd&compress-level=1", CompressionAlgorithm.Zstd, 1)]
    public void Compression_is_read_and_only_what_differs_from_the_default_written_back(string text, string written, CompressionAlgorithm algorithm, int level)
    {
        var uri = EndpointUri.ParseServer(text, "Via");
        Assert.Equal(new LinkCompression(algorithm, level), uri.Compression);
        Assert.Equal(written, uri.ToString());
        Assert.Equal(uri, EndpointUri.ParseServer(uri.ToString(), "Via"));
    }

    [Theory]
    [InlineData("qmt://b?compress=gzip", "compress=gzip is not a compression; use compress=none, compress=lz4 or compress=zstd")]
    [InlineData("qmt://b?compress=", "compress= is not a compression")]
    [InlineData("qmt://b?compress=lz4&compress-level=13", "compress-level=13 is not a lz4 level; lz4 takes 0 to 12")]
    [InlineData("qmt://b?compress=zstd&compress-level=0", "compress-level=0 is not a zstd level; zstd takes 1 to 19")]
    [InlineData("qmt://b?compress=zstd&compress-level=22", "compress-level=22 is not a zstd level")]
    [InlineData("qmt://b?compress-level=3", "compress-level=3 needs a compression: give lz4 (levels 0-12) or zstd (levels 1-19)")]
    [InlineData("qmt+plain://b?compress=none&compress-level=1", "compress-level=1 needs a compression")]
    [InlineData("qmt://b?compress=lz4&compress-level=high", "compress-level=high is not a whole number; lz4 takes 0 to 12, zstd 1 to 19")]
    public void A_compression_option_that_cannot_work_is_refused_saying_what_to_write(string text, string message)
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer(text, "Via"));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_application_endpoint_takes_no_compression_option()
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseApplication("tcp://b:1?compress=lz4", "Target"));
        Assert.Contains("takes no query", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Compression_stays_out_of_the_Address_that_pins_are_keyed_by_and_differs_the_address_as_a_value()
    {
        var packed = EndpointUri.ParseServer("qmt://b?compress=zstd", "Via");
        var plain = EndpointUri.ParseServer("qmt://b", "Via");
        Assert.Equal("qmt://b:9200", packed.Address);
        Assert.Equal("qmt+plain://b:9200", EndpointUri.ParseServer("qmt+plain://b?compress=none", "Via").Address);
        Assert.NotEqual(plain, packed);
        Assert.NotEqual(plain.ToString(), packed.ToString()); // the link pool keys links by this text
    }
}
