using System.Management.Automation;

namespace QmTunnel.PowerShell;

/// <summary>
/// Hooks the module's import and removal: on import, make sure the in-process server is stopped cleanly when
/// pwsh exits; on Remove-Module, stop it right away (its listeners and database must not outlive the module).
/// Daemons are left running.
/// </summary>
public sealed class ModuleLifetime : IModuleAssemblyInitializer, IModuleAssemblyCleanup
{
    public void OnImport() => ServerRegistry.InstallExitHook();

    public void OnRemove(PSModuleInfo psModuleInfo) => ServerRegistry.StopEngineForShutdown();
}
