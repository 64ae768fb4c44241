using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Security;

/// <summary>
/// The server's TLS certificate: generated on first start (ECDSA P-256, self-signed, 10 years) and kept as
/// <c>server.pfx</c> in the data path, readable by its owner only. It does not validate peers (see
/// <see cref="PeerCertificatePolicy"/>) and does not rotate itself: delete the file to get a new one.
/// </summary>
public static class ServerCertificate
{
    public const string FileName = "server.pfx";

    /// <summary>SHA-256 of the DER certificate, upper-case hex: what <c>openssl x509 -fingerprint -sha256</c> prints, without colons.</summary>
    public static string Thumbprint(X509Certificate2 certificate) =>
        Convert.ToHexString(certificate.GetCertHash(HashAlgorithmName.SHA256));

    public static X509Certificate2 LoadOrCreate(string dataPath, string serverName)
    {
        var path = Path.Combine(dataPath, FileName);
        if (File.Exists(path))
        {
            try
            {
                var loaded = X509CertificateLoader.LoadPkcs12FromFile(path, password: null, X509KeyStorageFlags.Exportable);
                if (!loaded.HasPrivateKey)
                {
                    throw new CryptographicException("the file holds no private key");
                }
                return loaded;
            }
            catch (CryptographicException ex)
            {
                throw new QmTunnelException(ErrorIds.CertificateInvalid, QmErrorKind.InvalidData, path,
                    $"The server certificate '{path}' cannot be read ({ex.Message}). Restore it from a backup, or delete it to generate a new one (peers that pinned the old one will refuse the new one until they accept it).", ex);
            }
        }
        var certificate = Create(serverName);
        var bytes = certificate.Export(X509ContentType.Pkcs12);
        using (var file = Storage.OwnerOnly.Open(path, FileMode.CreateNew, FileAccess.Write))
        {
            file.Write(bytes);
        }
        return X509CertificateLoader.LoadPkcs12(bytes, password: null, X509KeyStorageFlags.Exportable);
    }

    /// <summary>
    /// Loads a certificate the administrator gives: PKCS#12 (.pfx/.p12, optional password) or PEM (certificate and
    /// key in one file, or the key in <paramref name="keyPath"/>; an encrypted key takes <paramref name="password"/>).
    /// It must hold a private key. Errors name the file and say what to fix (CertificateInvalid).
    /// </summary>
    public static X509Certificate2 LoadFromFiles(string path, string? keyPath, string? password)
    {
        foreach (var file in keyPath is null ? [path] : new[] { path, keyPath })
        {
            if (!File.Exists(file))
            {
                throw new QmTunnelException(ErrorIds.CertificateInvalid, QmErrorKind.ObjectNotFound, file,
                    $"The certificate file '{file}' does not exist. Give the path of a .pfx file, or of a PEM certificate and its key.");
            }
        }
        try
        {
            X509Certificate2 loaded;
            var isPem = keyPath is not null || File.ReadAllText(path).Contains("-----BEGIN", StringComparison.Ordinal);
            if (isPem)
            {
                using var pem = password is null
                    ? X509Certificate2.CreateFromPemFile(path, keyPath)
                    : X509Certificate2.CreateFromEncryptedPemFile(path, password, keyPath);
                // Re-imported as PKCS#12: a persisted key works with every TLS stack (SChannel refuses ephemeral keys).
                loaded = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), password: null, X509KeyStorageFlags.Exportable);
            }
            else
            {
                loaded = X509CertificateLoader.LoadPkcs12FromFile(path, password, X509KeyStorageFlags.Exportable);
            }
            if (!loaded.HasPrivateKey)
            {
                loaded.Dispose();
                throw new CryptographicException("it holds no private key");
            }
            return loaded;
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            throw new QmTunnelException(ErrorIds.CertificateInvalid, QmErrorKind.InvalidData, path,
                $"The certificate '{path}' cannot be used ({ex.Message}). Give a .pfx with its password, or a PEM certificate with its private key (-CertificateKeyPath when the key is in another file).", ex);
        }
    }

    private static X509Certificate2 Create(string serverName)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var name = string.IsNullOrWhiteSpace(serverName) ? "qmtunnel" : serverName;
        var request = new CertificateRequest(new X500DistinguishedName($"CN={EscapeCn(name)}, O=qmTunnel"), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        if (Uri.CheckHostName(name) == UriHostNameType.Dns)
        {
            san.AddDnsName(name);
        }
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var now = DateTimeOffset.UtcNow;
        return request.CreateSelfSigned(now.AddDays(-1), now.AddYears(10));
    }

    private static string EscapeCn(string value) => value.Replace("\"", "", StringComparison.Ordinal).Replace(",", " ", StringComparison.Ordinal);
}
