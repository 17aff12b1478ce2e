<#
.SYNOPSIS
    Collects what is needed to diagnose a run: setupapi.dev.log, Driver Verifier's state,
    crash dumps, the driver store, the service and device state, VBS state, boot settings
    and recent System events.
#>
param(
    [string] $OutDir = ''
)

. (Join-Path $PSScriptRoot 'common.ps1')
$ErrorActionPreference = 'Continue'
if (-not $OutDir) {
    $OutDir = Join-Path $RepoRoot ("target\vm\logs\" + (Get-Date -Format 'yyyyMMdd-HHmmss'))
}
New-Item -ItemType Directory -Force $OutDir | Out-Null

function Save([string] $Name, [scriptblock] $Command) {
    try { & $Command *>&1 | Out-File -Encoding utf8 (Join-Path $OutDir $Name) }
    catch { "failed: $_" | Out-File -Encoding utf8 (Join-Path $OutDir $Name) }
}

Copy-Item "$env:SystemRoot\INF\setupapi.dev.log" $OutDir -ErrorAction SilentlyContinue
Save 'verifier-query.txt' { verifier /query }
Save 'verifier-querysettings.txt' { verifier /querysettings }
Save 'pnputil-enum-drivers.txt' { pnputil /enum-drivers }
Save 'pnputil-enum-devices.txt' { pnputil /enum-devices /deviceids }
Save 'sc-query.txt' { sc.exe query $Names.Wdm.Service; sc.exe qc $Names.Wdm.Service; sc.exe query $Names.Kmdf.Service }
Save 'deviceguard.txt' { Get-CimInstance -Namespace root\Microsoft\Windows\DeviceGuard -ClassName Win32_DeviceGuard | Format-List * }
Save 'bcdedit.txt' { bcdedit /enum '{current}' }
Save 'system-events.txt' { Get-WinEvent -LogName System -MaxEvents 300 | Format-List TimeCreated, Id, ProviderName, LevelDisplayName, Message }

$dump = "$env:SystemRoot\MEMORY.DMP"
if (Test-Path $dump) { Copy-Item $dump $OutDir }
$minidumps = "$env:SystemRoot\Minidump"
if (Test-Path $minidumps) { Copy-Item (Join-Path $minidumps '*.dmp') $OutDir -ErrorAction SilentlyContinue }

Write-Host "logs in $OutDir"
