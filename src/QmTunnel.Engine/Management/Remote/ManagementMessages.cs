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
        var body = buffer.Slice(4, length);
        // One contiguous copy at most (the JSON document keeps one anyway); strict UTF-8 and no property twice, so what
        // reads here reads the same everywhere (a node with an invalid string or a repeated name throws where it is used).
        var json = body.IsSingleSegment ? body.FirstSpan : body.ToArray();
        if (!System.Text.Unicode.Utf8.IsValid(json))
        {
            throw Invalid("a message is not valid UTF-8");
        }
        try
        {
            CheckEscapes(json);
            node = JsonNode.Parse(json, documentOptions: StrictJson);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
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

    /// <summary>
    /// Throws when an escaped string or name (<c>"\ud800"</c>) is no valid UTF-16: a lone surrogate would throw
    /// InvalidOperationException wherever the string is read or written again (an answer naming it, for one).
    /// </summary>
    private static void CheckEscapes(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
        while (reader.Read())
        {
            if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped)
            {
                reader.GetString();
            }
        }
    }

    /// <summary>How messages are read: one JSON value, nothing after it, at most 64 levels deep, no property name twice.</summary>
    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

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

    /// <summary>
    /// The result of an answer, or its error thrown as the QmTunnelException the server raised. An answer of the wrong
    /// shape (not an object, a value of the wrong type) is ManagementMessageInvalid: a server, even a hostile one, can make
    /// a client throw nothing else.
    /// </summary>
    public static JsonNode? ResultOf(JsonNode answer, string server)
    {
        try
        {
            return ResultOrError(answer, server);
        }
        catch (Exception ex) when (IsShapeError(ex))
        {
            throw Invalid($"{server} answered with a message of the wrong shape ({ex.Message})");
        }
    }

    /// <summary>What reading a JSON node of the wrong shape throws (GetValue of another type, a name on an array).</summary>
    private static bool IsShapeError(Exception ex) => ex is InvalidOperationException or FormatException or ArgumentException;

    private static JsonNode? ResultOrError(JsonNode answer, string server)
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
        catch (Exception ex) when (ex is JsonException || IsShapeError(ex))
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

    public TunnelInfo ToInfo() => Profile is null
        ? throw ManagementMessages.Invalid("a tunnel in the answer has no profile")
        : new(Profile with { Credentials = [] }, State, BoundListen, LastError, Hops ?? TunnelHopInfo.For(Profile));
}
