<#
.SYNOPSIS
    What we can do to "swap" the installed sample to -Version. It is NOT a known hot-swap
    trigger: how Windows starts a hot swap of an installed driver is not publicly
    documented (tests/vm/README.md, "How is a hot swap started?").

.DESCRIPTION
    hotswapctl scenarios runs this as its --swap-command with -Version v1 or v2 and then
    checks through the driver itself (VERSION, STATS) whether a hot swap happened. This
    script therefore only acts; it does not judge, and it sends no request to the driver
    (that would disturb the scenario's exact request counts).

    Default (-Mode Package): installs the target version's signed package
    (pnputil /add-driver <inf> /install). That is the documented way to service a driver;
    whether Windows performs it as a hot swap of a hot-swap-capable driver is unknown. For
    the WDM build (a primitive driver) the documented effect is only that the service runs
    the new image at its next start. If Windows does not hot-swap, the scenarios report it
    plainly (swap-confirmed fails: VERSION still names the old build).

    -Mode Restart: installs the package, then stops and starts the driver (WDM: sc stop /
    sc start; KMDF: pnputil /restart-device). This is a cold reload, not a hot swap: the
    counters start again, and swap-stress fails on served-counter-carried-over. It exists
    to exercise the rest of the pipeline, never to pass the swap scenarios.
#>
param(
    [Parameter(Mandatory = $true)] [ValidateSet('v1', 'v2')] [string] $Version,
    [ValidateSet('Wdm', 'Kmdf')] [string] $Build = 'Wdm',
    [ValidateSet('Package', 'Restart')] [string] $Mode = 'Package',
    [string] $PackageRoot = ''
)

. (Join-Path $PSScriptRoot 'common.ps1')
if (-not $PackageRoot) { $PackageRoot = $DefaultPackageRoot }
$names = $Names[$Build]
$inf = Join-Path (Get-PackageDir $PackageRoot $Version) $names.Inf
if (-not (Test-Path $inf)) { throw "$inf not found: run package.ps1 first" }

# pnputil: 0 success, 3010 success with reboot required (reported, not hidden), 259
# (ERROR_NO_MORE_ITEMS) when the package is already installed on every matching device.
Invoke-Native pnputil @('/add-driver', $inf, '/install') @(0, 259, 3010)
if ($LASTEXITCODE -eq 3010) {
    Write-Warning 'pnputil says a reboot is required to finish: no swap happened now'
}

if ($Mode -eq 'Restart') {
    Write-Warning 'Restart mode: this is an unload and a load, NOT a hot swap'
    if ($Build -eq 'Wdm') {
        Invoke-Native sc.exe @('stop', $names.Service) @(0, 1062)
        # sc stop returns while the service is STOP_PENDING; wait for STOPPED.
        $deadline = (Get-Date).AddSeconds(60)
        while ((Get-Service $names.Service).Status -ne 'Stopped') {
            if ((Get-Date) -gt $deadline) { throw "$($names.Service) did not stop within 60 s" }
            Start-Sleep -Milliseconds 100
        }
        Invoke-Native sc.exe @('start', $names.Service)
    } else {
        $id = Get-SampleInstanceId
        if (-not $id) { throw "no device with hardware id $($names.HardwareId)" }
        Invoke-Native pnputil @('/restart-device', $id)
    }
}
