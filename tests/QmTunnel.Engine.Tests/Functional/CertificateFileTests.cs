using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>A server with the administrator's own certificate (PFX or PEM) instead of the generated one.</summary>
public sealed class CertificateFileTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "qmt-certs-" + Guid.NewGuid().ToString("n"));
    private X509Certificate2 _certificate = null!;

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        using var key = RSA.Create(3072);
        var request = new CertificateRequest("CN=hostB.test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        _certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        File.WriteAllText(Path.Combine(_dir, "cert.pem"), _certificate.ExportCertificatePem());
        File.WriteAllText(Path.Combine(_dir, "key.pem"), _certificate.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(_dir, "both.pem"), _certificate.ExportCertificatePem() + "\n" + _certificate.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem());
        File.WriteAllBytes(Path.Combine(_dir, "server.p12"), _certificate.Export(X509ContentType.Pkcs12, "s3cret"));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        Directory.Delete(_dir, true);
    }

    private Task<QmTunnelEngine> StartWithAsync(string? certificate, string? key = null, string? password = null) =>
        _engines.StartAsync(new ServerOptions
        {
            AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations,
            Port = 0,
            DataPath = Path.Combine(_dir, "data-" + Guid.NewGuid().ToString("n")),
            CertificatePath = certificate is null ? null : Path.Combine(_dir, certificate),
            CertificateKeyPath = key is null ? null : Path.Combine(_dir, key),
            CertificatePassword = password,
        });

    [Theory]
    [InlineData("cert.pem", "key.pem", null)]
    [InlineData("both.pem", null, null)]
    [InlineData("server.p12", null, "s3cret")]
    public async Task The_given_certificate_is_served_and_pinned(string certificate, string? key, string? password)
    {
        var b = await StartWithAsync(certificate, key, password);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(_certificate.RawData)), b.CertificateThumbprint);
        Assert.False(File.Exists(Path.Combine(b.Options.DataPath, ServerCertificate.FileName)));

        await using var echo = new EchoServer();
        var a = await _engines.StartAsync();
        a.NewTestTunnel(new TunnelProfile { Name = "own", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(b)], Target = echo.Uri });
        var listen = (await a.StartTunnelAsync("own")).BoundListen!;
        using var client = await SocketTestExtensions.ConnectAsync(listen);
        await client.SendAllAsync(new byte[] { 1, 2, 3 });
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(new byte[] { 1, 2, 3 }, await client.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(b.CertificateThumbprint, Assert.Single(a.GetKnownServers()).Thumbprint);
    }

    [Theory]
    [InlineData("missing.pem", null, null, "does not exist")]
    [InlineData("cert.pem", null, null, "cannot be used")]          // no key
    [InlineData("server.p12", null, "wrong", "cannot be used")]    // wrong password
    [InlineData("cert.pem", "missing-key.pem", null, "does not exist")]
    public async Task A_certificate_that_cannot_be_used_stops_the_start_with_CertificateInvalid(string certificate, string? key, string? password, string hint)
    {
        var ex = await Assert.ThrowsAsync<QmTunnelException>(() => StartWithAsync(certificate, key, password));
        Assert.Equal(ErrorIds.CertificateInvalid, ex.ErrorId);
        Assert.Contains(hint, ex.Message);
    }
}
