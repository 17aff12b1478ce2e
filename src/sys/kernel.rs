//! General kernel routines the safe layer uses, resolved at run time like the DriverProxy
//! ones (so the crate keeps `MmGetSystemRoutineAddress` as its only static import): events
//! for worker threads, driver-object extensions (where the library keeps its endpoint record,
//! which outlives every image of the driver), waiting for and closing a thread, and what the
//! fallback worker
//! thread needs when hot-swap is unavailable (a system thread, a multi-object wait).
//!
//! Pool: `ExAllocatePool2` (Windows 10 2004 and later) where the kernel has it, else the
//! down-level `ExAllocatePoolWithTag` with `NonPagedPoolNx` and zeroing (what Microsoft's own
//! down-level helper `ExAllocatePoolZero` does); `ExFreePoolWithTag` for both.

use core::ffi::c_void;

use super::ntdef::{
    ACCESS_MASK, BOOLEAN, EVENT_TYPE, HANDLE, KPRIORITY, KPROCESSOR_MODE, KWAIT_REASON, LONG,
    NTSTATUS, PCLIENT_ID, PDRIVER_OBJECT, PHANDLE, PKEVENT, POBJECT_ATTRIBUTES, PVOID, ULONG,
    WAIT_TYPE,
};
use super::routines::RoutineName;

/// `KSTART_ROUTINE`: `VOID StartRoutine(PVOID StartContext)`.
pub type PKSTART_ROUTINE = unsafe extern "system" fn(StartContext: PVOID);

/// `VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State)`. IRQL any (storage non-paged).
pub type PFN_KeInitializeEvent =
    unsafe extern "system" fn(Event: PKEVENT, Type: EVENT_TYPE, State: BOOLEAN);
/// `LONG KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait)`. `<= DISPATCH_LEVEL`.
pub type PFN_KeSetEvent =
    unsafe extern "system" fn(Event: PKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG;
/// `VOID KeClearEvent(PRKEVENT Event)`. `<= DISPATCH_LEVEL`.
pub type PFN_KeClearEvent = unsafe extern "system" fn(Event: PKEVENT);
/// `LONG KeResetEvent(PRKEVENT Event)`: clears and returns the previous state. `<= DISPATCH_LEVEL`.
pub type PFN_KeResetEvent = unsafe extern "system" fn(Event: PKEVENT) -> LONG;
/// `LONG KeReadStateEvent(PRKEVENT Event)`: nonzero when signalled. `<= DISPATCH_LEVEL`.
pub type PFN_KeReadStateEvent = unsafe extern "system" fn(Event: PKEVENT) -> LONG;

/// `NTSTATUS KeWaitForMultipleObjects(ULONG Count, PVOID Object[], WAIT_TYPE WaitType,
/// KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Timeout,
/// PKWAIT_BLOCK WaitBlockArray)`. `PASSIVE_LEVEL` (or `<= DISPATCH_LEVEL` with a zero timeout).
/// `WaitBlockArray` may be null for `Count <= THREAD_WAIT_OBJECTS`.
pub type PFN_KeWaitForMultipleObjects = unsafe extern "system" fn(
    Count: ULONG,
    Object: *mut PVOID,
    WaitType: WAIT_TYPE,
    WaitReason: KWAIT_REASON,
    WaitMode: KPROCESSOR_MODE,
    Alertable: BOOLEAN,
    Timeout: *mut super::ntdef::LARGE_INTEGER,
    WaitBlockArray: *mut c_void,
) -> NTSTATUS;

/// `NTSTATUS PsCreateSystemThread(PHANDLE ThreadHandle, ULONG DesiredAccess, POBJECT_ATTRIBUTES
/// ObjectAttributes, HANDLE ProcessHandle, PCLIENT_ID ClientId, PKSTART_ROUTINE StartRoutine,
/// PVOID StartContext)`. `PASSIVE_LEVEL`.
pub type PFN_PsCreateSystemThread = unsafe extern "system" fn(
    ThreadHandle: PHANDLE,
    DesiredAccess: ACCESS_MASK,
    ObjectAttributes: POBJECT_ATTRIBUTES,
    ProcessHandle: HANDLE,
    ClientId: PCLIENT_ID,
    StartRoutine: PKSTART_ROUTINE,
    StartContext: PVOID,
) -> NTSTATUS;

/// `NTSTATUS ZwClose(HANDLE Handle)`. `PASSIVE_LEVEL`.
pub type PFN_ZwClose = unsafe extern "system" fn(Handle: HANDLE) -> NTSTATUS;

/// `NTSTATUS ZwWaitForSingleObject(HANDLE Handle, BOOLEAN Alertable, PLARGE_INTEGER Timeout)`:
/// waits until the object (here: a thread) is signalled. `PASSIVE_LEVEL`.
pub type PFN_ZwWaitForSingleObject = unsafe extern "system" fn(
    Handle: HANDLE,
    Alertable: BOOLEAN,
    Timeout: *mut super::ntdef::LARGE_INTEGER,
) -> NTSTATUS;

/// `NTSTATUS IoAllocateDriverObjectExtension(PDRIVER_OBJECT DriverObject, PVOID
/// ClientIdentificationAddress, ULONG DriverObjectExtensionSize, PVOID
/// *DriverObjectExtension)`: a zero-filled, non-paged block that the I/O manager frees when the
/// driver object is deleted (there is no routine to free it earlier), found again with
/// `IoGetDriverObjectExtension` and the same identification address.
/// `STATUS_OBJECT_NAME_COLLISION` when the address is already used for this driver object,
/// `STATUS_INSUFFICIENT_RESOURCES`. `<= DISPATCH_LEVEL` (Microsoft Learn; this crate calls it at `PASSIVE_LEVEL`).
pub type PFN_IoAllocateDriverObjectExtension = unsafe extern "system" fn(
    DriverObject: PDRIVER_OBJECT,
    ClientIdentificationAddress: PVOID,
    DriverObjectExtensionSize: ULONG,
    DriverObjectExtension: *mut PVOID,
) -> NTSTATUS;

/// `PVOID IoGetDriverObjectExtension(PDRIVER_OBJECT DriverObject, PVOID
/// ClientIdentificationAddress)`: the block allocated under that address, or null. `<= DISPATCH_LEVEL` (Microsoft Learn).
pub type PFN_IoGetDriverObjectExtension = unsafe extern "system" fn(
    DriverObject: PDRIVER_OBJECT,
    ClientIdentificationAddress: PVOID,
) -> PVOID;

/// `POOL_FLAGS`.
pub type POOL_FLAGS = u64;
/// `POOL_FLAG_NON_PAGED`.
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
/// `PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag)`: zeroed memory or null.
/// `<= DISPATCH_LEVEL` for non-paged pool.
pub type PFN_ExAllocatePool2 =
    unsafe extern "system" fn(Flags: POOL_FLAGS, NumberOfBytes: usize, Tag: ULONG) -> PVOID;
/// `POOL_TYPE` (C enum, 4 bytes).
pub type POOL_TYPE = i32;
/// `NonPagedPoolNx`: non-paged, not executable (Windows 8 and later).
pub const NonPagedPoolNx: POOL_TYPE = 512;
/// `PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)`: memory
/// that is *not* zeroed, or null. Deprecated from Windows 10 2004 in favour of
/// `ExAllocatePool2`, and present on every Windows. `<= DISPATCH_LEVEL` for non-paged pool.
pub type PFN_ExAllocatePoolWithTag =
    unsafe extern "system" fn(PoolType: POOL_TYPE, NumberOfBytes: usize, Tag: ULONG) -> PVOID;
/// `VOID ExFreePoolWithTag(PVOID P, ULONG Tag)`. `<= DISPATCH_LEVEL`.
pub type PFN_ExFreePoolWithTag = unsafe extern "system" fn(P: PVOID, Tag: ULONG);

/// Export names of the kernel routines above.
pub mod kernel_names {
    use super::RoutineName;
    /// `KeInitializeEvent`.
    pub const KE_INITIALIZE_EVENT: RoutineName = crate::__routine_name!("KeInitializeEvent");
    /// `KeSetEvent`.
    pub const KE_SET_EVENT: RoutineName = crate::__routine_name!("KeSetEvent");
    /// `KeClearEvent`.
    pub const KE_CLEAR_EVENT: RoutineName = crate::__routine_name!("KeClearEvent");
    /// `KeResetEvent`.
    pub const KE_RESET_EVENT: RoutineName = crate::__routine_name!("KeResetEvent");
    /// `KeReadStateEvent`.
    pub const KE_READ_STATE_EVENT: RoutineName = crate::__routine_name!("KeReadStateEvent");
    /// `KeWaitForMultipleObjects`.
    pub const KE_WAIT_FOR_MULTIPLE_OBJECTS: RoutineName =
        crate::__routine_name!("KeWaitForMultipleObjects");
    /// `PsCreateSystemThread`.
    pub const PS_CREATE_SYSTEM_THREAD: RoutineName = crate::__routine_name!("PsCreateSystemThread");
    /// `ZwClose`.
    pub const ZW_CLOSE: RoutineName = crate::__routine_name!("ZwClose");
    /// `ZwWaitForSingleObject`.
    pub const ZW_WAIT_FOR_SINGLE_OBJECT: RoutineName =
        crate::__routine_name!("ZwWaitForSingleObject");
    /// `IoAllocateDriverObjectExtension`.
    pub const IO_ALLOCATE_DRIVER_OBJECT_EXTENSION: RoutineName =
        crate::__routine_name!("IoAllocateDriverObjectExtension");
    /// `IoGetDriverObjectExtension`.
    pub const IO_GET_DRIVER_OBJECT_EXTENSION: RoutineName =
        crate::__routine_name!("IoGetDriverObjectExtension");
    /// `ExAllocatePool2`.
    pub const EX_ALLOCATE_POOL2: RoutineName = crate::__routine_name!("ExAllocatePool2");
    /// `ExAllocatePoolWithTag`.
    pub const EX_ALLOCATE_POOL_WITH_TAG: RoutineName =
        crate::__routine_name!("ExAllocatePoolWithTag");
    /// `ExFreePoolWithTag`.
    pub const EX_FREE_POOL_WITH_TAG: RoutineName = crate::__routine_name!("ExFreePoolWithTag");
}
