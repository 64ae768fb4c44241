using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Management;
using Xunit;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Endpoints;

public sealed class EndpointUriTests
{
    [Theory]
    [InlineData("tcp://127.0.0.1:5432", "127.0.0.1", 5432, "tcp://127.0.0.1:5432")]
    [InlineData("tcp://localhost:80", "localhost", 80, "tcp://localhost:80")]
    [InlineData("tcp://db.internal.example:1", "db.internal.example", 1, "tcp://db.internal.example:1")]
    [InlineData("tcp://0.0.0.0:0", "0.0.0.0", 0, "tcp://0.0.0.0:0")]
    [InlineData("tcp://host:65535", "host", 65535, "tcp://host:65535")]
    [InlineData("TCP://Host:8080", "Host", 8080, "tcp://Host:8080")]
    [InlineData("  tcp://127.0.0.1:8080  ", "127.0.0.1", 8080, "tcp://127.0.0.1:8080")]
    [InlineData("tcp://127.0.0.1:8080/", "127.0.0.1", 8080, "tcp://127.0.0.1:8080")]
    [InlineData("tcp://[::1]:8080", "::1", 8080, "tcp://[::1]:8080")]
    [InlineData("tcp://[2001:db8::42]:443", "2001:db8::42", 443, "tcp://[2001:db8::42]:443")]
    [InlineData("tcp://[::]:0", "::", 0, "tcp://[::]:0")]
    public void Application_endpoint_parses(string text, string host, int port, string canonical)
    {
        var uri = EndpointUri.ParseApplication(text, "Listen");

        Assert.Equal(EndpointScheme.Tcp, uri.Scheme);
        Assert.Equal(host, uri.Host);
        Assert.Equal(port, uri.Port);
        Assert.False(uri.IsServer);
        Assert.Equal(canonical, uri.ToString());
    }

    [Theory]
    [InlineData("qmt+plain://hostB:9300", "hostB", 9300, "qmt+plain://hostB:9300")]
    [InlineData("qmt+plain://hostB", "hostB", EndpointUri.DefaultServerPort, "qmt+plain://hostB:9200")]
    [InlineData("qmt+plain://hostB/", "hostB", EndpointUri.DefaultServerPort, "qmt+plain://hostB:9200")]
    [InlineData("QMT+PLAIN://10.0.0.2", "10.0.0.2", EndpointUri.DefaultServerPort, "qmt+plain://10.0.0.2:9200")]
    [InlineData("qmt+plain://[::1]", "::1", EndpointUri.DefaultServerPort, "qmt+plain://[::1]:9200")]
    [InlineData("qmt+plain://[::1]:9201", "::1", 9201, "qmt+plain://[::1]:9201")]
    public void Server_endpoint_parses_with_default_port_9200(string text, string host, int port, string canonical)
    {
        var uri = EndpointUri.ParseServer(text, "Via");

        Assert.Equal(EndpointScheme.QmtPlain, uri.Scheme);
        Assert.Equal(host, uri.Host);
        Assert.Equal(port, uri.Port);
        Assert.True(uri.IsServer);
        Assert.Equal(canonical, uri.ToString());
    }

    [Fact]
    public void Default_server_port_is_9200()
    {
        Assert.Equal(9200, EndpointUri.DefaultServerPort);
    }

    [Theory]
    [InlineData("qmt://hostB:9200", "hostB", 9200, "qmt://hostB:9200")]
    [InlineData("qmt://hostB", "hostB", 9200, "qmt://hostB:9200")]
    [InlineData("QMT://[::1]:9300", "::1", 9300, "qmt://[::1]:9300")]
    public void Tls_server_parses_with_the_default_port(string text, string host, int port, string canonical)
    {
        var uri = EndpointUri.ParseServer(text, "Via");

        Assert.Equal(EndpointScheme.Qmt, uri.Scheme);
        Assert.Equal(host, uri.Host);
        Assert.Equal(port, uri.Port);
        Assert.Equal(canonical, uri.ToString());
    }

    [Theory]
    [InlineData("127.0.0.1:8080", "no scheme")]
    [InlineData("localhost", "no scheme")]
    [InlineData("://127.0.0.1:8080", "no scheme")]
    [InlineData("http://127.0.0.1:8080", "unknown scheme")]
    [InlineData("ssh://host:22", "unknown scheme")]
    [InlineData("unix://tmp/app.sock", "absolute path")]
    [InlineData("unix:///run/../etc/app.sock", "'..'")]
    [InlineData("unix:///run/app.sock?mode=999", "octal")]
    [InlineData("unix:///run/app.sock?mode=0660&x=1", "one option")]
    [InlineData("unix:///run/", "directory")]
    [InlineData("pipe://./pipe/app", "pipe name is")]
    [InlineData("pipe://app?mode=0600", "no options")]
    [InlineData("udp://127.0.0.1:53?x=1", "takes no query")]
    [InlineData("socks5://alice@127.0.0.1:1080", "no user part")]
    [InlineData("tcp://:8080", "no host")]
    [InlineData("tcp://", "no host")]
    [InlineData("tcp://127.0.0.1", "no port")]
    [InlineData("tcp://[::1]", "no port")]
    [InlineData("tcp://127.0.0.1:", "port")]
    [InlineData("tcp://127.0.0.1:65536", "65535")]
    [InlineData("tcp://127.0.0.1:99999999999", "65535")]
    [InlineData("tcp://127.0.0.1:-1", "65535")]
    [InlineData("tcp://127.0.0.1:+80", "65535")]
    [InlineData("tcp://127.0.0.1:http", "65535")]
    [InlineData("tcp://127.0.0.1:8080/path", "path")]
    [InlineData("tcp://127.0.0.1:8080?x=1", "query")]
    [InlineData("tcp://user@127.0.0.1:8080", "user")]
    [InlineData("tcp://::1:8080", "brackets")]
    [InlineData("tcp://[::1:8080", "never closes")]
    [InlineData("tcp://[::1]8080", "':port'")]
    [InlineData("tcp://[not-an-ip]:8080", "not an IPv6 address")]
    [InlineData("tcp://bad host:8080", "not a valid host")]
    [InlineData("qmt+plain://hostB:9200", "tunnel server")]
    [InlineData("qmt://hostB:9200", "tunnel server")]
    public void Invalid_application_endpoint_is_EndpointUriInvalid_naming_the_input(string text, string hint)
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseApplication(text, "Listen"));

        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Equal(QmErrorKind.InvalidArgument, e.Kind);
        Assert.Equal(text, e.Target);
        Assert.Contains(text, e.Message, StringComparison.Ordinal);
        Assert.Contains(hint, e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("hostB:9200", "no scheme")]
    [InlineData("http://hostB:9200", "unknown scheme")]
    [InlineData("udp://hostB:9200", "not a tunnel server")]
    [InlineData("qmt+plain://:9200", "no host")]
    [InlineData("qmt+plain://hostB:65536", "65535")]
    [InlineData("qmt+plain://hostB:9200/x", "path")]
    [InlineData("qmt+plain://hostB:9200?tls=0", "unencrypted link")]
    [InlineData("tcp://hostB:9200", "qmt+plain://")]
    [InlineData("tcp://127.0.0.1:5432", "not a tunnel server")]
    public void Invalid_server_endpoint_is_EndpointUriInvalid_naming_the_input(string text, string hint)
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer(text, "Via"));

        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Equal(text, e.Target);
        Assert.Contains(text, e.Message, StringComparison.Ordinal);
        Assert.Contains(hint, e.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("tcp://[127.0.0.1]:8080")]
    [InlineData("tcp://[1]:8080")]
    public void Brackets_hold_only_an_IPv6_address(string text)
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseApplication(text, "Listen"));

        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains("not an IPv6 address", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Invalid_qmt_uri_is_EndpointUriInvalid_not_TlsNotAvailable()
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer("qmt://hostB:70000", "Via"));

        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    public void Empty_endpoint_is_EndpointUriInvalid_naming_the_setting(string? text)
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseApplication(text, "Target"));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains("Target", e.Message, StringComparison.Ordinal);

        var e2 = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer(text, "Via"));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e2.ErrorId);
        Assert.Contains("Via", e2.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Error_names_the_setting_it_came_from()
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseApplication("tcp://127.0.0.1", "Target"));

        Assert.StartsWith("Target 'tcp://127.0.0.1'", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(EndpointScheme.Tcp, "tcp")]
    [InlineData(EndpointScheme.Qmt, "qmt")]
    [InlineData(EndpointScheme.QmtPlain, "qmt+plain")]
    public void Scheme_text(EndpointScheme scheme, string text)
    {
        Assert.Equal(text, EndpointUri.SchemeText(scheme));
    }

    [Theory]
    [InlineData("tcp://127.0.0.1:5432")]
    [InlineData("tcp://[fe80::1]:22")]
    [InlineData("tcp://my-host.example:65535")]
    public void ToString_parses_back_to_the_same_endpoint(string text)
    {
        var uri = EndpointUri.ParseApplication(text, "Target");

        Assert.Equal(uri, EndpointUri.ParseApplication(uri.ToString(), "Target"));
    }

    [Fact]
    public void A_tls_server_address_may_carry_the_expected_certificate_thumbprint()
    {
        var hex = "ab:" + new string('c', 62);
        var uri = EndpointUri.ParseServer($"qmt://hostB:9200?sha256={hex}", "Via");
        Assert.Equal("AB" + new string('C', 62), uri.CertificateThumbprint);
        Assert.Equal("qmt://hostB:9200", uri.Address);
        Assert.Equal(uri, EndpointUri.ParseServer(uri.ToString(), "Via"));
    }

    [Theory]
    [InlineData("qmt://hostB:9200?sha256=1234", "64 hex")]
    [InlineData("qmt://hostB:9200?sha1=" + "0000000000000000000000000000000000000000", "sha256=")]
    [InlineData("qmt+plain://hostB:9200?sha256=" + "0000000000000000000000000000000000000000000000000000000000000000", "TLS")]
    public void A_bad_thumbprint_query_is_refused_with_the_fix(string text, string hint)
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer(text, "Via"));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains(hint, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tls_server_address_may_require_tls_1_3_next_to_a_pin()
    {
        var pin = new string('0', 64);
        var uri = EndpointUri.ParseServer($"qmt://hostB?tls=1.3&sha256={pin}", "Via");
        Assert.Equal(TlsVersion.Tls13, uri.MinimumTls);
        Assert.Equal(pin, uri.CertificateThumbprint);
        Assert.Equal($"qmt://hostB:9200?sha256={pin}&tls=1.3", uri.ToString());
        Assert.Equal("qmt://hostB:9200", uri.Address);
        Assert.Equal(uri, EndpointUri.ParseServer(uri.ToString(), "Via"));
    }

    [Theory]
    [InlineData("qmt://hostB?tls=1.1", "tls=1.1")]
    [InlineData("qmt://hostB?zip=1", "unknown option")]
    public void Unknown_server_options_are_refused_naming_what_is_accepted(string text, string hint)
    {
        var e = Assert.Throws<QmTunnelException>(() => EndpointUri.ParseServer(text, "Via"));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains(hint, e.Message, StringComparison.Ordinal);
        Assert.Contains("tls=1.3", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tls_server_address_names_its_ciphers_and_user_and_keeps_them_out_of_its_Address()
    {
        var uri = EndpointUri.ParseServer("qmt://ops@gw:9300?cipher=ChaCha20, aes256gcm,chacha20&tls=1.3", "Via");
        Assert.Equal([TlsCipher.ChaCha20Poly1305, TlsCipher.Aes256Gcm], uri.Ciphers);
        Assert.Equal("ops", uri.User);
        Assert.Equal("qmt://ops@gw:9300?tls=1.3&cipher=chacha20,aes256gcm", uri.ToString());
        Assert.Equal("qmt://gw:9300", uri.Address);
        Assert.Equal(uri.ToString(), EndpointUri.ParseServer(uri.ToString(), "Via").ToString());
    }

    [Theory]
    [InlineData("qmt://gw?cipher=rc4", "'rc4' is not a cipher")]
    [InlineData("qmt://gw?cipher=", "names no cipher")]
    [InlineData("qmt+plain://gw?cipher=chacha20", "cipher= is a TLS option")]
    [InlineData("qmt://bad name@gw", "is not a user name")]
    [InlineData("qmt://a:b@gw", "is not a user name")]
    [InlineData("tcp://u@db:5432", "no user part")]
    public void Bad_ciphers_and_users_are_refused_with_the_fix(string text, string hint)
    {
        var e = Assert.Throws<QmTunnelException>(() => text.StartsWith("tcp", StringComparison.Ordinal)
            ? EndpointUri.ParseApplication(text, "Target") : EndpointUri.ParseServer(text, "Via"));
        Assert.Equal(ErrorIds.EndpointUriInvalid, e.ErrorId);
        Assert.Contains(hint, e.Message, StringComparison.Ordinal);
    }
}
