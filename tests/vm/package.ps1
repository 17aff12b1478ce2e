<#
.SYNOPSIS
    Builds signed test packages of v1 and v2 from the images `cargo xtask build-driver` wrote.

.DESCRIPTION
    For each version: copies the package directory (target\drivers\<arch>\<v1|v2>\: the
    image, its PDB and the INF), stamps a distinct DriverVer with stampinf (v1: 0.1.0.1,
    v2: 0.1.0.2, so the two packages are different driver packages), signs the image,
    creates the catalog with inf2cat and signs it, with a self-signed code-signing test
    certificate (created once with New-SelfSignedCertificate and trusted on this machine).

    Needs the WDK or EWDK tools stampinf, inf2cat and signtool on PATH (an EWDK prompt:
    LaunchBuildEnv.cmd) or under "Windows Kits\10\bin". Run as administrator (the
    certificate is added to the machine's Root and TrustedPublisher stores).

    -Build Kmdf expects the KMDF build's output (sample/kmdf, built on Windows with the WDK:
    `cargo make` writes target\<profile>\hotswap_sample_package\) in the same layout:
    -SourceRoot <dir> with <dir>\v1\ and <dir>\v2\ holding hotswap_sample.{sys,inf}.
#>
param(
    [ValidateSet('Wdm', 'Kmdf')] [string] $Build = 'Wdm',
    [string] $SourceRoot = '',
    [string] $PackageRoot = '',
    [string] $CertName = 'driver-proxy hot-swap sample (TEST)'
)

. (Join-Path $PSScriptRoot 'common.ps1')

$arch = Get-Arch
if (-not $SourceRoot) { $SourceRoot = Join-Path $RepoRoot "target\drivers\$arch" }
if (-not $PackageRoot) { $PackageRoot = $DefaultPackageRoot }
$names = $Names[$Build]

function Find-KitTool([string] $Name) {
    $onPath = Get-Command "$Name.exe" -ErrorAction SilentlyContinue
    if ($onPath) { return $onPath.Source }
    $kits = Join-Path ${env:ProgramFiles(x86)} 'Windows Kits\10\bin'
    $hostArch = if ($arch -eq 'arm64') { 'arm64' } else { 'x64' }
    $found = Get-ChildItem $kits -Recurse -Filter "$Name.exe" -ErrorAction SilentlyContinue |
        Where-Object { $_.DirectoryName -match "\\($hostArch|x86)$" } |
        Sort-Object FullName -Descending | Select-Object -First 1
    if (-not $found) { throw "$Name.exe not found: install the WDK or run from an EWDK prompt" }
    $found.FullName
}

$stampinf = Find-KitTool 'stampinf'
$inf2cat = Find-KitTool 'inf2cat'
$signtool = Find-KitTool 'signtool'

# The test certificate: created once, kept in CurrentUser\My, trusted machine-wide.
$cert = Get-ChildItem Cert:\CurrentUser\My -CodeSigningCert |
    Where-Object { $_.Subject -eq "CN=$CertName" } | Select-Object -First 1
if (-not $cert) {
    Write-Host "creating test certificate CN=$CertName"
    $cert = New-SelfSignedCertificate -Type CodeSigningCert -Subject "CN=$CertName" `
        -CertStoreLocation Cert:\CurrentUser\My -KeyAlgorithm RSA -KeyLength 2048 `
        -HashAlgorithm SHA256 -NotAfter (Get-Date).AddYears(2)
}
$cer = Join-Path $PackageRoot 'driver-proxy-test.cer'
New-Item -ItemType Directory -Force $PackageRoot | Out-Null
Export-Certificate -Cert $cert -FilePath $cer | Out-Null
foreach ($store in 'Root', 'TrustedPublisher') {
    Import-Certificate -FilePath $cer -CertStoreLocation "Cert:\LocalMachine\$store" | Out-Null
}

$os = if ($arch -eq 'arm64') { '10_RS3_ARM64' } else { '10_X64' }
$versions = @{ v1 = '0.1.0.1'; v2 = '0.1.0.2' }
foreach ($version in 'v1', 'v2') {
    $source = Join-Path $SourceRoot $version
    $out = Get-PackageDir $PackageRoot $version
    if (-not (Test-Path (Join-Path $source $names.Image))) {
        throw "$source\$($names.Image) not found: run 'cargo xtask build-driver' first"
    }
    Remove-Item -Recurse -Force $out -ErrorAction SilentlyContinue
    New-Item -ItemType Directory -Force $out | Out-Null
    Copy-Item (Join-Path $source '*') $out
    $inf = Join-Path $out $names.Inf
    $stampArgs = @('-f', $inf, '-d', '*', '-a', $arch, '-v', $versions[$version], '-c', $names.Catalog)
    if ($Build -eq 'Kmdf') { $stampArgs += @('-k', '1.33') }
    Invoke-Native $stampinf $stampArgs
    Invoke-Native $signtool @('sign', '/v', '/fd', 'SHA256', '/sha1', $cert.Thumbprint, (Join-Path $out $names.Image))
    Invoke-Native $inf2cat @("/driver:$out", "/os:$os")
    Invoke-Native $signtool @('sign', '/v', '/fd', 'SHA256', '/sha1', $cert.Thumbprint, (Join-Path $out $names.Catalog))
    Write-Host "package $version ($($versions[$version])): $out"
}
