using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Security;

public sealed class PasswordChallengeTests
{
    private const int Fast = 1000;
    private const string Password = "s3cret-pässword";
    private static readonly byte[] Secret = RandomNumberGenerator.GetBytes(32);
    private static readonly PasswordVerifier Verifier = PasswordVerifier.Create(Password, Fast);
    private static readonly byte[] Binding = RandomNumberGenerator.GetBytes(32);

    /// <summary>One complete login: what the client sends, what the server answers.</summary>
    private static (bool Ok, byte[]? Signature, PasswordProof Proof) Login(
        string password = Password, string clientUser = "alice", string serverUser = "alice",
        byte[]? clientBinding = null, byte[]? serverBinding = null)
    {
        var clientNonce = PasswordChallenge.NewNonce();
        var challenge = PasswordChallenge.CreateChallenge(Verifier, serverUser, Secret);
        var proof = PasswordChallenge.CreateProof(password, clientUser, clientNonce, challenge, clientBinding ?? Binding, minIterations: Fast);
        var ok = PasswordChallenge.VerifyClientProof(Verifier, serverUser, clientNonce, challenge, serverBinding ?? Binding, proof.ClientProof, out var signature);
        return (ok, signature, proof);
    }

    [Fact]
    public void The_right_password_logs_in_and_the_server_proves_itself()
    {
        var (ok, signature, proof) = Login();
        Assert.True(ok);
        Assert.NotNull(signature);
        Assert.Equal(32, proof.ClientProof.Length);
        PasswordChallenge.CheckServerSignature(proof, signature, "qmt://hostB:9200");
    }

    [Fact]
    public void Works_without_channel_binding_on_a_plain_link()
    {
        var (ok, signature, proof) = Login(clientBinding: [], serverBinding: []);
        Assert.True(ok);
        PasswordChallenge.CheckServerSignature(proof, signature, "qmt+plain://hostB:9200");
    }

    [Fact]
    public void A_wrong_password_fails()
    {
        var (ok, signature, _) = Login(password: "s3cret-password");
        Assert.False(ok);
        Assert.Null(signature);
    }

    [Fact]
    public void A_proof_for_one_channel_binding_fails_for_another()
    {
        Assert.False(Login(serverBinding: RandomNumberGenerator.GetBytes(32)).Ok);
        Assert.False(Login(clientBinding: [], serverBinding: Binding).Ok);
        Assert.False(Login(clientBinding: Binding, serverBinding: []).Ok);
    }

    [Fact]
    public void A_proof_is_bound_to_the_user_name()
    {
        Assert.False(Login(clientUser: "alice", serverUser: "mallory").Ok);
        Assert.False(Login(clientUser: "Alice", serverUser: "alice").Ok);
    }

    [Fact]
    public void A_proof_for_one_nonce_fails_for_another_and_cannot_be_replayed()
    {
        var clientNonce = PasswordChallenge.NewNonce();
        var challenge = PasswordChallenge.CreateChallenge(Verifier, "alice", Secret);
        var proof = PasswordChallenge.CreateProof(Password, "alice", clientNonce, challenge, Binding, Fast).ClientProof;
        Assert.True(PasswordChallenge.VerifyClientProof(Verifier, "alice", clientNonce, challenge, Binding, proof, out _));

        // Another client nonce.
        Assert.False(PasswordChallenge.VerifyClientProof(Verifier, "alice", PasswordChallenge.NewNonce(), challenge, Binding, proof, out _));
        // The same proof against the next challenge (a new server nonce): a replay.
        var next = PasswordChallenge.CreateChallenge(Verifier, "alice", Secret);
        Assert.NotEqual(challenge.ServerNonce, next.ServerNonce);
        Assert.False(PasswordChallenge.VerifyClientProof(Verifier, "alice", clientNonce, next, Binding, proof, out _));
        // A challenge with other iterations or salt than the verifier's (the password changed in between).
        Assert.False(PasswordChallenge.VerifyClientProof(Verifier, "alice", clientNonce, challenge with { Iterations = Fast + 1 }, Binding, proof, out _));
    }

    [Fact]
    public void A_changed_bit_in_the_proof_fails()
    {
        var clientNonce = PasswordChallenge.NewNonce();
        var challenge = PasswordChallenge.CreateChallenge(Verifier, "alice", Secret);
        var proof = PasswordChallenge.CreateProof(Password, "alice", clientNonce, challenge, Binding, Fast).ClientProof;
        for (var bit = 0; bit < proof.Length * 8; bit += 37)
        {
            var bad = (byte[])proof.Clone();
            bad[bit / 8] ^= (byte)(1 << (bit % 8));
            Assert.False(PasswordChallenge.VerifyClientProof(Verifier, "alice", clientNonce, challenge, Binding, bad, out _));
        }
        Assert.False(PasswordChallenge.VerifyClientProof(Verifier, "alice", clientNonce, challenge, Binding, proof.AsSpan(0, 31), out _));
        Assert.False(PasswordChallenge.VerifyClientProof(Verifier, "alice", clientNonce.AsSpan(0, 8), challenge, Binding, proof, out _));
    }

    [Fact]
    public void A_server_that_does_not_know_the_verifier_is_caught_by_its_signature()
    {
        var (_, signature, proof) = Login();
        var forged = (byte[])signature!.Clone();
        forged[0] ^= 0x80;
        var ex = Assert.Throws<QmTunnelException>(() => PasswordChallenge.CheckServerSignature(proof, forged, "qmt://hostB:9200"));
        Assert.Equal(SecurityErrorIds.ServerSignatureInvalid, ex.ErrorId);
        Assert.Equal(QmErrorKind.SecurityError, ex.Kind);
        Assert.Equal("qmt://hostB:9200", ex.Target);
        Assert.Contains("qmt://hostB:9200", ex.Message, StringComparison.Ordinal);
        Assert.Throws<QmTunnelException>(() => PasswordChallenge.CheckServerSignature(proof, [], "s"));
    }

    [Fact]
    public void The_challenge_carries_the_verifier_salt_and_iterations_and_a_fresh_nonce()
    {
        var a = PasswordChallenge.CreateChallenge(Verifier, "alice", Secret);
        var b = PasswordChallenge.CreateChallenge(Verifier, "alice", Secret);
        Assert.Equal(Verifier.Salt.ToArray(), a.Salt);
        Assert.Equal(Fast, a.Iterations);
        Assert.Equal(PasswordChallenge.NonceSize, a.ServerNonce.Length);
        Assert.NotEqual(a.ServerNonce, b.ServerNonce);
    }

    [Fact]
    public void Unknown_users_get_a_stable_fake_challenge_and_always_fail()
    {
        var a = PasswordChallenge.CreateChallenge(null, "nobody", Secret);
        var again = PasswordChallenge.CreateChallenge(null, "NOBODY", Secret);
        var other = PasswordChallenge.CreateChallenge(null, "someone", Secret);
        var otherServer = PasswordChallenge.CreateChallenge(null, "nobody", RandomNumberGenerator.GetBytes(32));
        Assert.Equal(a.Salt, again.Salt);
        Assert.Equal(PasswordHasher.SaltSize, a.Salt.Length);
        Assert.NotEqual(a.Salt, other.Salt);
        Assert.NotEqual(a.Salt, otherServer.Salt);
        Assert.Equal(PasswordHasher.DefaultIterations, a.Iterations);

        var clientNonce = PasswordChallenge.NewNonce();
        Assert.False(PasswordChallenge.VerifyClientProof(null, "nobody", clientNonce, a, Binding, RandomNumberGenerator.GetBytes(32), out var signature));
        Assert.Null(signature);
        Assert.Throws<ArgumentException>(() => PasswordChallenge.CreateChallenge(null, "nobody", new byte[8]));
    }

    [Fact]
    public void A_proof_made_for_a_verifier_fails_against_another_verifier_of_the_same_password()
    {
        var other = PasswordVerifier.Create(Password, Fast);
        var clientNonce = PasswordChallenge.NewNonce();
        var challenge = PasswordChallenge.CreateChallenge(Verifier, "alice", Secret);
        var proof = PasswordChallenge.CreateProof(Password, "alice", clientNonce, challenge, Binding, Fast).ClientProof;
        Assert.False(PasswordChallenge.VerifyClientProof(other, "alice", clientNonce, challenge, Binding, proof, out _));
    }

    public static TheoryData<PasswordChallengeParameters, string> BadChallenges() => new()
    {
        { new PasswordChallengeParameters(new byte[24], new byte[16], 99_999), "99999 PBKDF2 iterations" },
        { new PasswordChallengeParameters(new byte[24], new byte[16], 1), "1 PBKDF2 iterations" },
        { new PasswordChallengeParameters(new byte[24], new byte[16], PasswordHasher.MaxIterations + 1), "PBKDF2 iterations" },
        { new PasswordChallengeParameters(new byte[24], new byte[8], 100_000), "salt has 8 bytes" },
        { new PasswordChallengeParameters(new byte[24], new byte[65], 100_000), "salt has 65 bytes" },
        { new PasswordChallengeParameters(new byte[4], new byte[16], 100_000), "nonce has 4 bytes" },
        { new PasswordChallengeParameters(new byte[65], new byte[16], 100_000), "nonce has 65 bytes" },
    };

    [Theory]
    [MemberData(nameof(BadChallenges))]
    public void A_client_refuses_a_weak_or_absurd_challenge_before_using_the_password(PasswordChallengeParameters challenge, string expected)
    {
        var ex = Assert.Throws<QmTunnelException>(() => PasswordChallenge.CreateProof(Password, "alice", PasswordChallenge.NewNonce(), challenge, Binding));
        Assert.Equal(SecurityErrorIds.AuthenticationChallengeInvalid, ex.ErrorId);
        Assert.Equal(QmErrorKind.SecurityError, ex.Kind);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains("The password was not used", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cached_keys_make_the_same_proof_as_the_password()
    {
        var clientNonce = PasswordChallenge.NewNonce();
        var challenge = PasswordChallenge.CreateChallenge(Verifier, "alice", Secret);
        var keys = ScramKeys.Derive(Password, challenge.Salt, challenge.Iterations);
        var fromKeys = PasswordChallenge.CreateProof(keys, "alice", clientNonce, challenge, Binding, Fast);
        var fromPassword = PasswordChallenge.CreateProof(Password, "alice", clientNonce, challenge, Binding, Fast);
        Assert.Equal(fromPassword.ClientProof, fromKeys.ClientProof);
        Assert.Equal(fromPassword.ExpectedServerSignature, fromKeys.ExpectedServerSignature);
        Assert.True(PasswordChallenge.VerifyClientProof(Verifier, "alice", clientNonce, challenge, Binding, fromKeys.ClientProof, out _));

        var otherSalt = ScramKeys.Derive(Password, new byte[16], Fast);
        Assert.Throws<ArgumentException>(() => PasswordChallenge.CreateProof(otherSalt, "alice", clientNonce, challenge, Binding, Fast));
    }

    [Fact]
    public void The_auth_message_is_length_prefixed_so_fields_cannot_be_shifted()
    {
        byte[] nonce = [.. new byte[24]];
        var a = PasswordChallenge.AuthMessage("ab", nonce, nonce, new byte[16], 1000, [1, 2]);
        var b = PasswordChallenge.AuthMessage("a", nonce, nonce, new byte[16], 1000, [1, 2]);
        var c = PasswordChallenge.AuthMessage("ab", nonce, nonce, new byte[16], 1000, [1, 2, 0]);
        var d = PasswordChallenge.AuthMessage("ab", nonce, nonce, new byte[16], 1001, [1, 2]);
        Assert.Equal(4 + PasswordChallenge.Label.Length + 4 + 2 + 4 + 24 + 4 + 24 + 4 + 16 + 4 + 4 + 4 + 2, a.Length);
        Assert.NotEqual(a, b);
        Assert.NotEqual(a, c);
        Assert.NotEqual(a, d);
        Assert.Equal(a, PasswordChallenge.AuthMessage("ab", nonce, nonce, new byte[16], 1000, [1, 2]));
    }

    [Fact]
    public void The_TLS_channel_binding_is_the_SHA256_of_the_server_certificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var certificate = new CertificateRequest("CN=test", key, HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var binding = PasswordChallenge.TlsServerEndPoint(certificate);
        // Computed here from the DER bytes: comparing with another product function would pass if both drifted together.
        Assert.Equal(SHA256.HashData(certificate.RawData), binding);
        Assert.Equal(ServerCertificate.Thumbprint(certificate), Convert.ToHexString(binding)); // the pin names the same hash
    }
}
