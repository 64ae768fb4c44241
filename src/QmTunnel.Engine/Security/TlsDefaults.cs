using System.Net.Security;
using System.Security.Authentication;

namespace QmTunnel.Engine.Security;

/// <summary>
/// TLS settings of links: TLS 1.3 preferred, 1.2 at least; AEAD suites only, AES-128-GCM first (the fastest with
/// AES-NI, as strong as the link needs), then ChaCha20-Poly1305 (fast without AES-NI), then AES-256-GCM. Where the
/// platform cannot take a cipher policy (Windows' SChannel), its own defaults apply. Per-hop choices come later.
/// </summary>
public static class TlsDefaults
{
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
