using System.Management.Automation;

namespace QmTunnel.PowerShell;

/// <summary>
/// Hooks the module's import and removal: on import, make sure the management sessions are closed and the in-process
/// server is stopped cleanly when pwsh exits; on Remove-Module, do both right away (its listeners, database and
/// sessions must not outlive the module). Daemons are left running.
/// </summary>
public sealed class ModuleLifetime : IModuleAssemblyInitializer, IModuleAssemblyCleanup
{
    public void OnImport() => ServerRegistry.InstallExitHook();

    public void OnRemove(PSModuleInfo psModuleInfo) => ServerRegistry.Shutdown();
}
