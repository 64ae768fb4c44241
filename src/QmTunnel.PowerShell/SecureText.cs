using System.Runtime.InteropServices;
using System.Security;

namespace QmTunnel.PowerShell;

/// <summary>
/// Turns a SecureString into clear text only for the duration of one call, then zeroes every copy it made: the
/// unmanaged buffer (ZeroFreeGlobalAllocUnicode) and the managed string handed to the call. The call must therefore
/// not keep that string (the engine hashes a password and drops it). It does not protect against a memory dump taken
/// during the call.
/// </summary>
internal static class SecureText
{
    public static T Use<T>(SecureString secret, Func<string, T> use)
    {
        ArgumentNullException.ThrowIfNull(secret);
        ArgumentNullException.ThrowIfNull(use);
        var buffer = IntPtr.Zero;
        string? text = null;
        try
        {
            buffer = Marshal.SecureStringToGlobalAllocUnicode(secret);
            text = Marshal.PtrToStringUni(buffer, secret.Length);
            return use(text);
        }
        finally
        {
            if (buffer != IntPtr.Zero)
            {
                Marshal.ZeroFreeGlobalAllocUnicode(buffer);
            }
            if (text is { Length: > 0 })
            {
                // A fresh string no one else holds (never interned): overwrite it in place.
                MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(text.AsSpan()), text.Length).Clear();
            }
        }
    }
}
