//! The Microsoft x64 entry points of the model kernel (`ntoskrnl.exe`): what a loader binds an
//! image's imports to ([`win64_routine`]) and what the image's `MmGetSystemRoutineAddress`
//! answers ([`MmGetSystemRoutineAddress`]).
//!
//! Every entry point is an `extern "win64"` function (or, for `DbgPrint`, a naked trampoline
//! that follows the convention by hand): it takes its arguments from `rcx`, `rdx`, `r8`, `r9`
//! and the stack, preserves `rsi`, `rdi` and `xmm6`–`xmm15` (the compiler saves them around
//! the `SysV` code it calls), and forwards to the model kernel's implementation. Driver code
//! handed over through these entry points (a phased callback, a worker routine's wrapper, a
//! system thread's start routine) is called back with the Microsoft x64 convention.

#![allow(
    non_snake_case,
    reason = "the entry points and their parameters keep the C names of the DDI"
)]

use std::ffi::c_void;

use driver_proxy::sys;

use super::dbgprint;
use super::io;
use super::memory;
use super::spinlock;
use super::workitem;
use crate::kernel::{
    BugCheck, CallConv, bugcheck, driver_extensions, events, pool, proxy, threads,
};

/// Defines a Microsoft x64 entry point that forwards to the `SysV` export of the same name.
macro_rules! forward {
    ($module:ident :: $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?) => {
        #[doc = concat!(
            "`", stringify!($name), "` for Microsoft x64 callers: forwards to [`crate::kernel::",
            stringify!($module), "::", stringify!($name), "`], whose contract it has.\n\n",
            "# Safety\n", "As [`crate::kernel::", stringify!($module), "::", stringify!($name), "`]."
        )]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "win64" fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: the same contract, forwarded.
            unsafe { $module::$name($($arg),*) }
        }
    };
}

forward!(proxy::IoGetDriverProxyFeatures(
    DriverObject: sys::PDRIVER_OBJECT,
    Flags: *mut sys::DRIVER_PROXY_FEATURE_FLAGS,
));
forward!(proxy::IoCreateDriverProxyExtension(
    OwningDriverObject: sys::PDRIVER_OBJECT,
    Flags: sys::DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
    DriverProxyExtension: *mut sys::PDRIVER_PROXY_EXTENSION,
) -> sys::NTSTATUS);
forward!(proxy::IoGetDriverProxyExtensionFromDriverObject(
    DriverObject: sys::PDRIVER_OBJECT,
) -> sys::PDRIVER_PROXY_EXTENSION);
forward!(proxy::IoGetDriverProxyEndpointWrapper(
    DriverProxyExtension: sys::PDRIVER_PROXY_EXTENSION,
    FunctionId: sys::DRIVER_PROXY_ENDPOINT_FUNCTION_ID,
) -> sys::PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION);
forward!(proxy::IofGetDriverProxyWrapperFromEndpoint(
    DriverProxyExtension: sys::PDRIVER_PROXY_EXTENSION,
    Endpoint: sys::PDRIVER_PROXY_ENDPOINT_FUNCTION,
    Wrapper: *mut sys::PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION,
) -> sys::NTSTATUS);
forward!(events::KeInitializeEvent(
    Event: sys::PKEVENT,
    Type: sys::EVENT_TYPE,
    State: sys::BOOLEAN,
));
forward!(events::KeSetEvent(
    Event: sys::PKEVENT,
    Increment: sys::KPRIORITY,
    Wait: sys::BOOLEAN,
) -> sys::LONG);
forward!(events::KeClearEvent(Event: sys::PKEVENT));
forward!(events::KeResetEvent(Event: sys::PKEVENT) -> sys::LONG);
forward!(events::KeReadStateEvent(Event: sys::PKEVENT) -> sys::LONG);
forward!(events::KeWaitForMultipleObjects(
    Count: sys::ULONG,
    Object: *mut sys::PVOID,
    WaitType: sys::WAIT_TYPE,
    WaitReason: sys::KWAIT_REASON,
    WaitMode: sys::KPROCESSOR_MODE,
    Alertable: sys::BOOLEAN,
    Timeout: *mut sys::LARGE_INTEGER,
    WaitBlockArray: *mut c_void,
) -> sys::NTSTATUS);
forward!(threads::ZwClose(Handle: sys::HANDLE) -> sys::NTSTATUS);
forward!(threads::ZwWaitForSingleObject(
    Handle: sys::HANDLE,
    Alertable: sys::BOOLEAN,
    Timeout: *mut sys::LARGE_INTEGER,
) -> sys::NTSTATUS);
forward!(pool::ExAllocatePool2(
    Flags: sys::POOL_FLAGS,
    NumberOfBytes: usize,
    Tag: sys::ULONG,
) -> sys::PVOID);
forward!(pool::ExAllocatePoolWithTag(
    PoolType: sys::POOL_TYPE,
    NumberOfBytes: usize,
    Tag: sys::ULONG,
) -> sys::PVOID);
forward!(pool::ExFreePoolWithTag(P: sys::PVOID, Tag: sys::ULONG));
forward!(driver_extensions::IoAllocateDriverObjectExtension(
    DriverObject: sys::PDRIVER_OBJECT,
    ClientIdentificationAddress: sys::PVOID,
    DriverObjectExtensionSize: sys::ULONG,
    DriverObjectExtension: *mut sys::PVOID,
) -> sys::NTSTATUS);
forward!(driver_extensions::IoGetDriverObjectExtension(
    DriverObject: sys::PDRIVER_OBJECT,
    ClientIdentificationAddress: sys::PVOID,
) -> sys::PVOID);

/// `IoRegisterDriverProxyEndpoints` for Microsoft x64 callers: as
/// [`crate::kernel::proxy::IoRegisterDriverProxyEndpoints`], and the phased callback is
/// called with the Microsoft x64 convention.
///
/// # Safety
/// As [`crate::kernel::proxy::IoRegisterDriverProxyEndpoints`]; the callback is
/// Microsoft x64 code.
pub unsafe extern "win64" fn IoRegisterDriverProxyEndpoints(
    DriverProxyExtension: sys::PDRIVER_PROXY_EXTENSION,
    EndpointInfo: sys::PDRIVER_PROXY_ENDPOINT_INFORMATION,
    Count: sys::ULONG,
    PhasedCallback: usize,
    Context: sys::PVOID,
) -> sys::NTSTATUS {
    // SAFETY: forwarded caller contract.
    unsafe {
        proxy::register_endpoints(
            DriverProxyExtension,
            EndpointInfo,
            Count,
            (PhasedCallback != 0).then_some(PhasedCallback),
            Context,
            CallConv::Win64,
        )
    }
}

/// `IoDriverProxyCreateHotSwappableWorkerThread` for Microsoft x64 callers: as
/// [`crate::kernel::proxy::IoDriverProxyCreateHotSwappableWorkerThread`], and the thread
/// calls the worker routine's wrapper with the Microsoft x64 convention (the wrapper forwards
/// it untouched to the current implementation).
///
/// # Safety
/// As [`crate::kernel::proxy::IoDriverProxyCreateHotSwappableWorkerThread`]; the routine is
/// Microsoft x64 code.
pub unsafe extern "win64" fn IoDriverProxyCreateHotSwappableWorkerThread(
    DriverProxyExtension: sys::PDRIVER_PROXY_EXTENSION,
    ThreadHandle: sys::PHANDLE,
    DesiredAccess: sys::ACCESS_MASK,
    ObjectAttributes: sys::POBJECT_ATTRIBUTES,
    ProcessHandle: sys::HANDLE,
    ClientId: sys::PCLIENT_ID,
    WorkerStartContext: sys::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
) -> sys::NTSTATUS {
    // SAFETY: forwarded caller contract.
    unsafe {
        proxy::create_worker_thread(
            DriverProxyExtension,
            ThreadHandle,
            DesiredAccess,
            ObjectAttributes,
            ProcessHandle,
            ClientId,
            WorkerStartContext,
            CallConv::Win64,
        )
    }
}

/// `PsCreateSystemThread` for Microsoft x64 callers: as
/// [`crate::kernel::threads::PsCreateSystemThread`], and the start routine is called with the
/// Microsoft x64 convention.
///
/// # Safety
/// As [`crate::kernel::threads::PsCreateSystemThread`]; `StartRoutine` is 0 (refused with
/// `STATUS_INVALID_PARAMETER`) or Microsoft x64 code.
pub unsafe extern "win64" fn PsCreateSystemThread(
    ThreadHandle: sys::PHANDLE,
    DesiredAccess: sys::ACCESS_MASK,
    ObjectAttributes: sys::POBJECT_ATTRIBUTES,
    ProcessHandle: sys::HANDLE,
    ClientId: sys::PCLIENT_ID,
    StartRoutine: usize,
    StartContext: sys::PVOID,
) -> sys::NTSTATUS {
    // SAFETY: forwarded caller contract.
    unsafe {
        threads::create_system_thread(
            ThreadHandle,
            DesiredAccess,
            ObjectAttributes,
            ProcessHandle,
            ClientId,
            StartRoutine,
            StartContext,
            CallConv::Win64,
        )
    }
}

/// `KeBugCheckEx` for Microsoft x64 callers: stops "the machine" (the process) with the
/// driver's code and parameters.
///
/// # Safety
/// None.
pub unsafe extern "win64" fn KeBugCheckEx(
    BugCheckCode: sys::ULONG,
    P1: usize,
    P2: usize,
    P3: usize,
    P4: usize,
) -> ! {
    bugcheck(
        BugCheck::Driver(BugCheckCode),
        "KeBugCheckEx",
        format_args!("parameters {P1:#x} {P2:#x} {P3:#x} {P4:#x}"),
    )
}

/// `MmGetSystemRoutineAddress` for Microsoft x64 callers: the Microsoft x64 entry point of a
/// routine of this table ([`win64_routine`] for `ntoskrnl.exe`), or null for an unknown or
/// hidden ([`crate::hide_export`]) name or a malformed string (decoded as by
/// [`crate::exports::MmGetSystemRoutineAddress`]).
///
/// # Safety
/// `SystemRoutineName` null or a valid `UNICODE_STRING`.
pub unsafe extern "win64" fn MmGetSystemRoutineAddress(
    SystemRoutineName: sys::PUNICODE_STRING,
) -> *mut c_void {
    crate::kernel::irql::require(crate::kernel::irql::PASSIVE, "MmGetSystemRoutineAddress");
    // SAFETY: caller contract.
    unsafe { crate::exports::routine_name(SystemRoutineName) }
        .and_then(|name| win64_routine("ntoskrnl.exe", &name))
        .map_or(std::ptr::null_mut(), |address| address as *mut c_void)
}

/// A Microsoft x64 entry point: its name and address.
struct Entry {
    name: &'static str,
    address: *const (),
}

// SAFETY: function addresses, immutable for the whole process.
unsafe impl Sync for Entry {}

macro_rules! table {
    ($($path:path),* $(,)?) => {
        &[$(Entry {
            name: stringify!($path),
            address: $path as *const (),
        }),*]
    };
}

/// Every entry point, by its C name (the path's last segment).
static ENTRIES: &[Entry] = table![
    IoGetDriverProxyFeatures,
    IoCreateDriverProxyExtension,
    IoGetDriverProxyExtensionFromDriverObject,
    IoRegisterDriverProxyEndpoints,
    IoGetDriverProxyEndpointWrapper,
    IofGetDriverProxyWrapperFromEndpoint,
    IoDriverProxyCreateHotSwappableWorkerThread,
    KeInitializeEvent,
    KeSetEvent,
    KeClearEvent,
    KeResetEvent,
    KeReadStateEvent,
    KeWaitForMultipleObjects,
    PsCreateSystemThread,
    ZwClose,
    ZwWaitForSingleObject,
    ExAllocatePool2,
    ExAllocatePoolWithTag,
    ExFreePoolWithTag,
    IoAllocateDriverObjectExtension,
    IoGetDriverObjectExtension,
    KeBugCheckEx,
    MmGetSystemRoutineAddress,
    io::IoCreateDevice,
    io::IoDeleteDevice,
    io::IoCreateSymbolicLink,
    io::IoDeleteSymbolicLink,
    io::IofCompleteRequest,
    memory::IoAllocateMdl,
    memory::IoFreeMdl,
    memory::MmBuildMdlForNonPagedPool,
    memory::MmProbeAndLockPages,
    memory::MmUnlockPages,
    memory::MmMapLockedPagesSpecifyCache,
    memory::MmUnmapLockedPages,
    memory::ProbeForRead,
    memory::ProbeForWrite,
    workitem::IoAllocateWorkItem,
    workitem::IoQueueWorkItem,
    workitem::IoFreeWorkItem,
    spinlock::KeAcquireSpinLockRaiseToDpc,
    spinlock::KeReleaseSpinLock,
    spinlock::KeAcquireSpinLockAtDpcLevel,
    spinlock::KeReleaseSpinLockFromDpcLevel,
    dbgprint::DbgPrint,
];

/// The C name of an entry.
fn entry_name(entry: &Entry) -> &'static str {
    entry.name.rsplit("::").next().unwrap_or(entry.name).trim()
}

/// The names of every routine [`win64_routine`] knows (for `ntoskrnl.exe`).
#[must_use]
pub fn win64_routine_names() -> Vec<&'static str> {
    ENTRIES.iter().map(entry_name).collect()
}

/// The address of the Microsoft x64 entry point of routine `name` exported by `dll` (only
/// `ntoskrnl.exe` exports anything here; the DLL name is compared without regard to case),
/// or `None`: an unknown DLL or name, or a name hidden with [`crate::hide_export`] (a kernel
/// without that export: a static import of it must fail the load with
/// `STATUS_DRIVER_ENTRYPOINT_NOT_FOUND`, a run-time lookup gets null).
///
/// Imports: `DbgPrint`, `IoCreateDevice`, `IoCreateSymbolicLink`, `IoDeleteDevice`,
/// `IoDeleteSymbolicLink`, `IofCompleteRequest`, `KeBugCheckEx`, `MmGetSystemRoutineAddress`,
/// `ZwClose`, `ZwWaitForSingleObject`; the MDL and probe routines (`IoAllocateMdl`,
/// `IoFreeMdl`, `MmBuildMdlForNonPagedPool`, `MmProbeAndLockPages`, `MmUnlockPages`,
/// `MmMapLockedPagesSpecifyCache`, `MmUnmapLockedPages`, `ProbeForRead`, `ProbeForWrite`);
/// the work-item routines (`IoAllocateWorkItem`, `IoQueueWorkItem`, `IoFreeWorkItem`); the
/// spin locks (`KeAcquireSpinLockRaiseToDpc`, `KeReleaseSpinLock`,
/// `KeAcquireSpinLockAtDpcLevel`, `KeReleaseSpinLockFromDpcLevel`); and every routine the library resolves at run time
/// (the seven DriverProxy routines, the event routines, `KeWaitForMultipleObjects`,
/// `PsCreateSystemThread`, `ExAllocatePool2`, `ExFreePoolWithTag`).
#[must_use]
pub fn win64_routine(dll: &str, name: &str) -> Option<usize> {
    if !dll.eq_ignore_ascii_case("ntoskrnl.exe") || crate::exports::is_hidden(name) {
        return None;
    }
    ENTRIES
        .iter()
        .find(|entry| entry_name(entry) == name)
        .map(|entry| entry.address as usize)
}
