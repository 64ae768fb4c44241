using System.Buffers;
using System.Reflection;
using System.Text.Json.Nodes;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Management.Remote;

namespace QmTunnel.Fuzz.Targets;

/// <summary>
/// What a management server reads from a stream: <see cref="ManagementMessages.TryReadMessage"/> (u32 length + JSON),
/// then <see cref="ManagementService.ParseRequest"/> and the reading of every operation's arguments
/// (<see cref="ManagementService.DispatchAsync"/>, against a server stub that stops at the first call: the arguments were
/// read). Refusals are ManagementMessageInvalid or what <see cref="ManagementService.IsRequestError"/> accepts (both
/// answered ManagementMessageInvalid); nothing else. Allocation budget of the message read, from the code: a contiguous
/// copy of a body that arrived in pieces (1 byte per byte), the JSON document's own copy (1) and its metadata, 12 bytes
/// per token with up to 2 tokens in 3 bytes (<c>[],</c>: 8), in an array grown by doubling (up to twice that): 18 bytes
/// per input byte, rounded up to 24, plus the slack; never the announced length before the bytes are there. A message
/// read re-frames to the same JSON.
/// </summary>
public sealed class ManagementRequestTarget : FuzzTarget
{
    public const int BytesPerInputByte = 24;

    private readonly IQmTunnelServer _stub = ServerStub.Create();

    public override string Name => "management";

    public override byte[] Generate(Random random) => JsonGenerator.Framed(JsonGenerator.Request(random));

    public override IEnumerable<byte[]> Seeds() => ManagementSeeds.All();

    public override void Execute(byte[] input)
    {
        var node = ReadMessage(this, input);
        if (node is null)
        {
            return;
        }
        try
        {
            var (op, args) = ManagementService.ParseRequest(node);
            ManagementService.DispatchAsync(_stub, op, args, CancellationToken.None).GetAwaiter().GetResult();
            Outcome("arguments read (watch)");
        }
        catch (ServerReachedException)
        {
            Outcome("arguments read");
        }
        catch (Exception ex) when (ManagementService.IsRequestError(ex) || IsInvalid(ex))
        {
            Outcome("request refused");
        }
    }

    /// <summary>Reads one message as both sides do, checks the allocation and that it re-frames to equal JSON.</summary>
    internal static JsonNode? ReadMessage(FuzzTarget target, byte[] input)
    {
        var buffer = Targets.Generate.Segmented(input);
        JsonNode? node = null;
        var before = AllocatedBytesOf();
        try
        {
            ManagementMessages.TryReadMessage(ref buffer, out node);
        }
        catch (QmTunnelException ex) when (IsInvalid(ex))
        {
            target.OutcomeOf("message refused");
        }
        target.CheckAllocationOf(before, AllocationSlack + BytesPerInputByte * (long)input.Length, "ManagementMessages.TryReadMessage", input.Length);
        if (node is null)
        {
            return null;
        }
        byte[] framed;
        try
        {
            framed = ManagementMessages.Frame(node);
        }
        catch (QmTunnelException ex) when (IsInvalid(ex))
        {
            return node; // escaped again it is over the cap: the writer refuses it, as documented
        }
        // Framed again, read and framed once more: the same bytes (JsonNode.DeepEquals is not used: it throws
        // ArgumentOutOfRangeException on a number whose exponent is past Int32, which JSON allows and the reader accepts).
        var again = new ReadOnlySequence<byte>(framed);
        if (!ManagementMessages.TryReadMessage(ref again, out var reread) || !ManagementMessages.Frame(reread).AsSpan().SequenceEqual(framed))
        {
            throw new FuzzFailure(FuzzFailureKind.RoundTrip, "a management message does not read back equal once framed again");
        }
        return node;
    }

    internal static bool IsInvalid(Exception ex) => ex is QmTunnelException { ErrorId: ErrorIds.ManagementMessageInvalid };

    private static long AllocatedBytesOf() => GC.GetAllocatedBytesForCurrentThread();
}

/// <summary>
/// What a management client reads from a server (a hostile one too): the message, <see cref="ManagementMessages.ResultOf"/>
/// and the result as each type the client asks for (<see cref="ManagementMessages.FromNode{T}"/>). Everything a server
/// can send comes out as a <see cref="QmTunnelException"/> (the server's own error, or ManagementMessageInvalid), so a
/// script sees an ErrorRecord, never a stray InvalidOperationException.
/// </summary>
public sealed class ManagementAnswerTarget : FuzzTarget
{
    private static readonly MethodInfo FromNode = typeof(ManagementMessages).GetMethod(nameof(ManagementMessages.FromNode))!;

    /// <summary>The types QmTunnelSession reads answers as.</summary>
    private static readonly MethodInfo[] Readers = new[]
    {
        typeof(ServerInfo), typeof(List<>).MakeGenericType(TunnelInfoWireType), TunnelInfoWireType, typeof(TunnelStats), typeof(List<ConnectionInfo>),
        typeof(List<Engine.Security.KnownServer>), typeof(List<UserInfo>), typeof(UserInfo), typeof(List<GroupInfo>), typeof(GroupInfo), typeof(ServerConfig),
    }.Select(t => FromNode.MakeGenericMethod(t)).ToArray();

    private static Type TunnelInfoWireType => typeof(ManagementMessages).Assembly.GetType("QmTunnel.Engine.Management.Remote.TunnelInfoWire", throwOnError: true)!;

    public override string Name => "management-answer";

    public override byte[] Generate(Random random) => JsonGenerator.Framed(JsonGenerator.Answer(random));

    public override IEnumerable<byte[]> Seeds() => ManagementSeeds.All();

    public override void Execute(byte[] input)
    {
        var node = ManagementRequestTarget.ReadMessage(this, input);
        if (node is null)
        {
            return;
        }
        JsonNode? result;
        try
        {
            result = ManagementMessages.ResultOf(node, "fuzz:9200");
        }
        catch (QmTunnelException)
        {
            Outcome("answer refused or an error");
            return;
        }
        Outcome("result read");
        foreach (var reader in Readers)
        {
            try
            {
                var value = reader.Invoke(null, [result, "the answer"]);
                if (value is not null && value.GetType() == TunnelInfoWireType)
                {
                    TunnelInfoWireType.GetMethod("ToInfo")!.Invoke(value, []);
                }
            }
            catch (TargetInvocationException ex) when (ex.InnerException is QmTunnelException)
            {
            }
            catch (TargetInvocationException ex)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(ex.InnerException!);
            }
        }
    }
}

/// <summary>Hand-made management inputs at the limits.</summary>
internal static class ManagementSeeds
{
    public static IEnumerable<byte[]> All()
    {
        yield return [];
        yield return [0, 0, 0];
        yield return [0, 0, 0, 0];
        yield return [0xff, 0xff, 0xff, 0xff];
        yield return [0x7f, 0xff, 0xff, 0xff];
        yield return [0x00, 0x10, 0x00, 0x01];
        yield return [0x00, 0x10, 0x00, 0x00];
        foreach (var json in new[] { "null", "[]", "{}", "1", "\"x\"", "{\"v\":1}", "{\"v\":1,\"op\":\"GetTunnel\"}", "{\"v\":1,\"op\":\"GetTunnel\",\"args\":[]}",
            "{\"v\":1,\"op\":\"GetTunnel\",\"args\":{\"name\":1}}", "{\"v\":1.5}", "{\"v\":1e400}", "{\"v\":\"1\"}", "{\"v\":1,\"v\":1}",
            "{\"v\":1,\"op\":\"WatchConnections\",\"args\":{\"interval\":\"99999999.00:00:00\"}}", "{\"v\":1,\"ok\":false,\"error\":[]}",
            "{\"v\":1,\"ok\":true,\"result\":{\"profile\":null}}", new string('[', 65) + new string(']', 65), "{\"v\":1} trailing" })
        {
            yield return JsonBytes(System.Text.Encoding.UTF8.GetBytes(json));
        }
        yield return JsonBytes([(byte)'"', 0xC0, 0x80, (byte)'"']);
        yield return JsonBytes([(byte)'{', (byte)'"', 0xED, 0xA0, 0x80, (byte)'"', (byte)':', (byte)'1', (byte)'}']);
    }

    private static byte[] JsonBytes(byte[] json)
    {
        var bytes = new byte[4 + json.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes, json.Length);
        json.CopyTo(bytes, 4);
        return bytes;
    }
}

/// <summary>Raised by the server stub: the request's arguments were read and a server method was called.</summary>
public sealed class ServerReachedException(string method) : Exception($"{method} was called");

/// <summary>An <see cref="IQmTunnelServer"/> that throws <see cref="ServerReachedException"/> from every method.</summary>
public class ServerStub : DispatchProxy
{
    public static IQmTunnelServer Create() => Create<IQmTunnelServer, ServerStub>();

    protected override object? Invoke(MethodInfo? targetMethod, object?[]? args) => throw new ServerReachedException(targetMethod?.Name ?? "?");
}
