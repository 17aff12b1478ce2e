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
//!
//! Why this module and [`crate::kernel`] are split by calling convention rather than by
//! subject: `crate::kernel` holds the model's implementation of each routine and its `SysV`
//! export (what the library, compiled for this host, links and resolves); this module holds only
//! the Microsoft x64 doors into the same implementations, for code of a `.sys` image. One
//! implementation, two doors; the subjects (events, threads, pool, DriverProxy…) are the
//! modules of `crate::kernel`.

#![allow(
    non_snake_case,
    reason = "the entry points and their parameters keep the C names of the DDI"
)]

use std::ffi::c_void;

use crate::ddi;

use super::dbgprint;
use super::io;
use super::memory;
use super::spinlock;
use super::workitem;
use crate::kernel::{
    BugCheck, CallConv, bugcheck, callback_entry, driver_extensions, events, pool, proxy, threads,
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
    DriverObject: ddi::PDRIVER_OBJECT,
    Flags: ddi::PDRIVER_PROXY_FEATURE_FLAGS,
));
forward!(proxy::IoCreateDriverProxyExtension(
    OwningDriverObject: ddi::PDRIVER_OBJECT,
    Flags: ddi::DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
    DriverProxyExtension: *mut ddi::PDRIVER_PROXY_EXTENSION,
) -> ddi::NTSTATUS);
forward!(proxy::IoGetDriverProxyExtensionFromDriverObject(
    DriverObject: ddi::PDRIVER_OBJECT,
) -> ddi::PDRIVER_PROXY_EXTENSION);
forward!(proxy::IoGetDriverProxyEndpointWrapper(
    DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
    FunctionId: ddi::DRIVER_PROXY_ENDPOINT_FUNCTION_ID,
) -> ddi::PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION);
forward!(proxy::IofGetDriverProxyWrapperFromEndpoint(
    DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
    Endpoint: ddi::PDRIVER_PROXY_ENDPOINT_FUNCTION,
    Wrapper: *mut ddi::PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION,
) -> ddi::NTSTATUS);
forward!(events::KeInitializeEvent(
    Event: ddi::PKEVENT,
    Type: ddi::EVENT_TYPE,
    State: ddi::BOOLEAN,
));
forward!(events::KeSetEvent(
    Event: ddi::PKEVENT,
    Increment: ddi::KPRIORITY,
    Wait: ddi::BOOLEAN,
) -> ddi::LONG);
forward!(events::KeClearEvent(Event: ddi::PKEVENT));
forward!(events::KeResetEvent(Event: ddi::PKEVENT) -> ddi::LONG);
forward!(events::KeReadStateEvent(Event: ddi::PKEVENT) -> ddi::LONG);
forward!(events::KeWaitForMultipleObjects(
    Count: ddi::ULONG,
    Object: *mut ddi::PVOID,
    WaitType: ddi::WAIT_TYPE,
    WaitReason: ddi::KWAIT_REASON,
    WaitMode: ddi::KPROCESSOR_MODE,
    Alertable: ddi::BOOLEAN,
    Timeout: *mut ddi::LARGE_INTEGER,
    WaitBlockArray: ddi::PKWAIT_BLOCK,
) -> ddi::NTSTATUS);
forward!(threads::ZwClose(Handle: ddi::HANDLE) -> ddi::NTSTATUS);
forward!(threads::ZwWaitForSingleObject(
    Handle: ddi::HANDLE,
    Alertable: ddi::BOOLEAN,
    Timeout: *mut ddi::LARGE_INTEGER,
) -> ddi::NTSTATUS);
forward!(pool::ExAllocatePool2(
    Flags: ddi::POOL_FLAGS,
    NumberOfBytes: usize,
    Tag: ddi::ULONG,
) -> ddi::PVOID);
forward!(pool::ExAllocatePoolWithTag(
    PoolType: ddi::POOL_TYPE,
    NumberOfBytes: usize,
    Tag: ddi::ULONG,
) -> ddi::PVOID);
forward!(pool::ExFreePoolWithTag(P: ddi::PVOID, Tag: ddi::ULONG));
forward!(driver_extensions::IoAllocateDriverObjectExtension(
    DriverObject: ddi::PDRIVER_OBJECT,
    ClientIdentificationAddress: ddi::PVOID,
    DriverObjectExtensionSize: ddi::ULONG,
    DriverObjectExtension: *mut ddi::PVOID,
) -> ddi::NTSTATUS);
forward!(driver_extensions::IoGetDriverObjectExtension(
    DriverObject: ddi::PDRIVER_OBJECT,
    ClientIdentificationAddress: ddi::PVOID,
) -> ddi::PVOID);

/// `DRIVER_PROXY_REGISTER_CALLBACK` as code of a `.sys` image.
pub type Win64RegisterCallback = Option<
    unsafe extern "win64" fn(
        Phase: ddi::DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
        Context: ddi::PVOID,
    ) -> ddi::NTSTATUS,
>;
/// `KSTART_ROUTINE` as code of a `.sys` image.
pub type Win64StartRoutine = Option<unsafe extern "win64" fn(StartContext: ddi::PVOID)>;

callback_entry! {
    /// `IoRegisterDriverProxyEndpoints` for Microsoft x64 callers: as
    /// [`crate::kernel::proxy::IoRegisterDriverProxyEndpoints`], and the phased callback is
    /// called with the Microsoft x64 convention.
    ///
    /// # Safety
    /// As [`crate::kernel::proxy::IoRegisterDriverProxyEndpoints`]; the callback is
    /// Microsoft x64 code.
    extern "win64" fn IoRegisterDriverProxyEndpoints(
        DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
        EndpointInfo: ddi::PDRIVER_PROXY_ENDPOINT_INFORMATION,
        Count: ddi::ULONG,
        PhasedCallback: Win64RegisterCallback,
        Context: ddi::PVOID,
    ) -> ddi::NTSTATUS = proxy::register_endpoints, CallConv::Win64;
}

callback_entry! {
    /// `IoDriverProxyCreateHotSwappableWorkerThread` for Microsoft x64 callers: as
    /// [`crate::kernel::proxy::IoDriverProxyCreateHotSwappableWorkerThread`], and the thread
    /// calls the worker routine's wrapper with the Microsoft x64 convention (the wrapper
    /// forwards it untouched to the current implementation).
    ///
    /// # Safety
    /// As [`crate::kernel::proxy::IoDriverProxyCreateHotSwappableWorkerThread`]; the routine is
    /// Microsoft x64 code.
    extern "win64" fn IoDriverProxyCreateHotSwappableWorkerThread(
        DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
        ThreadHandle: ddi::PHANDLE,
        DesiredAccess: ddi::ULONG,
        ObjectAttributes: ddi::POBJECT_ATTRIBUTES,
        ProcessHandle: ddi::HANDLE,
        ClientId: ddi::PCLIENT_ID,
        WorkerStartContext: ddi::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    ) -> ddi::NTSTATUS = proxy::create_worker_thread, CallConv::Win64;
}

callback_entry! {
    /// `PsCreateSystemThread` for Microsoft x64 callers: as
    /// [`crate::kernel::threads::PsCreateSystemThread`], and the start routine is called with
    /// the Microsoft x64 convention.
    ///
    /// # Safety
    /// As [`crate::kernel::threads::PsCreateSystemThread`]; `StartRoutine` is NULL (refused
    /// with `STATUS_INVALID_PARAMETER`) or Microsoft x64 code.
    extern "win64" fn PsCreateSystemThread(
        ThreadHandle: ddi::PHANDLE,
        DesiredAccess: ddi::ACCESS_MASK,
        ObjectAttributes: ddi::POBJECT_ATTRIBUTES,
        ProcessHandle: ddi::HANDLE,
        ClientId: ddi::PCLIENT_ID,
        StartRoutine: Win64StartRoutine,
        StartContext: ddi::PVOID,
    ) -> ddi::NTSTATUS = threads::create_system_thread, CallConv::Win64;
}

/// `KeBugCheckEx` for Microsoft x64 callers: stops "the machine" (the process) with the
/// driver's code and parameters.
///
/// # Safety
/// None.
pub unsafe extern "win64" fn KeBugCheckEx(
    BugCheckCode: ddi::ULONG,
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
    SystemRoutineName: ddi::PUNICODE_STRING,
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
