using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;

namespace QmTunnel.Engine.Management.Remote;

/// <summary>
/// Management messages (docs/protocol.md, "Management"): each is a u32 big-endian length and that many bytes of UTF-8
/// JSON, at most <see cref="MaxMessageBytes"/>, on a stream opened with <see cref="StreamProtocol.Management"/>.
/// A request is <c>{"v":1,"op":"GetTunnels","args":{...}}</c>; an answer is <c>{"v":1,"ok":true,"result":...}</c> or
/// <c>{"v":1,"ok":false,"error":{"id","kind","target","message"}}</c>. One request per stream; a watch answers with
/// one message per update until the client half-closes or resets the stream.
/// </summary>
public static class ManagementMessages
{
    public const int Version = 1;
    public const int MaxMessageBytes = 1024 * 1024;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static byte[] Frame(JsonNode message)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(message, Json);
        if (json.Length > MaxMessageBytes)
        {
            throw new QmTunnelException(ErrorIds.ManagementMessageInvalid, QmErrorKind.InvalidData, null,
                $"A management message of {json.Length} bytes is over the {MaxMessageBytes}-byte limit. Ask for less at once (one tunnel's connections, fewer names).");
        }
        var bytes = new byte[4 + json.Length];
        BinaryPrimitives.WriteInt32BigEndian(bytes, json.Length);
        json.CopyTo(bytes, 4);
        return bytes;
    }

    public static Task SendAsync(MuxStream stream, JsonNode message, CancellationToken cancellationToken) =>
        stream.SendAsync(Frame(message), cancellationToken);

    /// <summary>The next message, or null at the peer's Fin. A malformed or oversize one is ManagementMessageInvalid.</summary>
    public static async Task<JsonNode?> ReadAsync(MuxStream stream, CancellationToken cancellationToken)
    {
        var input = stream.Input;
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            try
            {
                if (TryReadMessage(ref buffer, out var node))
                {
                    input.AdvanceTo(buffer.Start);
                    stream.Consumed((int)(result.Buffer.Length - buffer.Length));
                    return node;
                }
            }
            catch (QmTunnelException)
            {
                input.AdvanceTo(result.Buffer.Start);
                throw;
            }
            if (result.IsCompleted)
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                if (buffer.IsEmpty)
                {
                    return null;
                }
                throw Invalid($"the stream ended inside a message ({buffer.Length} bytes)");
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>
    /// Tries to take one whole message off the front of <paramref name="buffer"/> (the one parser of management messages,
    /// fuzzed by tests/QmTunnel.Fuzz). Returns false when more bytes are needed (buffer untouched). The length is checked
    /// against <see cref="MaxMessageBytes"/> before anything is waited for; a bad length, malformed JSON or a JSON null is
    /// ManagementMessageInvalid, and nothing else is thrown.
    /// </summary>
    public static bool TryReadMessage(ref ReadOnlySequence<byte> buffer, [NotNullWhen(true)] out JsonNode? node)
    {
        node = null;
        if (buffer.Length < 4)
        {
            return false;
        }
        Span<byte> prefix = stackalloc byte[4];
        buffer.Slice(0, 4).CopyTo(prefix);
        var length = BinaryPrimitives.ReadInt32BigEndian(prefix);
        if (length is < 0 or > MaxMessageBytes)
        {
            throw Invalid($"a message announces {length} bytes; the limit is {MaxMessageBytes}");
        }
        if (buffer.Length < 4 + (long)length)
        {
            return false;
        }
        try
        {
            var reader = new Utf8JsonReader(buffer.Slice(4, length));
            node = JsonNode.Parse(ref reader);
        }
        catch (JsonException ex)
        {
            throw Invalid("a message is not JSON: " + ex.Message);
        }
        if (node is null)
        {
            throw Invalid("a message is null");
        }
        buffer = buffer.Slice(4 + (long)length);
        return true;
    }

    public static JsonObject Request(string op, JsonObject args) => new() { ["v"] = Version, ["op"] = op, ["args"] = args };

    public static JsonObject Success(JsonNode? result) => new() { ["v"] = Version, ["ok"] = true, ["result"] = result };

    public static JsonObject Failure(QmTunnelException ex) => new()
    {
        ["v"] = Version,
        ["ok"] = false,
        ["error"] = new JsonObject
        {
            ["id"] = ex.ErrorId,
            ["kind"] = ex.Kind.ToString(),
            ["target"] = ex.Target?.ToString(),
            ["message"] = ex.Message,
        },
    };

    /// <summary>The result of an answer, or its error thrown as the QmTunnelException the server raised.</summary>
    public static JsonNode? ResultOf(JsonNode answer, string server)
    {
        if (answer["v"]?.GetValue<int>() != Version)
        {
            throw Invalid($"{server} answered with management version {answer["v"]}; this side speaks {Version}");
        }
        if (answer["ok"]?.GetValue<bool>() == true)
        {
            return answer["result"];
        }
        var error = answer["error"] ?? throw Invalid("an answer has neither ok nor error");
        var kind = Enum.TryParse<QmErrorKind>(error["kind"]?.GetValue<string>(), out var k) ? k : QmErrorKind.InvalidOperation;
        throw new QmTunnelException(error["id"]?.GetValue<string>() ?? ErrorIds.ManagementMessageInvalid, kind,
            error["target"]?.GetValue<string>(), error["message"]?.GetValue<string>() ?? "(no message)");
    }

    public static JsonNode? ToNode<T>(T value) => JsonSerializer.SerializeToNode(value, Json);

    public static T FromNode<T>(JsonNode? node, string what)
    {
        try
        {
            return node.Deserialize<T>(Json) ?? throw Invalid($"{what} is missing");
        }
        catch (JsonException ex)
        {
            throw Invalid($"{what} cannot be read: {ex.Message}");
        }
    }

    public static QmTunnelException Invalid(string problem) =>
        new(ErrorIds.ManagementMessageInvalid, QmErrorKind.ProtocolError, null,
            $"A management message was refused: {problem}. Check that both sides run the same qmTunnel version.");
}

/// <summary>A tunnel as sent to a management client: its settings and who logs in at each hop, never the login keys.</summary>
internal sealed record TunnelInfoWire(TunnelProfile Profile, TunnelState State, string? BoundListen, string? LastError, IReadOnlyList<TunnelHopInfo>? Hops)
{
    public static TunnelInfoWire From(TunnelInfo t) => new(t.Profile with { Credentials = [] }, t.State, t.BoundListen, t.LastError, t.Hops);

    public TunnelInfo ToInfo() => new(Profile with { Credentials = [] }, State, BoundListen, LastError, Hops ?? TunnelHopInfo.For(Profile));
}
