<#
.SYNOPSIS
    Checks the machine setup, installs one version of the sample and starts it.

.DESCRIPTION
    Checks that test signing is on and that virtualization-based security (the Secure
    Kernel, which Driver Hot-Swap requires) is running; warns otherwise (the driver still
    loads, without hot swap). Then:

      Wdm:  pnputil /add-driver hotswap_sample_wdm.inf /install; sc start HotSwapSampleWdm
      Kmdf: devcon install hotswap_sample.inf Root\HotSwapSample: devcon creates the
            root-enumerated device node and installs the package on it as the node's
            function driver (inf/README.md). With -NodeTool Devgen:
            devgen /add /bus ROOT /hardwareid Root\HotSwapSample, then
            pnputil /add-driver hotswap_sample.inf /install. When the node exists already
            (an earlier install), the package is installed on it with pnputil.

    With -EnableVerifier it also turns on Driver Verifier for the image (standard settings,
    which include IRQL checking and DDI compliance checking); that takes effect after a
    reboot. Run as administrator.
#>
param(
    [ValidateSet('Wdm', 'Kmdf')] [string] $Build = 'Wdm',
    [ValidateSet('v1', 'v2')] [string] $Version = 'v1',
    [ValidateSet('Devcon', 'Devgen')] [string] $NodeTool = 'Devcon',
    [string] $PackageRoot = '',
    [switch] $EnableVerifier
)

. (Join-Path $PSScriptRoot 'common.ps1')
if (-not $PackageRoot) { $PackageRoot = $DefaultPackageRoot }
$names = $Names[$Build]
$package = Get-PackageDir $PackageRoot $Version
$inf = Join-Path $package $names.Inf
if (-not (Test-Path $inf)) { throw "$inf not found: run package.ps1 first" }

if (-not ((bcdedit /enum '{current}') -match 'testsigning\s+Yes')) {
    Write-Warning 'test signing is off: bcdedit /set testsigning on, then reboot'
}
$guard = Get-CimInstance -Namespace root\Microsoft\Windows\DeviceGuard -ClassName Win32_DeviceGuard -ErrorAction SilentlyContinue
if (-not $guard -or $guard.VirtualizationBasedSecurityStatus -ne 2) {
    Write-Warning 'virtualization-based security is not running: Driver Hot-Swap needs the Secure Kernel (tests/vm/README.md)'
} elseif ($guard.SecurityServicesRunning -notcontains 2) {
    Write-Warning 'VBS runs but memory integrity (HVCI) does not (tests/vm/README.md)'
}

if ($Build -eq 'Wdm') {
    Invoke-Native pnputil @('/add-driver', $inf, '/install')
    # 1056: ERROR_SERVICE_ALREADY_RUNNING
    Invoke-Native sc.exe @('start', $names.Service) @(0, 1056)
} elseif (Get-SampleInstanceId) {
    # The node exists: install this package on it. 259: already installed on every device.
    Invoke-Native pnputil @('/add-driver', $inf, '/install') @(0, 259, 3010)
} elseif ($NodeTool -eq 'Devcon') {
    Invoke-Native devcon @('install', $inf, $names.HardwareId)
} else {
    # /bus ROOT: a root-enumerated node that persists across reboots (devgen's default is a
    # software device, gone at the next boot).
    Invoke-Native devgen @('/add', '/bus', 'ROOT', '/hardwareid', $names.HardwareId)
    Invoke-Native pnputil @('/add-driver', $inf, '/install') @(0, 3010)
}
if ($Build -eq 'Kmdf') {
    $id = Get-SampleInstanceId
    if (-not $id) { throw "no device with hardware id $($names.HardwareId) after the install" }
    Write-Host "device instance id: $id"
    Get-PnpDevice -InstanceId $id | Format-List FriendlyName, Class, Status, Problem
}

if ($EnableVerifier) {
    Invoke-Native verifier @('/standard', '/driver', $names.Image)
    Write-Warning 'Driver Verifier settings take effect after a reboot'
}

& (Get-HotswapctlPath) version
