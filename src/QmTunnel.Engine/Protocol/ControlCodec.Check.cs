using System.Text;

namespace QmTunnel.Engine.Protocol;

// The writer's check (ControlCodec.cs): what the reader would refuse, or could not read back equal, is refused before a byte.
public static partial class ControlCodec
{
    /// <summary>Refuses a message the reader would refuse, before a byte is written (all or nothing).</summary>
    private static void Check(ControlMessage message)
    {
        static void Bin(byte[] b, string field)
        {
            if (b.Length > MaxBytes)
            {
                throw new ArgumentException($"{field} is longer than {MaxBytes} bytes", nameof(message));
            }
        }
        static void Str(string s, string field)
        {
            int count;
            try
            {
                count = Utf8Strict.GetByteCount(s);
            }
            catch (EncoderFallbackException)
            {
                // A lone surrogate has no UTF-8 form: written as U+FFFD it would be read back as another string.
                throw new ArgumentException($"{field} is not valid UTF-16 (a lone surrogate)", nameof(message));
            }
            if (count > MaxStringBytes)
            {
                throw new ArgumentException($"{field} is longer than {MaxStringBytes} UTF-8 bytes", nameof(message));
            }
        }
        static void Defined<T>(T value, string field) where T : struct, Enum
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentException($"{field} {value} is not a value the reader accepts", nameof(message));
            }
        }
        switch (message)
        {
            case HelloMessage h:
                Str(h.ServerId, "ServerId"); Str(h.ServerName, "ServerName");
                break;
            case GoAwayMessage g:
                Str(g.Reason, "Reason");
                break;
            case ResetMessage r:
                Str(r.Reason, "Reason");
                break;
            case OpenMessage o:
                Defined(o.Protocol, "Protocol");
                Str(o.Tunnel, "Tunnel"); Str(o.Target, "Target"); Str(o.Client, "Client");
                if (o.Route.Count > MaxListItems)
                {
                    throw new ArgumentException($"a route has at most {MaxListItems} servers", nameof(message));
                }
                foreach (var hop in o.Route)
                {
                    Str(hop, "Route");
                }
                if (o.ConnectTimeoutMs <= 0)
                {
                    throw new ArgumentException("ConnectTimeoutMs must be positive", nameof(message));
                }
                Str(o.Listen, "Listen");
                if (o.Servers.Count > MaxListItems)
                {
                    throw new ArgumentException($"a chain has at most {MaxListItems} servers", nameof(message));
                }
                foreach (var server in o.Servers)
                {
                    Str(server, "Servers");
                }
                if (o.RouteCredentials.Count != 0 && o.RouteCredentials.Count != o.Route.Count)
                {
                    throw new ArgumentException("RouteCredentials must be empty or have one entry per Route entry", nameof(message));
                }
                foreach (var credential in o.RouteCredentials)
                {
                    if (credential is not null)
                    {
                        Str(credential.User, "RouteCredentials.User");
                        Bin(credential.Salt, "Salt"); Bin(credential.ClientKey, "ClientKey"); Bin(credential.ServerKey, "ServerKey");
                    }
                }
                if (QueryDepthProblem(o.Protocol, o.QueryDepth, o.Route.Count) is { } depthProblem)
                {
                    throw new ArgumentException(depthProblem, nameof(message));
                }
                if (ReverseProblem(o.Protocol, o.Options, o.Route.Count, o.BindStreamId, o.MaxConnections) is { } reverseProblem)
                {
                    throw new ArgumentException(reverseProblem, nameof(message));
                }
                break;
            case AuthStartMessage a:
                Defined(a.Method, "Method");
                Str(a.User, "User"); Bin(a.ClientNonce, "ClientNonce");
                break;
            case AuthChallengeMessage c:
                Bin(c.ServerNonce, "ServerNonce"); Bin(c.Salt, "Salt");
                break;
            case AuthProofMessage p:
                Bin(p.ClientProof, "ClientProof");
                break;
            case AuthOkMessage ok:
                Str(ok.User, "User"); Str(ok.Group, "Group"); Bin(ok.ServerSignature, "ServerSignature");
                Bin(ok.SessionId, "SessionId"); Bin(ok.SessionSecret, "SessionSecret"); Bin(ok.ResumeNonce, "ResumeNonce");
                break;
            case ResumeMessage rs:
                Bin(rs.SessionId, "SessionId"); Bin(rs.Proof, "Proof");
                break;
        }
    }
}
