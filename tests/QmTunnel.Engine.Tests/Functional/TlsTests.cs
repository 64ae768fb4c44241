using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Functional;

/// <summary>TLS links on loopback between real engines: the default, pinning, refusal of plain links.</summary>
public sealed class TlsTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private readonly string _bPath = Path.Combine(Path.GetTempPath(), "qmt-tls-b-" + Guid.NewGuid().ToString("n"));
    private QmTunnelEngine _a = null!;

    public async Task InitializeAsync() => _a = await _engines.StartAsync(allowPlainLinks: false);

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private async Task<string> TunnelAsync(string name, string via)
    {
        _a.NewTestTunnel(new TunnelProfile { Name = name, Listen = "tcp://127.0.0.1:0", Via = [via], Target = _echo.Uri, ConnectTimeout = TimeSpan.FromSeconds(5) });
        return (await _a.StartTunnelAsync(name)).BoundListen!;
    }

    [Fact]
    public async Task A_tls_link_carries_data_intact_and_pins_the_server_on_first_use()
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: false);
        var listen = await TunnelAsync("tls", EngineFixture.TlsHop(b));
        var payload = RandomNumberGenerator.GetBytes(4 * 1024 * 1024 + 7);
        Assert.Equal(payload, await SocketTestExtensions.EchoAsync(listen, payload));

        var pin = Assert.Single(_a.GetKnownServers());
        Assert.Equal($"127.0.0.1:{b.Port}", pin.Server);
        Assert.Equal(b.CertificateThumbprint, pin.Thumbprint);
        Assert.Equal(0, b.GetServerInfo().PlainLinksRefused);
    }

    [Fact]
    public async Task The_reported_thumbprint_is_the_sha256_of_the_certificate_file_which_only_its_owner_can_read()
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: false);
        var file = Path.Combine(_bPath, ServerCertificate.FileName);
        using var cert = X509CertificateLoader.LoadPkcs12FromFile(file, null);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(cert.RawData)), b.GetServerInfo().CertificateThumbprint);
        Assert.Equal(64, b.CertificateThumbprint!.Length);
        Assert.True(cert.HasPrivateKey);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }
        // The same certificate after a restart.
        var thumbprint = b.CertificateThumbprint;
        await b.StopAsync();
        var again = await _engines.StartAsync(_bPath);
        Assert.Equal(thumbprint, again.CertificateThumbprint);
    }

    [Fact]
    public async Task A_plain_link_is_refused_by_default_with_a_reason_that_says_what_to_do()
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: false);
        Assert.False(b.AllowPlainLinks);
        // Refused when the tunnel is created (the login needs the hop), and nothing is saved.
        var refused = await Assert.ThrowsAsync<QmTunnelException>(() => TunnelAsync("plain", EngineFixture.Hop(b)));
        Assert.Equal(ErrorIds.PlainLinkRefused, refused.ErrorId);
        Assert.Equal(QmErrorKind.SecurityError, refused.Kind);
        Assert.Contains("refused an unencrypted link", refused.Message);
        Assert.Contains("-AllowPlainLinks", refused.Message);
        Assert.Equal(1, b.GetServerInfo().PlainLinksRefused);
        Assert.DoesNotContain(_a.GetTunnels(), t => t.Name == "plain");
    }

    [Fact]
    public async Task AllowPlainLinks_is_a_saved_setting()
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: true);
        await b.StopAsync();
        var kept = new QmTunnelEngine(new ServerOptions { AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations, Port = 0, DataPath = _bPath });
        await kept.StartAsync();
        try
        {
            Assert.True(kept.AllowPlainLinks);
        }
        finally
        {
            await kept.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_changed_server_certificate_is_refused_until_the_pin_is_removed()
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: false);
        var port = b.Port;
        var oldThumbprint = b.CertificateThumbprint!;
        var listen = await TunnelAsync("pinned", EngineFixture.TlsHop(b));
        Assert.Equal(new byte[] { 9 }, await SocketTestExtensions.EchoAsync(listen, [9]));

        // B gets a new certificate on the same address (someone in the middle would look the same).
        await b.StopAsync();
        File.Delete(Path.Combine(_bPath, ServerCertificate.FileName));
        var b2 = new QmTunnelEngine(new ServerOptions { AdminPassword = EngineFixture.AdminPassword, PasswordIterations = EngineFixture.TestIterations, Port = port, DataPath = _bPath });
        await b2.StartAsync();
        try
        {
            Assert.NotEqual(oldThumbprint, b2.CertificateThumbprint);
            await Assert.ThrowsAnyAsync<SocketException>(() => SocketTestExtensions.EchoAsync(listen, [1]));
            await TunnelTests.WaitUntil(() => _a.GetTunnelStats("pinned").LastError?.Contains("not the expected one", StringComparison.Ordinal) == true);
            var error = _a.GetTunnelStats("pinned").LastError!;
            Assert.Contains(oldThumbprint, error);
            Assert.Contains(b2.CertificateThumbprint!, error);
            Assert.Contains("Remove-QmTunnelKnownServer", error);

            // The administrator accepts the change: forget the pin, and the next link pins the new certificate.
            _a.RemoveKnownServer($"127.0.0.1:{port}");
            Assert.Equal(new byte[] { 5, 6 }, await SocketTestExtensions.EchoAsync(listen, [5, 6]));
            Assert.Equal(b2.CertificateThumbprint, Assert.Single(_a.GetKnownServers()).Thumbprint);
            var missing = Assert.Throws<QmTunnelException>(() => _a.RemoveKnownServer("nowhere:1"));
            Assert.Equal(ErrorIds.KnownServerNotFound, missing.ErrorId);
        }
        finally
        {
            await b2.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_chain_of_tls_hops_carries_data()
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: false);
        var c = await _engines.StartAsync(allowPlainLinks: false);
        _a.NewTestTunnel(new TunnelProfile { Name = "chain", Listen = "tcp://127.0.0.1:0", Via = [EngineFixture.TlsHop(b), EngineFixture.TlsHop(c)], Target = _echo.Uri });
        var listen = (await _a.StartTunnelAsync("chain")).BoundListen!;
        var payload = RandomNumberGenerator.GetBytes(1024 * 1024);
        Assert.Equal(payload, await SocketTestExtensions.EchoAsync(listen, payload));
        // b pinned c as it dialed it
        Assert.Equal(c.CertificateThumbprint, Assert.Single(b.GetKnownServers()).Thumbprint);
    }

    [Fact]
    public async Task A_thumbprint_in_the_hop_address_is_checked_instead_of_trust_on_first_use()
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: false);
        var good = await TunnelAsync("goodpin", $"qmt://127.0.0.1:{b.Port}?sha256={b.CertificateThumbprint!.ToLowerInvariant()}");
        Assert.Equal(new byte[] { 4, 2 }, await SocketTestExtensions.EchoAsync(good, [4, 2]));
        Assert.Empty(_a.GetKnownServers()); // an explicit pin records nothing

        var wrong = new string('A', 64);
        var mismatch = await Assert.ThrowsAsync<QmTunnelException>(() => TunnelAsync("badpin", $"qmt://127.0.0.1:{b.Port}?sha256={wrong}"));
        Assert.Equal(ErrorIds.CertificateMismatch, mismatch.ErrorId);
        Assert.DoesNotContain(_a.GetTunnels(), t => t.Name == "badpin");
        var error = mismatch.Message;
        Assert.Contains("given for this hop", error);
        Assert.Contains(wrong, error);
        Assert.Contains(b.CertificateThumbprint!, error);
    }

    [Fact]
    public async Task A_hop_limited_to_tls_1_3_links_and_carries_data()
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: false);
        var listen = await TunnelAsync("tls13", $"qmt://127.0.0.1:{b.Port}?tls=1.3");
        var payload = RandomNumberGenerator.GetBytes(256 * 1024);
        Assert.Equal(payload, await SocketTestExtensions.EchoAsync(listen, payload));
        Assert.Equal(["TLS_AES_128_GCM_SHA256"], b.InboundCipherSuites());
    }

    [Theory]
    [InlineData("chacha20", "TLS_CHACHA20_POLY1305_SHA256")]
    [InlineData("aes256gcm", "TLS_AES_256_GCM_SHA384")]
    [InlineData("aes256gcm,chacha20", "TLS_CHACHA20_POLY1305_SHA256")] // the accepting server picks by its own preference
    public async Task A_hop_offers_only_the_ciphers_it_names(string ciphers, string negotiated)
    {
        var b = await _engines.StartAsync(_bPath, allowPlainLinks: false);
        var listen = await TunnelAsync("ciphers", $"qmt://127.0.0.1:{b.Port}?cipher={ciphers}");
        var payload = RandomNumberGenerator.GetBytes(64 * 1024);
        Assert.Equal(payload, await SocketTestExtensions.EchoAsync(listen, payload));
        Assert.Equal([negotiated], b.InboundCipherSuites());
    }
}

/// <summary>Trust on first use records a server's certificate only once a login over it succeeded.</summary>
public sealed class PinAfterLoginTests : IAsyncLifetime
{
    private readonly EngineFixture _engines = new();
    private readonly EchoServer _echo = new();
    private QmTunnelEngine _a = null!, _b = null!, _c = null!;

    public async Task InitializeAsync()
    {
        _a = await _engines.StartAsync(allowPlainLinks: false);
        _b = await _engines.StartAsync(allowPlainLinks: false);
        _c = await _engines.StartAsync(allowPlainLinks: false);
    }

    public async Task DisposeAsync()
    {
        await _engines.DisposeAsync();
        await _echo.DisposeAsync();
    }

    private TunnelProfile Profile(string name, params QmTunnelEngine[] via) => new()
    {
        Name = name, Listen = "tcp://127.0.0.1:0", Via = via.Select(EngineFixture.TlsHop).ToList(), Target = _echo.Uri, ConnectTimeout = TimeSpan.FromSeconds(5),
    };

    [Fact]
    public async Task A_failed_login_and_a_login_query_pin_nothing_and_a_successful_login_pins_the_server()
    {
        var wrong = new HopLogin("admin", "not-the-password");
        var error = await Assert.ThrowsAsync<QmTunnelException>(() => _a.NewTunnelAsync(Profile("wrong", _b), [wrong]));
        Assert.Equal(ErrorIds.AuthenticationFailed, error.ErrorId);
        Assert.Empty(_a.GetKnownServers()); // the login query and the refused login over B's certificate pinned nothing

        // Through B: B makes the login query to C for A (no pin on B), then fails to log in there (still none).
        error = await Assert.ThrowsAsync<QmTunnelException>(() => _a.NewTunnelAsync(Profile("far", _b, _c), [EngineFixture.AdminLogin, wrong]));
        Assert.Equal(ErrorIds.AuthenticationFailed, error.ErrorId);
        Assert.DoesNotContain(_b.GetKnownServers(), k => k.Server == $"127.0.0.1:{_c.Port}");

        await _a.NewTunnelAsync(Profile("good", _b, _c), [EngineFixture.AdminLogin, EngineFixture.AdminLogin]);
        Assert.Equal(_b.CertificateThumbprint, Assert.Single(_a.GetKnownServers()).Thumbprint);
        Assert.Equal(_c.CertificateThumbprint, Assert.Single(_b.GetKnownServers()).Thumbprint);
    }

    [Fact]
    public async Task Check_and_login_query_streams_end_on_every_server_of_the_chain()
    {
        await _a.NewTunnelAsync(Profile("chain", _b, _c), [EngineFixture.AdminLogin, EngineFixture.AdminLogin]);
        // The login query and the check each opened a stream through B (and C): none stays open.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((_b.InboundStreamCount, _c.InboundStreamCount) != (0, 0) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
        Assert.Equal((0, 0), (_b.InboundStreamCount, _c.InboundStreamCount));
    }
}
