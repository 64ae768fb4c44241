using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;

namespace QmTunnel.Engine.Tests.Management;

/// <summary>
/// The management message reader and the client's reading of answers, with the regressions the management fuzz targets
/// found: what reads is strict JSON (valid UTF-8, valid escapes, no name twice, one value), so a message that reads
/// cannot throw later where it is used; and whatever a server answers, the client throws only QmTunnelException.
/// </summary>
public sealed class ManagementMessageTests
{
    private static byte[] Framed(byte[] json)
    {
        var bytes = new byte[4 + json.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, json.Length);
        json.CopyTo(bytes, 4);
        return bytes;
    }

    private static byte[] Framed(string json) => Framed(Encoding.UTF8.GetBytes(json));

    private static QmTunnelException Refused(byte[] input)
    {
        var buffer = new ReadOnlySequence<byte>(input);
        var refused = Assert.Throws<QmTunnelException>(() => ManagementMessages.TryReadMessage(ref buffer, out _));
        Assert.Equal(ErrorIds.ManagementMessageInvalid, refused.ErrorId);
        return refused;
    }

    [Fact]
    public void A_whole_message_is_taken_off_the_buffer_and_the_bytes_behind_it_stay()
    {
        var buffer = new ReadOnlySequence<byte>([.. Framed("{\"v\":1}"), 0, 0]);

        Assert.True(ManagementMessages.TryReadMessage(ref buffer, out var node));

        Assert.Equal(1, node["v"]!.GetValue<int>());
        Assert.Equal(2, buffer.Length);
    }

    [Fact]
    public void A_message_not_yet_whole_asks_for_more_and_leaves_the_buffer_untouched()
    {
        var framed = Framed("{\"v\":1}");
        var buffer = new ReadOnlySequence<byte>(framed.AsMemory(0, framed.Length - 1));

        Assert.False(ManagementMessages.TryReadMessage(ref buffer, out _));

        Assert.Equal(framed.Length - 1, buffer.Length);
    }

    [Theory]
    [InlineData(new byte[] { 0x80, 0, 0, 0 })]
    [InlineData(new byte[] { 0x00, 0x10, 0x00, 0x01 })]
    public void A_length_over_the_cap_is_refused_before_its_bytes_arrive(byte[] prefix)
    {
        Assert.Contains("the limit is", Refused(prefix).Message);
    }

    [Fact]
    public void A_property_named_twice_is_refused()
    {
        Refused(Framed("{\"v\":1,\"v\":1}"));
    }

    [Fact]
    public void A_message_that_is_not_valid_UTF_8_is_refused()
    {
        Assert.Contains("UTF-8", Refused(Framed([(byte)'"', 0xC0, 0x80, (byte)'"'])).Message);
    }

    [Theory]
    [InlineData("\"\\ud800\"")]
    [InlineData("{\"\\ude87\":1}")]
    [InlineData("{\"a\":\"x\\ud83d\"}")]
    public void An_escaped_lone_surrogate_as_a_value_or_a_name_is_refused(string json)
    {
        Refused(Framed(json));
    }

    [Fact]
    public void Bytes_after_the_JSON_value_are_refused()
    {
        Refused(Framed("{\"v\":1} trailing"));
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("{\"v\":\"1\",\"ok\":true}")]
    [InlineData("{\"v\":1.5,\"ok\":true}")]
    [InlineData("{\"v\":1,\"ok\":\"yes\"}")]
    [InlineData("{\"v\":1,\"ok\":false,\"error\":[]}")]
    [InlineData("{\"v\":1,\"ok\":false,\"error\":{\"id\":\"X\",\"message\":false}}")]
    [InlineData("{\"v\":1,\"ok\":false,\"error\":{\"kind\":true}}")]
    public void An_answer_of_the_wrong_shape_is_ManagementMessageInvalid_on_the_client(string json)
    {
        var answer = JsonNode.Parse(json)!;

        var refused = Assert.Throws<QmTunnelException>(() => ManagementMessages.ResultOf(answer, "b:9200"));

        Assert.Equal(ErrorIds.ManagementMessageInvalid, refused.ErrorId);
        Assert.Contains("b:9200", refused.Message);
    }

    [Fact]
    public void A_server_error_in_an_answer_is_thrown_as_that_error()
    {
        var answer = JsonNode.Parse("{\"v\":1,\"ok\":false,\"error\":{\"id\":\"TunnelNotFound\",\"kind\":\"ObjectNotFound\",\"target\":\"web\",\"message\":\"No tunnel 'web'.\"}}")!;

        var error = Assert.Throws<QmTunnelException>(() => ManagementMessages.ResultOf(answer, "b:9200"));

        Assert.Equal("TunnelNotFound", error.ErrorId);
        Assert.Equal(QmErrorKind.ObjectNotFound, error.Kind);
        Assert.Equal("No tunnel 'web'.", error.Message);
    }

    [Fact]
    public void A_tunnel_without_a_profile_in_an_answer_is_ManagementMessageInvalid_not_a_NullReferenceException()
    {
        var wire = ManagementMessages.FromNode<TunnelInfoWire>(JsonNode.Parse("{\"profile\":null,\"state\":\"Listening\"}"), "the answer");

        var refused = Assert.Throws<QmTunnelException>(() => wire.ToInfo());

        Assert.Equal(ErrorIds.ManagementMessageInvalid, refused.ErrorId);
    }

    [Fact]
    public void A_result_value_of_the_wrong_type_is_ManagementMessageInvalid()
    {
        var refused = Assert.Throws<QmTunnelException>(() => ManagementMessages.FromNode<List<UserInfo>>(JsonNode.Parse("{\"a\":1}"), "the answer to GetUsers"));

        Assert.Equal(ErrorIds.ManagementMessageInvalid, refused.ErrorId);
    }
}
