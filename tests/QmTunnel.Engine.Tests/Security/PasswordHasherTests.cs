using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using QmTunnel.Engine.Management;
using QmTunnel.Engine.Security;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Tests.Security;

public sealed class PasswordHasherTests
{
    private const int Fast = 1000;

    [Fact]
    public void A_hash_verifies_its_password_and_no_other()
    {
        var hash = PasswordHasher.Hash("correct horse battery staple", Fast);
        Assert.True(PasswordHasher.Verify("correct horse battery staple", hash));
        Assert.False(PasswordHasher.Verify("correct horse battery stapl", hash));
        Assert.False(PasswordHasher.Verify("Correct horse battery staple", hash));
        Assert.False(PasswordHasher.Verify("correct horse battery staple ", hash));
    }

    [Fact]
    public void The_stored_format_is_scram_sha256_iterations_salt_storedkey_serverkey()
    {
        var hash = PasswordHasher.Hash("pw", Fast);
        Assert.Matches(new Regex(@"^scram-sha256\$1000\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=\$[A-Za-z0-9+/]{43}=$"), hash);
    }

    [Fact]
    public void Each_hash_has_its_own_salt()
    {
        var a = PasswordHasher.Hash("same", Fast);
        var b = PasswordHasher.Hash("same", Fast);
        Assert.NotEqual(a, b);
        Assert.NotEqual(a.Split('$')[2], b.Split('$')[2]);
        Assert.True(PasswordHasher.Verify("same", a) && PasswordHasher.Verify("same", b));
    }

    [Fact]
    public void Non_ascii_passwords_round_trip_as_utf8()
    {
        var hash = PasswordHasher.Hash("pässwörd-密码-🔑", Fast);
        Assert.True(PasswordHasher.Verify("pässwörd-密码-🔑", hash));
        Assert.False(PasswordHasher.Verify("passwort-密码-🔑", hash));
    }

    [Fact]
    public void The_default_is_600000_iterations()
    {
        Assert.Equal(600_000, PasswordHasher.DefaultIterations);
        var hash = PasswordHasher.Hash("slow on purpose");
        Assert.StartsWith("scram-sha256$600000$", hash, StringComparison.Ordinal);
        Assert.True(PasswordHasher.Verify("slow on purpose", hash));
        Assert.False(PasswordHasher.NeedsRehash(hash));
    }

    [Fact]
    public void Hashes_with_fewer_iterations_than_current_need_a_rehash()
    {
        var hash = PasswordHasher.Hash("pw", Fast);
        Assert.True(PasswordHasher.NeedsRehash(hash));
        Assert.True(PasswordHasher.NeedsRehash(hash, Fast + 1));
        Assert.False(PasswordHasher.NeedsRehash(hash, Fast));
        Assert.False(PasswordHasher.NeedsRehash(hash, Fast - 1));
    }

    [Fact]
    public void Key_derivation_follows_RFC_7677()
    {
        // RFC 7677 section 3: user "user", password "pencil", i=4096. Our AuthMessage differs from SCRAM's, so compute
        // the RFC's AuthMessage here and check proof and signature made from our keys.
        var salt = Convert.FromBase64String("W22ZaJ0SNY7soEsUEjb6gQ==");
        var keys = ScramKeys.Derive("pencil", salt, 4096);
        var verifier = PasswordVerifier.Create("pencil", 4096, salt);
        Assert.Equal(SHA256.HashData(keys.ClientKey), verifier.StoredKey.ToArray());
        Assert.Equal(keys.ServerKey.ToArray(), verifier.ServerKey.ToArray());

        const string clientFirstBare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        const string serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        const string clientFinalWithoutProof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        var authMessage = Encoding.ASCII.GetBytes($"{clientFirstBare},{serverFirst},{clientFinalWithoutProof}");
        var proof = HMACSHA256.HashData(verifier.StoredKey, authMessage);
        for (var i = 0; i < proof.Length; i++)
        {
            proof[i] ^= keys.ClientKey[i];
        }
        Assert.Equal("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", Convert.ToBase64String(proof));
        Assert.Equal("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", Convert.ToBase64String(HMACSHA256.HashData(verifier.ServerKey, authMessage)));
    }

    public static TheoryData<string, string> Tampered()
    {
        var good = PasswordHasher.Hash("pw", Fast).Split('$');
        string With(int index, string value)
        {
            var parts = (string[])good.Clone();
            parts[index] = value;
            return string.Join('$', parts);
        }
        return new TheoryData<string, string>
        {
            { "", "it is empty" },
            { "pw", "does not start with 'scram-sha256$'" },
            { With(0, "pbkdf2-sha256"), "scheme 'pbkdf2-sha256'" },
            { With(0, "SCRAM-SHA256"), "does not start with" },
            { string.Join('$', good[..4]), "4 '$'-separated fields, not 5" },
            { string.Join('$', good) + "$extra", "6 '$'-separated fields" },
            { With(1, "0"), "iteration count '0'" },
            { With(1, "-5"), "iteration count '-5'" },
            { With(1, "01000"), "iteration count '01000'" },
            { With(1, "1e3"), "iteration count '1e3'" },
            { With(1, " 1000"), "iteration count ' 1000'" },
            { With(1, "10000001"), "iteration count '10000001'" },
            { With(1, "99999999999"), "iteration count" },
            { With(2, "not base64!!!!!!!!!!!=="), "salt is not 16 bytes of Base64" },
            { With(2, Convert.ToBase64String(new byte[15])), "salt is not 16 bytes" },
            { With(2, Convert.ToBase64String(new byte[17])), "salt is not 16 bytes" },
            { With(2, good[2].TrimEnd('=')), "salt is not 16 bytes" },
            { With(3, good[3][..20] + " " + good[3][21..]), "StoredKey is not 32 bytes" },
            { With(3, Convert.ToBase64String(new byte[31])), "StoredKey is not 32 bytes" },
            { With(4, ""), "ServerKey is not 32 bytes" },
            { With(4, good[4] + "AAAA"), "ServerKey is not 32 bytes" },
        };
    }

    [Theory]
    [MemberData(nameof(Tampered))]
    public void A_malformed_hash_is_refused_with_a_clear_error(string encoded, string expected)
    {
        var ex = Assert.Throws<QmTunnelException>(() => PasswordHasher.Verify("pw", encoded));
        Assert.Equal(SecurityErrorIds.PasswordHashInvalid, ex.ErrorId);
        Assert.Equal(QmErrorKind.InvalidData, ex.Kind);
        Assert.Contains("The stored password hash is not valid", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains("set the user's password again", ex.Message, StringComparison.Ordinal);
        Assert.Throws<QmTunnelException>(() => PasswordHasher.NeedsRehash(encoded));
        Assert.False(PasswordHasher.TryParse(encoded, out _, out _));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(4)]
    public void Changed_key_bytes_in_a_well_formed_hash_fail_verification(int field)
    {
        var parts = PasswordHasher.Hash("pw", Fast).Split('$');
        var bytes = Convert.FromBase64String(parts[field]);
        bytes[0] ^= 1;
        parts[field] = Convert.ToBase64String(bytes);
        Assert.False(PasswordHasher.Verify("pw", string.Join('$', parts)));
    }

    [Fact]
    public void A_changed_iteration_count_or_salt_fails_verification()
    {
        var parts = PasswordHasher.Hash("pw", Fast).Split('$');
        parts[1] = "1001";
        Assert.False(PasswordHasher.Verify("pw", string.Join('$', parts)));
        parts = PasswordHasher.Hash("pw", Fast).Split('$');
        parts[2] = Convert.ToBase64String(new byte[16]);
        Assert.False(PasswordHasher.Verify("pw", string.Join('$', parts)));
    }

    [Fact]
    public void Parse_and_encode_round_trip()
    {
        var hash = PasswordHasher.Hash("pw", Fast);
        var verifier = PasswordHasher.Parse(hash);
        Assert.Equal(Fast, verifier.Iterations);
        Assert.Equal(16, verifier.Salt.Length);
        Assert.Equal(hash, verifier.Encode());
        Assert.DoesNotContain("pw", verifier.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Empty_or_oversize_passwords_are_refused()
    {
        Assert.Throws<ArgumentException>(() => PasswordHasher.Hash("", Fast));
        Assert.Throws<ArgumentNullException>(() => PasswordHasher.Hash(null!, Fast));
        Assert.Throws<ArgumentException>(() => PasswordHasher.Hash(new string('x', PasswordHasher.MaxPasswordLength + 1), Fast));
        Assert.Throws<ArgumentOutOfRangeException>(() => PasswordHasher.Hash("pw", 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => PasswordHasher.Hash("pw", PasswordHasher.MaxIterations + 1));
        Assert.Throws<ArgumentException>(() => PasswordVerifier.Create("pw", 1000, new byte[8]));
    }

    [Fact]
    public void Generated_passwords_are_20_url_safe_characters_and_differ()
    {
        var passwords = Enumerable.Range(0, 200).Select(_ => PasswordHasher.GeneratePassword()).ToList();
        Assert.All(passwords, p => Assert.Matches(new Regex("^[A-Za-z0-9_-]{20}$"), p));
        Assert.Equal(passwords.Count, passwords.Distinct(StringComparer.Ordinal).Count());
        // Every character of the alphabet shows up over 4000 draws (each is missing with probability ~1e-27).
        Assert.Equal(64, passwords.SelectMany(p => p).Distinct().Count());
        Assert.Equal(32, PasswordHasher.GeneratePassword(32).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => PasswordHasher.GeneratePassword(8));
    }
}
