namespace QmTunnel.PowerShell;

/// <summary>
/// Where each cmdlet's help page is online (Get-Help -Online): the docs/&lt;Verb-Noun&gt;.md pages of the project,
/// the same pages the help XML is built from. One base for all of them; the "online version" of every docs page must
/// equal its cmdlet's HelpUri (tests/Pester/Module.Tests.ps1 checks both).
/// </summary>
internal static class HelpLinks
{
    /// <summary>The folder of the cmdlet pages in the project's repository.</summary>
    public const string Base = "https://github.com/qmtunnel/qmtunnel-powershell/blob/main/docs/";
}
