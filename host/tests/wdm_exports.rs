//! The Microsoft x64 export table: every routine an image imports or resolves has a Microsoft
//! x64 entry point distinct from the `SysV` export, the Microsoft x64
//! `MmGetSystemRoutineAddress` answers with those, and hidden or unknown names get nothing.
//! (Its own test binary: hiding an export is process-wide.)

mod wdm_common;

use driver_proxy_host::wdm::{win64_routine, win64_routine_names};
use driver_proxy_host::{exports, hide_export, kernel};

use wdm_common::{UString, nt};

/// The sample's static imports, then what its library resolves at run time (the last three:
/// pool for its worker threads' storage, `ExAllocatePoolWithTag` where `ExAllocatePool2` is
/// missing), then the MDL, probe and work-item routines of the other transfer types and of
/// the example driver (`examples/scratchpad`), and the spin locks.
const NEEDED: [&str; 45] = [
    "DbgPrint",
    "IoCreateDevice",
    "IoCreateSymbolicLink",
    "IoDeleteDevice",
    "IoDeleteSymbolicLink",
    "IofCompleteRequest",
    "MmGetSystemRoutineAddress",
    "KeBugCheckEx",
    "IoGetDriverProxyFeatures",
    "IoCreateDriverProxyExtension",
    "IoGetDriverProxyExtensionFromDriverObject",
    "IoRegisterDriverProxyEndpoints",
    "IoGetDriverProxyEndpointWrapper",
    "IofGetDriverProxyWrapperFromEndpoint",
    "IoDriverProxyCreateHotSwappableWorkerThread",
    "KeInitializeEvent",
    "KeSetEvent",
    "KeClearEvent",
    "KeResetEvent",
    "KeReadStateEvent",
    "KeWaitForMultipleObjects",
    "PsCreateSystemThread",
    "ZwClose",
    "ZwWaitForSingleObject",
    "IoAllocateDriverObjectExtension",
    "IoGetDriverObjectExtension",
    "ExAllocatePool2",
    "ExAllocatePoolWithTag",
    "ExFreePoolWithTag",
    "IoAllocateMdl",
    "IoFreeMdl",
    "MmBuildMdlForNonPagedPool",
    "MmProbeAndLockPages",
    "MmUnlockPages",
    "MmMapLockedPagesSpecifyCache",
    "MmUnmapLockedPages",
    "ProbeForRead",
    "ProbeForWrite",
    "IoAllocateWorkItem",
    "IoQueueWorkItem",
    "IoFreeWorkItem",
    "KeAcquireSpinLockRaiseToDpc",
    "KeReleaseSpinLock",
    "KeAcquireSpinLockAtDpcLevel",
    "KeReleaseSpinLockFromDpcLevel",
];

fn mm(name: &str) -> usize {
    let mut string = UString::new(name);
    // SAFETY: a valid counted string.
    unsafe { (nt().MmGetSystemRoutineAddress)(string.as_ptr()) as usize }
}

#[test]
fn the_table_is_complete_distinct_and_hidable() {
    let mut addresses = Vec::new();
    for name in NEEDED {
        let address = win64_routine("ntoskrnl.exe", name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(win64_routine("NTOSKRNL.EXE", name), Some(address));
        assert_eq!(mm(name), address, "MmGetSystemRoutineAddress({name})");
        addresses.push(address);
    }
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), NEEDED.len(), "distinct entry points");
    assert_eq!(
        win64_routine_names().len(),
        NEEDED.len(),
        "nothing else is exported"
    );

    // Never the SysV exports.
    let sysv = [
        kernel::KeSetEvent as *const () as usize,
        kernel::ZwClose as *const () as usize,
        kernel::PsCreateSystemThread as *const () as usize,
        kernel::IoRegisterDriverProxyEndpoints as *const () as usize,
        kernel::IoDriverProxyCreateHotSwappableWorkerThread as *const () as usize,
        exports::MmGetSystemRoutineAddress as *const () as usize,
    ];
    for address in sysv {
        assert!(!addresses.contains(&address));
    }

    // Unknown names and DLLs.
    assert_eq!(win64_routine("hal.dll", "KeSetEvent"), None);
    assert_eq!(win64_routine("ntoskrnl.exe", "NoSuchRoutine"), None);
    assert_eq!(
        win64_routine("ntoskrnl.exe", "kesetevent"),
        None,
        "names are exact"
    );
    assert_eq!(mm("NoSuchRoutine"), 0);
    // SAFETY: null is allowed.
    assert!(unsafe { (nt().MmGetSystemRoutineAddress)(core::ptr::null_mut()) }.is_null());

    // A hidden export: a kernel without it.
    hide_export("IoGetDriverProxyFeatures");
    assert_eq!(
        win64_routine("ntoskrnl.exe", "IoGetDriverProxyFeatures"),
        None
    );
    assert_eq!(mm("IoGetDriverProxyFeatures"), 0);
    assert_ne!(mm("IoCreateDriverProxyExtension"), 0);
}
