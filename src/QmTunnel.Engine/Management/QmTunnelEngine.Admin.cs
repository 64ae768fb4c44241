using QmTunnel.Engine.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using QmTunnel.Engine.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using QmTunnel.Engine.Endpoints;
using QmTunnel.Engine.Links;
using QmTunnel.Engine.Protocol;
using QmTunnel.Engine.Storage;
using QmTunnel.Engine.Tunnels;
using QmTunnel.Engine.Errors;

namespace QmTunnel.Engine.Management;

/// <summary>The administrator of a new data path: created at the first start, its generated password shown once.</summary>
public sealed partial class QmTunnelEngine
{
    /// <summary>
    /// The admin password generated on the first start of this data path (no -AdminCredential given), to show once;
    /// null otherwise. A daemon also writes it to <c>initial-admin-password</c> in the data path (owner-only).
    /// </summary>
    public string? InitialAdminPassword { get; private set; }

    /// <summary>File in the data path where a daemon leaves a generated admin password for its starter (owner-only).</summary>
    public const string InitialAdminPasswordFileName = "initial-admin-password";

    /// <summary>Writes <see cref="InitialAdminPassword"/> (when there is one) to the data path, owner-only; returns the file or null.</summary>
    public string? WriteInitialAdminPasswordFile()
    {
        if (InitialAdminPassword is null)
        {
            return null;
        }
        var path = Path.Combine(Options.DataPath, InitialAdminPasswordFileName);
        using (var writer = new StreamWriter(OwnerOnly.Open(path, FileMode.Create, FileAccess.Write), System.Text.Encoding.UTF8))
        {
            writer.WriteLine(InitialAdminPassword);
        }
        return path;
    }

    /// <summary>First start: the Administrators group and admin user. Later starts: checks a given admin password.</summary>
    private string? EnsureAdministrator(TunnelStore store)
    {
        if (Options.PasswordIterations is { } iterations)
        {
            store.SetIntSetting(PasswordIterationsSetting, iterations);
        }
        var hashIterations = store.GetIntSetting(PasswordIterationsSetting) ?? PasswordHasher.DefaultIterations;
        string? generated = null;
        var created = store.Users.EnsureDefaults(() =>
        {
            generated = Options.AdminPassword is null ? PasswordHasher.GeneratePassword() : null;
            return PasswordHasher.Hash(Options.AdminPassword ?? generated!, hashIterations);
        });
        if (created)
        {
            EngineLog.AdminCreated(_logger, Security.User.AdminName, generated is null ? "the given admin credential" : "a generated password");
            return generated;
        }
        if (Options.AdminPassword is { } password)
        {
            var admin = store.Users.FindUser(Security.User.AdminName);
            if (admin?.PasswordHash is { } hash && !PasswordHasher.Verify(password, hash))
            {
                throw new QmTunnelException(ErrorIds.AdminCredentialMismatch, QmErrorKind.AuthenticationError, Security.User.AdminName,
                    $"-AdminCredential does not match the password of user '{Security.User.AdminName}' in {store.FilePath}: the admin password is set on the first start only. " +
                    "Start without -AdminCredential (or with the current password); change it with Set-QmTunnelUser admin -Password.");
            }
        }
        return null;
    }
}
