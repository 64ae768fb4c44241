using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Security;

/// <summary>What the server sends in answer to a login request: its nonce, and the user's salt and iteration count.</summary>
public sealed record PasswordChallengeParameters(byte[] ServerNonce, byte[] Salt, int Iterations);

/// <summary>The client's proof, and the server signature the client must then receive.</summary>
public sealed record PasswordProof(byte[] ClientProof, byte[] ExpectedServerSignature);

/// <summary>
/// Password login over a link without the password crossing it: a SCRAM-SHA-256-like exchange (RFC 5802 key
/// derivation, our own unambiguous binary AuthMessage, mandatory channel binding slot). Pure functions; the link
/// handshake carries the values in its messages:
/// <code>
///  client                                          server
///  AuthStart    { user, clientNonce (24 B) }  ──►  looks up the user's verifier (none: a fake one, same flow)
///               ◄──  AuthChallenge { serverNonce (24 B), salt, iterations }
///  derives SaltedPassword = PBKDF2(password, salt, iterations), ClientKey, StoredKey, ServerKey
///  AuthProof    { clientProof (32 B) }         ──►  checks SHA-256(clientProof XOR HMAC(StoredKey, AuthMessage)) == StoredKey
///               ◄──  AuthOk { serverSignature = HMAC(ServerKey, AuthMessage) }   or  AuthFailed (no reason given)
///  checks serverSignature (the server knows the verifier: it is the right server for this user)
/// </code>
/// AuthMessage = for each of ["qmtunnel-scram-sha256-v1", UTF-8(user as sent), clientNonce, serverNonce, salt,
/// uint32 BE iterations, channelBinding]: uint32 BE length, then the bytes. Both nonces make a proof single-use;
/// the channel binding (<see cref="TlsServerEndPoint"/> of the server certificate over TLS, empty on a plain link)
/// makes a proof useless on another TLS connection, so a man in the middle with another certificate cannot relay it.
/// An unknown, disabled or password-less user gets a challenge with a salt derived from a server secret and the name
/// (stable, indistinguishable from a real one) and fails at the proof, so the exchange does not reveal which users exist.
/// It does not throttle, log, or decide whether a user may log in at all: the caller does.
/// </summary>
public static class PasswordChallenge
{
    public const string Label = "qmtunnel-scram-sha256-v1";
    public const int NonceSize = 24;
    public const int MinNonceSize = 16;
    public const int MaxNonceSize = 64;
    public const int ProofSize = 32;
    /// <summary>Fewest iterations a client accepts by default: a server asking for fewer would make the proof cheap to crack.</summary>
    public const int MinClientIterations = 100_000;

    private static readonly byte[] LabelBytes = Encoding.ASCII.GetBytes(Label);
    private static readonly byte[] FakeSaltLabel = "qmtunnel fake salt"u8.ToArray();

    public static byte[] NewNonce() => RandomNumberGenerator.GetBytes(NonceSize);

    /// <summary>
    /// Channel binding bytes of a TLS link in the spirit of RFC 5929 tls-server-end-point: SHA-256 of the server
    /// certificate (DER). Both sides compute it from the certificate the TLS handshake used (the client from the
    /// peer certificate, the server from its own). Empty on a plain link.
    /// </summary>
    public static byte[] TlsServerEndPoint(X509Certificate certificate) => SHA256.HashData(certificate.GetRawCertData());

    // ---- server side ----

    /// <summary>
    /// The challenge for <paramref name="userName"/>: the verifier's salt and iterations with a new server nonce; with
    /// no verifier (unknown user, disabled, certificate-only), a fake salt from <paramref name="serverSecret"/> and the
    /// name, and <paramref name="fakeIterations"/> (give the server's current count for new passwords, so a fake challenge
    /// looks like a real one). Keep the returned value to check the proof with.
    /// </summary>
    public static PasswordChallengeParameters CreateChallenge(PasswordVerifier? verifier, string userName, ReadOnlySpan<byte> serverSecret,
        int fakeIterations = PasswordHasher.DefaultIterations)
    {
        if (verifier is not null)
        {
            return new PasswordChallengeParameters(NewNonce(), verifier.Salt.ToArray(), verifier.Iterations);
        }
        if (serverSecret.Length < 16)
        {
            throw new ArgumentException("The server secret must be at least 16 bytes.", nameof(serverSecret));
        }
        // HMAC(secret, label || 0 || UTF-8(upper-case name)): the same fake salt for the same name, every time.
        byte[] input = [.. FakeSaltLabel, 0, .. Encoding.UTF8.GetBytes(SecurityNames.Key(userName))];
        var salt = HMACSHA256.HashData(serverSecret, input)[..PasswordHasher.SaltSize];
        return new PasswordChallengeParameters(NewNonce(), salt, fakeIterations);
    }

    /// <summary>
    /// Checks a client's proof. True, with the server signature to send back, only when the proof was made with the
    /// user's password for exactly this user name, these nonces, this challenge and this channel binding. False for
    /// a null verifier (after the same work, so timing does not tell) and for malformed sizes.
    /// </summary>
    public static bool VerifyClientProof(PasswordVerifier? verifier, string userName, ReadOnlySpan<byte> clientNonce,
        PasswordChallengeParameters challenge, ReadOnlySpan<byte> channelBinding, ReadOnlySpan<byte> clientProof,
        [NotNullWhen(true)] out byte[]? serverSignature)
    {
        serverSignature = null;
        if (clientProof.Length != ProofSize || !IsValidNonce(clientNonce) || !IsValidNonce(challenge.ServerNonce))
        {
            return false;
        }
        var storedKey = verifier is null ? RandomNumberGenerator.GetBytes(PasswordHasher.KeySize) : verifier.StoredKey.ToArray();
        var authMessage = AuthMessage(userName, clientNonce, challenge.ServerNonce, challenge.Salt, challenge.Iterations, channelBinding);
        Span<byte> clientKey = stackalloc byte[PasswordHasher.KeySize];
        HMACSHA256.HashData(storedKey, authMessage, clientKey);
        for (var i = 0; i < clientKey.Length; i++)
        {
            clientKey[i] ^= clientProof[i];
        }
        Span<byte> candidate = stackalloc byte[PasswordHasher.KeySize];
        SHA256.HashData(clientKey, candidate);
        CryptographicOperations.ZeroMemory(clientKey);
        var matches = CryptographicOperations.FixedTimeEquals(candidate, storedKey);
        if (!matches || verifier is null || challenge.Iterations != verifier.Iterations || !challenge.Salt.AsSpan().SequenceEqual(verifier.Salt))
        {
            return false;
        }
        serverSignature = HMACSHA256.HashData(verifier.ServerKey, authMessage);
        return true;
    }

    // ---- client side ----

    /// <summary>
    /// Derives the keys (PBKDF2, the slow step) and makes the proof. Refuses a challenge outside what a client
    /// should accept (iterations below <paramref name="minIterations"/> or above <see cref="PasswordHasher.MaxIterations"/>,
    /// short salt or nonce) with AuthenticationChallengeInvalid, before doing any work.
    /// </summary>
    public static PasswordProof CreateProof(string password, string userName, ReadOnlySpan<byte> clientNonce,
        PasswordChallengeParameters challenge, ReadOnlySpan<byte> channelBinding, int minIterations = MinClientIterations)
    {
        CheckChallenge(challenge, minIterations);
        return CreateProof(ScramKeys.Derive(password, challenge.Salt, challenge.Iterations), userName, clientNonce, challenge, channelBinding, minIterations);
    }

    /// <summary>Makes the proof from keys derived earlier for the same salt and iterations (a client's cache).</summary>
    public static PasswordProof CreateProof(ScramKeys keys, string userName, ReadOnlySpan<byte> clientNonce,
        PasswordChallengeParameters challenge, ReadOnlySpan<byte> channelBinding, int minIterations = MinClientIterations)
    {
        CheckChallenge(challenge, minIterations);
        if (keys.Iterations != challenge.Iterations || !keys.Salt.Span.SequenceEqual(challenge.Salt))
        {
            throw new ArgumentException("The keys were derived with another salt or iteration count than the challenge's: derive them again.", nameof(keys));
        }
        if (!IsValidNonce(clientNonce))
        {
            throw new ArgumentException($"The client nonce must be {MinNonceSize} to {MaxNonceSize} bytes.", nameof(clientNonce));
        }
        var authMessage = AuthMessage(userName, clientNonce, challenge.ServerNonce, challenge.Salt, challenge.Iterations, channelBinding);
        var storedKey = SHA256.HashData(keys.ClientKey);
        var proof = HMACSHA256.HashData(storedKey, authMessage);
        for (var i = 0; i < proof.Length; i++)
        {
            proof[i] ^= keys.ClientKey[i];
        }
        return new PasswordProof(proof, HMACSHA256.HashData(keys.ServerKey, authMessage));
    }

    /// <summary>
    /// Checks the server's signature at the end of a login (constant time). A wrong one throws ServerSignatureInvalid
    /// naming <paramref name="server"/>: the peer does not hold this user's verifier, so it is not the expected server.
    /// </summary>
    public static void CheckServerSignature(PasswordProof proof, ReadOnlySpan<byte> serverSignature, string server)
    {
        if (!CryptographicOperations.FixedTimeEquals(proof.ExpectedServerSignature, serverSignature))
        {
            throw new QmTunnelException(SecurityErrorIds.ServerSignatureInvalid, QmErrorKind.SecurityError, server,
                $"The server {server} accepted the login but could not prove it knows the user's password verifier. It may be an impostor; " +
                "check its certificate thumbprint with its administrator, and change the password if it may have been exposed.");
        }
    }

    private static void CheckChallenge(PasswordChallengeParameters challenge, int minIterations)
    {
        string? problem = null;
        if (challenge.Iterations < minIterations || challenge.Iterations > PasswordHasher.MaxIterations)
        {
            problem = $"it asks for {challenge.Iterations} PBKDF2 iterations, outside {minIterations} to {PasswordHasher.MaxIterations}";
        }
        else if (challenge.Salt is null || challenge.Salt.Length < PasswordHasher.SaltSize || challenge.Salt.Length > 64)
        {
            problem = $"its salt has {challenge.Salt?.Length ?? 0} bytes, not {PasswordHasher.SaltSize} to 64";
        }
        else if (!IsValidNonce(challenge.ServerNonce))
        {
            problem = $"its nonce has {challenge.ServerNonce?.Length ?? 0} bytes, not {MinNonceSize} to {MaxNonceSize}";
        }
        if (problem is not null)
        {
            throw new QmTunnelException(SecurityErrorIds.AuthenticationChallengeInvalid, QmErrorKind.SecurityError, null,
                $"The server's password challenge was refused: {problem}. The password was not used. Check that the server runs qmTunnel and is the expected one.");
        }
    }

    public static bool IsValidNonce(ReadOnlySpan<byte> nonce) => nonce.Length is >= MinNonceSize and <= MaxNonceSize;

    /// <summary>The bytes both proofs sign; every field length-prefixed so no two inputs encode the same.</summary>
    public static byte[] AuthMessage(string userName, ReadOnlySpan<byte> clientNonce, ReadOnlySpan<byte> serverNonce,
        ReadOnlySpan<byte> salt, int iterations, ReadOnlySpan<byte> channelBinding)
    {
        var user = Encoding.UTF8.GetBytes(userName);
        var message = new byte[(7 * 4) + LabelBytes.Length + user.Length + clientNonce.Length + serverNonce.Length + salt.Length + 4 + channelBinding.Length];
        var span = message.AsSpan();
        Put(ref span, LabelBytes);
        Put(ref span, user);
        Put(ref span, clientNonce);
        Put(ref span, serverNonce);
        Put(ref span, salt);
        Span<byte> iter = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(iter, iterations);
        Put(ref span, iter);
        Put(ref span, channelBinding);
        return message;

        static void Put(ref Span<byte> span, scoped ReadOnlySpan<byte> field)
        {
            BinaryPrimitives.WriteInt32BigEndian(span, field.Length);
            field.CopyTo(span[4..]);
            span = span[(4 + field.Length)..];
        }
    }
}
