using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Security;

/// <summary>
/// Password hashing at rest. A password is never stored: the server keeps a SCRAM-SHA-256 verifier (RFC 5802 /
/// RFC 7677 key derivation) encoded as
/// <code>scram-sha256$&lt;iterations&gt;$&lt;salt b64&gt;$&lt;StoredKey b64&gt;$&lt;ServerKey b64&gt;</code>
/// where SaltedPassword = PBKDF2-HMAC-SHA256(UTF-8(password), salt, iterations, 32 bytes),
/// ClientKey = HMAC-SHA256(SaltedPassword, "Client Key"), StoredKey = SHA-256(ClientKey),
/// ServerKey = HMAC-SHA256(SaltedPassword, "Server Key"); the salt is 16 random bytes, b64 is standard Base64 with
/// padding. The same verifier checks a clear password (<see cref="Verify"/>, e.g. a local login or a password change)
/// and a challenge-response login over a link (<see cref="PasswordChallenge"/>), where the password never travels.
/// SaltedPassword itself is not stored: with it, a stolen database would let anyone log in.
/// Passwords are taken as their exact UTF-8 bytes (no Unicode normalization, which differs between hosts).
/// It does not throttle guesses or enforce a password policy beyond "not empty": the caller does.
/// </summary>
public static class PasswordHasher
{
    public const string Scheme = "scram-sha256";
    /// <summary>OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.</summary>
    public const int DefaultIterations = 600_000;
    /// <summary>Upper bound accepted when parsing (and by clients in a challenge): guards against a hash that stalls the CPU.</summary>
    public const int MaxIterations = 10_000_000;
    public const int SaltSize = 16;
    public const int KeySize = 32;
    public const int MaxPasswordLength = 1024;
    public const int DefaultGeneratedLength = 20;

    /// <summary>64 URL-safe characters: each generated character carries 6 bits (20 characters = 120 bits).</summary>
    public const string GeneratedAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// <summary>A new verifier for <paramref name="password"/> with a fresh random salt.</summary>
    public static string Hash(string password, int iterations = DefaultIterations) =>
        PasswordVerifier.Create(password, iterations).Encode();

    /// <summary>
    /// Whether <paramref name="password"/> is the one <paramref name="encoded"/> was made from (constant-time compare).
    /// A malformed <paramref name="encoded"/> throws PasswordHashInvalid rather than answering false.
    /// </summary>
    public static bool Verify(string password, string encoded) => Parse(encoded).Matches(password);

    /// <summary>True when <paramref name="encoded"/> was made with fewer iterations than <paramref name="iterations"/>:
    /// hash the password again the next time it is seen in clear (a password change or a local login).</summary>
    public static bool NeedsRehash(string encoded, int iterations = DefaultIterations) => Parse(encoded).Iterations < iterations;

    /// <summary>A strong random password (default 20 characters, 120 bits) from <see cref="GeneratedAlphabet"/>.</summary>
    public static string GeneratePassword(int length = DefaultGeneratedLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(length, 12);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, MaxPasswordLength);
        return RandomNumberGenerator.GetString(GeneratedAlphabet, length);
    }

    /// <summary>Parses a stored verifier; a malformed one throws PasswordHashInvalid saying what is wrong.</summary>
    public static PasswordVerifier Parse(string encoded)
    {
        if (!TryParse(encoded, out var verifier, out var error))
        {
            throw new QmTunnelException(SecurityErrorIds.PasswordHashInvalid, QmErrorKind.InvalidData, null,
                $"The stored password hash is not valid: {error} It was changed or damaged; set the user's password again.");
        }
        return verifier;
    }

    public static bool TryParse(string? encoded, [NotNullWhen(true)] out PasswordVerifier? verifier, [NotNullWhen(false)] out string? error)
    {
        verifier = null;
        if (string.IsNullOrEmpty(encoded))
        {
            error = "it is empty.";
            return false;
        }
        var parts = encoded.Split('$');
        if (parts[0] != Scheme)
        {
            error = $"it does not start with '{Scheme}$' (scheme '{Truncate(parts[0])}').";
            return false;
        }
        if (parts.Length != 5)
        {
            error = $"it has {parts.Length} '$'-separated fields, not 5 ({Scheme}$iterations$salt$StoredKey$ServerKey).";
            return false;
        }
        if (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var iterations)
            || iterations.ToString(CultureInfo.InvariantCulture) != parts[1] || iterations < 1 || iterations > MaxIterations)
        {
            error = $"the iteration count '{Truncate(parts[1])}' is not a number from 1 to {MaxIterations}.";
            return false;
        }
        if (!TryDecode(parts[2], "salt", SaltSize, out var salt, out error)
            || !TryDecode(parts[3], "StoredKey", KeySize, out var storedKey, out error)
            || !TryDecode(parts[4], "ServerKey", KeySize, out var serverKey, out error))
        {
            return false;
        }
        verifier = new PasswordVerifier(iterations, salt, storedKey, serverKey);
        return true;
    }

    private static bool TryDecode(string text, string name, int size, [NotNullWhen(true)] out byte[]? bytes, [NotNullWhen(false)] out string? error)
    {
        bytes = new byte[size];
        // Canonical Base64 only: TryFromBase64String would skip whitespace and accept other lengths.
        if (text.Length != (size + 2) / 3 * 4 || !Convert.TryFromBase64String(text, bytes, out var written) || written != size
            || Convert.ToBase64String(bytes) != text)
        {
            bytes = null;
            error = $"the {name} is not {size} bytes of Base64.";
            return false;
        }
        error = null;
        return true;
    }

    private static string Truncate(string value) => value.Length <= 24 ? value : value[..24] + "…";

    internal static byte[] PasswordBytes(string password)
    {
        ArgumentNullException.ThrowIfNull(password);
        if (password.Length == 0)
        {
            throw new ArgumentException("The password is empty.", nameof(password));
        }
        if (password.Length > MaxPasswordLength)
        {
            throw new ArgumentException($"The password is longer than {MaxPasswordLength} characters.", nameof(password));
        }
        return Encoding.UTF8.GetBytes(password);
    }
}

/// <summary>
/// A parsed password verifier (iterations, salt, StoredKey, ServerKey; see <see cref="PasswordHasher"/>). It checks
/// a clear password and is what the server side of <see cref="PasswordChallenge"/> needs. It holds no password.
/// </summary>
public sealed class PasswordVerifier
{
    private readonly byte[] _salt;
    private readonly byte[] _storedKey;
    private readonly byte[] _serverKey;

    internal PasswordVerifier(int iterations, byte[] salt, byte[] storedKey, byte[] serverKey)
    {
        Iterations = iterations;
        _salt = salt;
        _storedKey = storedKey;
        _serverKey = serverKey;
    }

    public int Iterations { get; }
    public ReadOnlySpan<byte> Salt => _salt;
    public ReadOnlySpan<byte> StoredKey => _storedKey;
    public ReadOnlySpan<byte> ServerKey => _serverKey;

    /// <summary>A verifier for <paramref name="password"/> with a fresh random salt (or the given one, for tests and challenges).</summary>
    public static PasswordVerifier Create(string password, int iterations = PasswordHasher.DefaultIterations, byte[]? salt = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(iterations, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(iterations, PasswordHasher.MaxIterations);
        salt ??= RandomNumberGenerator.GetBytes(PasswordHasher.SaltSize);
        if (salt.Length != PasswordHasher.SaltSize)
        {
            throw new ArgumentException($"The salt must be {PasswordHasher.SaltSize} bytes.", nameof(salt));
        }
        var keys = ScramKeys.Derive(password, salt, iterations);
        return new PasswordVerifier(iterations, (byte[])salt.Clone(), SHA256.HashData(keys.ClientKey), keys.ServerKey.ToArray());
    }

    public string Encode() =>
        string.Join('$', PasswordHasher.Scheme, Iterations.ToString(CultureInfo.InvariantCulture),
            Convert.ToBase64String(_salt), Convert.ToBase64String(_storedKey), Convert.ToBase64String(_serverKey));

    /// <summary>Derives the keys from <paramref name="password"/> and compares StoredKey and ServerKey in constant time.</summary>
    public bool Matches(string password)
    {
        var keys = ScramKeys.Derive(password, _salt, Iterations);
        var stored = SHA256.HashData(keys.ClientKey);
        // Both must match: a verifier whose ServerKey was tampered with would let a fake server pass.
        return CryptographicOperations.FixedTimeEquals(stored, _storedKey) & CryptographicOperations.FixedTimeEquals(keys.ServerKey, _serverKey);
    }

    public override string ToString() => $"{PasswordHasher.Scheme} ({Iterations} iterations)";
}

/// <summary>
/// ClientKey and ServerKey derived from a password, salt and iteration count (the slow part of a login). A client
/// may keep them in memory per server and user to skip PBKDF2 on the next link to the same server; they are as
/// secret as the password for that server.
/// </summary>
public sealed class ScramKeys
{
    private static readonly byte[] ClientKeyLabel = "Client Key"u8.ToArray();
    private static readonly byte[] ServerKeyLabel = "Server Key"u8.ToArray();
    private readonly byte[] _clientKey;
    private readonly byte[] _serverKey;

    private ScramKeys(byte[] clientKey, byte[] serverKey, int iterations, byte[] salt)
    {
        _clientKey = clientKey;
        _serverKey = serverKey;
        Iterations = iterations;
        Salt = salt;
    }

    public ReadOnlySpan<byte> ClientKey => _clientKey;
    public ReadOnlySpan<byte> ServerKey => _serverKey;
    /// <summary>The iteration count and salt they were derived with (a cache key beside server and user).</summary>
    public int Iterations { get; }
    public ReadOnlyMemory<byte> Salt { get; }

    /// <summary>Keys derived earlier (kept in a tunnel profile or received in a route credential).</summary>
    public static ScramKeys FromKeys(ReadOnlySpan<byte> clientKey, ReadOnlySpan<byte> serverKey, int iterations, ReadOnlySpan<byte> salt)
    {
        if (clientKey.Length != PasswordHasher.KeySize || serverKey.Length != PasswordHasher.KeySize)
        {
            throw new ArgumentException($"SCRAM keys are {PasswordHasher.KeySize} bytes each.");
        }
        return new ScramKeys(clientKey.ToArray(), serverKey.ToArray(), iterations, salt.ToArray());
    }

    public static ScramKeys Derive(string password, ReadOnlySpan<byte> salt, int iterations)
    {
        var passwordBytes = PasswordHasher.PasswordBytes(password);
        var salted = Rfc2898DeriveBytes.Pbkdf2(passwordBytes, salt, iterations, HashAlgorithmName.SHA256, PasswordHasher.KeySize);
        try
        {
            return new ScramKeys(HMACSHA256.HashData(salted, ClientKeyLabel), HMACSHA256.HashData(salted, ServerKeyLabel), iterations, salt.ToArray());
        }
        finally
        {
            CryptographicOperations.ZeroMemory(salted);
            CryptographicOperations.ZeroMemory(passwordBytes);
        }
    }
}
