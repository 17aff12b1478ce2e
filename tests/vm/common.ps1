# common.ps1: names and paths shared by the VM scripts (dot-sourced, not run).
#
# The names are those of inf/ and sample/core/src/names.rs; a test in
# sample/hotswapctl/tests/vm_scripts.rs checks that they still agree.

$ErrorActionPreference = 'Stop'

$RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '..\..')).Path

$Names = @{
    Wdm  = @{
        Inf     = 'hotswap_sample_wdm.inf'
        Image   = 'hotswap_sample_wdm.sys'
        Catalog = 'hotswap_sample_wdm.cat'
        Service = 'HotSwapSampleWdm'
    }
    Kmdf = @{
        Inf           = 'hotswap_sample.inf'
        Image         = 'hotswap_sample.sys'
        Catalog       = 'hotswap_sample.cat'
        Service       = 'HotSwapSample'
        HardwareId    = 'Root\HotSwapSample'
        InterfaceGuid = '{33D918D7-4BFA-46DB-8221-BA6FB13AEE7A}'
    }
}

# Where package.ps1 writes the signed packages: <root>\<arch>\<v1|v2>\
$DefaultPackageRoot = Join-Path $RepoRoot 'target\vm\packages'

function Get-Arch {
    if ($env:PROCESSOR_ARCHITECTURE -eq 'ARM64') { 'arm64' } else { 'amd64' }
}

function Get-PackageDir([string] $PackageRoot, [string] $Version) {
    Join-Path (Join-Path $PackageRoot (Get-Arch)) $Version
}

function Get-HotswapctlPath {
    $built = Join-Path $RepoRoot 'target\release\hotswapctl.exe'
    if (Test-Path $built) { return $built }
    $cmd = Get-Command hotswapctl.exe -ErrorAction SilentlyContinue
    if ($cmd) { return $cmd.Source }
    throw "hotswapctl.exe not found: build it with 'cargo build --release -p hotswapctl' or put it on PATH"
}

# Whether a program (devcon.exe, devgen.exe: WDK tools) is on PATH.
function Test-Tool([string] $Name) {
    [bool] (Get-Command "$Name.exe" -ErrorAction SilentlyContinue)
}

# The device node of the KMDF build (root-enumerated, hardware id Root\HotSwapSample: the
# node devcon install or devgen created; the KMDF driver is its function driver).
function Get-SampleInstanceId {
    $device = Get-PnpDevice -ErrorAction SilentlyContinue |
        Where-Object { $_.HardwareID -contains $Names.Kmdf.HardwareId } |
        Select-Object -First 1
    if ($device) { $device.InstanceId } else { $null }
}

# Runs a native command, echoing it, and fails on a non-zero exit code.
function Invoke-Native([string] $Program, [string[]] $Arguments, [int[]] $OkCodes = @(0)) {
    Write-Host "> $Program $($Arguments -join ' ')"
    & $Program @Arguments
    if ($OkCodes -notcontains $LASTEXITCODE) {
        throw "$Program exited with $LASTEXITCODE"
    }
}
