using System.Net.Security;
using System.Security.Authentication;

namespace QmTunnel.Engine.Security;

/// <summary>
/// TLS settings of links: TLS 1.3 preferred, 1.2 at least; AEAD suites only, AES-128-GCM first (the fastest with
/// AES-NI, as strong as the link needs), then ChaCha20-Poly1305 (fast without AES-NI), then AES-256-GCM. Where the
/// platform cannot take a cipher policy (Windows' SChannel), its own defaults apply. A hop may narrow the ciphers it
/// offers (the accepting server still picks among them by this order) (<see cref="For"/>); the accepting side always takes all three.
/// </summary>
public static class TlsDefaults
{
    /// <summary>Every cipher, in the default order of preference.</summary>
    public static readonly IReadOnlyList<Endpoints.TlsCipher> AllCiphers = [Endpoints.TlsCipher.Aes128Gcm, Endpoints.TlsCipher.ChaCha20Poly1305, Endpoints.TlsCipher.Aes256Gcm];

    /// <summary>
    /// The policy offering only <paramref name="ciphers"/>, in that order (each as its TLS 1.3 suite and its ECDHE
    /// TLS 1.2 suites); null ciphers: the default policy. Null where the platform takes no policy.
    /// </summary>
    public static CipherSuitesPolicy? For(IReadOnlyList<Endpoints.TlsCipher>? ciphers)
    {
        if (ciphers is null || OperatingSystem.IsWindows())
        {
            return CipherSuites;
        }
        try
        {
            return new CipherSuitesPolicy(ciphers.SelectMany(Suites).ToList());
        }
        catch (PlatformNotSupportedException)
        {
            return null;
        }
    }

    private static TlsCipherSuite[] Suites(Endpoints.TlsCipher cipher) => cipher switch
    {
        Endpoints.TlsCipher.Aes128Gcm => [TlsCipherSuite.TLS_AES_128_GCM_SHA256, TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],
        Endpoints.TlsCipher.ChaCha20Poly1305 => [TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256, TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TlsCipherSuite.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256],
        Endpoints.TlsCipher.Aes256Gcm => [TlsCipherSuite.TLS_AES_256_GCM_SHA384, TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384],
        _ => throw new ArgumentOutOfRangeException(nameof(cipher)),
    };

    public const SslProtocols Protocols = SslProtocols.Tls13 | SslProtocols.Tls12;

    public static CipherSuitesPolicy? CipherSuites { get; } = Create();

    private static CipherSuitesPolicy? Create()
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }
        try
        {
            return new CipherSuitesPolicy(
            [
                TlsCipherSuite.TLS_AES_128_GCM_SHA256,
                TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256,
                TlsCipherSuite.TLS_AES_256_GCM_SHA384,
                TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                TlsCipherSuite.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                TlsCipherSuite.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ]);
        }
        catch (PlatformNotSupportedException)
        {
            return null;
        }
    }
}
