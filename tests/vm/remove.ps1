<#
.SYNOPSIS
    Removes the sample: stops it (WDM) or removes its device node (KMDF: devcon remove
    Root\HotSwapSample, or pnputil /remove-device without devcon), deletes every installed
    package of it from the driver store, and with -ResetVerifier turns Driver Verifier off
    (after a reboot).
#>
param(
    [ValidateSet('Wdm', 'Kmdf')] [string] $Build = 'Wdm',
    [switch] $ResetVerifier
)

. (Join-Path $PSScriptRoot 'common.ps1')
$names = $Names[$Build]

if ($Build -eq 'Wdm') {
    # 1062: ERROR_SERVICE_NOT_ACTIVE, 1060: ERROR_SERVICE_DOES_NOT_EXIST
    Invoke-Native sc.exe @('stop', $names.Service) @(0, 1060, 1062)
} elseif (Test-Tool 'devcon') {
    # Removes every node with the hardware id (devcon's or devgen's); the driver unloads
    # with its last device.
    Invoke-Native devcon @('remove', $names.HardwareId)
} else {
    $id = Get-SampleInstanceId
    if ($id) { Invoke-Native pnputil @('/remove-device', $id) }
}

# Every published oemNN.inf whose original name is the sample's INF (v1 and v2 both).
Get-WindowsDriver -Online |
    Where-Object { (Split-Path $_.OriginalFileName -Leaf) -eq $names.Inf } |
    ForEach-Object { Invoke-Native pnputil @('/delete-driver', $_.Driver, '/uninstall', '/force') }

if ($ResetVerifier) {
    Invoke-Native verifier @('/reset')
    Write-Warning 'Driver Verifier is off after the next reboot'
}
