<#
.SYNOPSIS
    Runs hotswapctl scenarios against the installed sample with the lab commands of this
    VM suite, and writes JUnit XML.

.DESCRIPTION
    Wdm (default): swap via swap.ps1, unload/reload via sc stop/start of HotSwapSampleWdm.
    The WDM build has no device node, so disable-enable is skipped (reported as skipped in
    the JUnit file, not passed).

    Kmdf: swap via swap.ps1, disable/enable via pnputil by device instance id (found by
    hardware id Root\HotSwapSample). The driver is the node's PnP function driver, which
    PnP unloads with its last device: unload and reload are a disable and an enable of the
    node too (pnputil /disable-device, /enable-device), which keeps the node and the
    package installed on it (tests/vm/README.md).

    The exit code is hotswapctl's: non-zero when a scenario failed.
#>
param(
    [ValidateSet('Wdm', 'Kmdf')] [string] $Build = 'Wdm',
    [ValidateSet('Package', 'Restart')] [string] $SwapMode = 'Package',
    [string] $Junit = '',
    [switch] $Quick,
    [string[]] $Only = @(),
    [string] $PackageRoot = ''
)

. (Join-Path $PSScriptRoot 'common.ps1')
if (-not $Junit) { $Junit = Join-Path $RepoRoot 'target\vm\scenarios.xml' }
if (-not $PackageRoot) { $PackageRoot = $DefaultPackageRoot }
New-Item -ItemType Directory -Force (Split-Path $Junit) | Out-Null
$names = $Names[$Build]

$swapScript = Join-Path $PSScriptRoot 'swap.ps1'
# hotswapctl splits a command at spaces (double quotes group words), but Windows
# PowerShell 5.1 does not escape double quotes inside an argument it passes to a native
# program: keep the paths free of spaces rather than quoting them.
foreach ($path in $swapScript, $PackageRoot) {
    if ($path -match '\s') { throw "'$path' contains a space: clone the repository to a path without spaces" }
}
$swap = "powershell -NoProfile -ExecutionPolicy Bypass -File $swapScript -Version {version} -Build $Build -Mode $SwapMode -PackageRoot $PackageRoot"

$arguments = @('scenarios', '--junit', $Junit, '--swap-command', $swap)
if ($Build -eq 'Wdm') {
    $arguments += @(
        '--unload-command', "sc.exe stop $($names.Service)",
        '--reload-command', "sc.exe start $($names.Service)"
    )
} else {
    $id = Get-SampleInstanceId
    if (-not $id) { throw "no device with hardware id $($names.HardwareId): run install.ps1 -Build Kmdf" }
    $arguments += @(
        '--instance-id', $id,
        '--unload-command', "pnputil /disable-device $id",
        '--reload-command', "pnputil /enable-device $id"
    )
}
if ($Quick) { $arguments += '--quick' }
if ($Only.Count -gt 0) { $arguments += @('--only') + $Only }

$hotswapctl = Get-HotswapctlPath
Write-Host "> $hotswapctl $($arguments -join ' ')"
& $hotswapctl @arguments
$code = $LASTEXITCODE
Write-Host "JUnit XML: $Junit"
exit $code
