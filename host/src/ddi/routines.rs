//! The routines the host kernel exports: the prototype of each as a `PFN_` function-pointer
//! type (every export is checked against its type at compile time) and the export names.
//!
//! The DriverProxy prototypes are the C syntax blocks of `docs/ddi.md#routines`; the others
//! are those of their Microsoft Learn pages (`docs/ddi.md#kernel-routines-resolved-at-run-time`
//! lists them). `extern "system"`: on x64 and ARM64 Windows there is one convention; on this
//! host it is the convention of the `SysV` exports (the Microsoft x64 entry points of
//! `crate::wdm` take the same parameters in the `win64` convention).

use super::nt::{
    ACCESS_MASK, BOOLEAN, EVENT_TYPE, HANDLE, KPRIORITY, KPROCESSOR_MODE, KWAIT_REASON, LONG,
    NTSTATUS, PCLIENT_ID, PDRIVER_OBJECT, PHANDLE, PKEVENT, PKSTART_ROUTINE, PLARGE_INTEGER,
    POBJECT_ATTRIBUTES, POOL_FLAGS, POOL_TYPE, PUNICODE_STRING, PVOID, SIZE_T, ULONG, WAIT_TYPE,
};
use super::proxy::{
    DRIVER_PROXY_ENDPOINT_FUNCTION_ID, DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
    PDRIVER_PROXY_ENDPOINT_FUNCTION, PDRIVER_PROXY_ENDPOINT_INFORMATION, PDRIVER_PROXY_EXTENSION,
    PDRIVER_PROXY_FEATURE_FLAGS, PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    PDRIVER_PROXY_REGISTER_CALLBACK, PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION,
};

/// `KWAIT_BLOCK`: 0x30 bytes on x64 and ARM64, private to the kernel; only its address is
/// passed (the caller's array for waits on more than `THREAD_WAIT_OBJECTS` objects).
#[repr(C)]
pub struct KWAIT_BLOCK {
    _private: [u8; 0],
}
/// `PKWAIT_BLOCK`.
pub type PKWAIT_BLOCK = *mut KWAIT_BLOCK;

// The DriverProxy family (`docs/ddi.md#routines`).

/// `VOID IoGetDriverProxyFeatures(PDRIVER_OBJECT DriverObject, PDRIVER_PROXY_FEATURE_FLAGS
/// Flags);`
pub type PFN_IoGetDriverProxyFeatures =
    unsafe extern "system" fn(DriverObject: PDRIVER_OBJECT, Flags: PDRIVER_PROXY_FEATURE_FLAGS);

/// `NTSTATUS IoCreateDriverProxyExtension(PDRIVER_OBJECT OwningDriverObject,
/// DRIVER_PROXY_EXTENSION_CREATION_FLAGS Flags, PDRIVER_PROXY_EXTENSION *DriverProxyExtension);`
pub type PFN_IoCreateDriverProxyExtension = unsafe extern "system" fn(
    OwningDriverObject: PDRIVER_OBJECT,
    Flags: DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
    DriverProxyExtension: *mut PDRIVER_PROXY_EXTENSION,
) -> NTSTATUS;

/// `PDRIVER_PROXY_EXTENSION IoGetDriverProxyExtensionFromDriverObject(PDRIVER_OBJECT
/// DriverObject);`
pub type PFN_IoGetDriverProxyExtensionFromDriverObject =
    unsafe extern "system" fn(DriverObject: PDRIVER_OBJECT) -> PDRIVER_PROXY_EXTENSION;

/// `NTSTATUS IoRegisterDriverProxyEndpoints(PDRIVER_PROXY_EXTENSION DriverProxyExtension,
/// PDRIVER_PROXY_ENDPOINT_INFORMATION EndpointInfo, ULONG Count, PDRIVER_PROXY_REGISTER_CALLBACK
/// PhasedCallback, PVOID Context);`
pub type PFN_IoRegisterDriverProxyEndpoints = unsafe extern "system" fn(
    DriverProxyExtension: PDRIVER_PROXY_EXTENSION,
    EndpointInfo: PDRIVER_PROXY_ENDPOINT_INFORMATION,
    Count: ULONG,
    PhasedCallback: PDRIVER_PROXY_REGISTER_CALLBACK,
    Context: PVOID,
) -> NTSTATUS;

/// `PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION IoGetDriverProxyEndpointWrapper(
/// PDRIVER_PROXY_EXTENSION DriverProxyExtension, DRIVER_PROXY_ENDPOINT_FUNCTION_ID FunctionId);`
pub type PFN_IoGetDriverProxyEndpointWrapper =
    unsafe extern "system" fn(
        DriverProxyExtension: PDRIVER_PROXY_EXTENSION,
        FunctionId: DRIVER_PROXY_ENDPOINT_FUNCTION_ID,
    ) -> PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION;

/// `NTSTATUS IofGetDriverProxyWrapperFromEndpoint(PDRIVER_PROXY_EXTENSION DriverProxyExtension,
/// PDRIVER_PROXY_ENDPOINT_FUNCTION Endpoint, PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION *Wrapper);`
pub type PFN_IofGetDriverProxyWrapperFromEndpoint = unsafe extern "system" fn(
    DriverProxyExtension: PDRIVER_PROXY_EXTENSION,
    Endpoint: PDRIVER_PROXY_ENDPOINT_FUNCTION,
    Wrapper: *mut PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION,
) -> NTSTATUS;

/// `NTSTATUS IoDriverProxyCreateHotSwappableWorkerThread(PDRIVER_PROXY_EXTENSION
/// DriverProxyExtension, PHANDLE ThreadHandle, ULONG DesiredAccess, POBJECT_ATTRIBUTES
/// ObjectAttributes, HANDLE ProcessHandle, PCLIENT_ID ClientId,
/// PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT WorkerStartContext);`
pub type PFN_IoDriverProxyCreateHotSwappableWorkerThread = unsafe extern "system" fn(
    DriverProxyExtension: PDRIVER_PROXY_EXTENSION,
    ThreadHandle: PHANDLE,
    DesiredAccess: ULONG,
    ObjectAttributes: POBJECT_ATTRIBUTES,
    ProcessHandle: HANDLE,
    ClientId: PCLIENT_ID,
    WorkerStartContext: PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
) -> NTSTATUS;

// The general routines (`docs/ddi.md#kernel-routines-resolved-at-run-time`).

/// `PVOID MmGetSystemRoutineAddress(PUNICODE_STRING SystemRoutineName);`
pub type PFN_MmGetSystemRoutineAddress =
    unsafe extern "system" fn(SystemRoutineName: PUNICODE_STRING) -> PVOID;

/// `VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State);`
pub type PFN_KeInitializeEvent =
    unsafe extern "system" fn(Event: PKEVENT, Type: EVENT_TYPE, State: BOOLEAN);
/// `LONG KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait);`
pub type PFN_KeSetEvent =
    unsafe extern "system" fn(Event: PKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG;
/// `VOID KeClearEvent(PRKEVENT Event);`
pub type PFN_KeClearEvent = unsafe extern "system" fn(Event: PKEVENT);
/// `LONG KeResetEvent(PRKEVENT Event);`
pub type PFN_KeResetEvent = unsafe extern "system" fn(Event: PKEVENT) -> LONG;
/// `LONG KeReadStateEvent(PRKEVENT Event);`
pub type PFN_KeReadStateEvent = unsafe extern "system" fn(Event: PKEVENT) -> LONG;

/// `NTSTATUS KeWaitForMultipleObjects(ULONG Count, PVOID Object[], WAIT_TYPE WaitType,
/// KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER
/// Timeout, PKWAIT_BLOCK WaitBlockArray);`
pub type PFN_KeWaitForMultipleObjects = unsafe extern "system" fn(
    Count: ULONG,
    Object: *mut PVOID,
    WaitType: WAIT_TYPE,
    WaitReason: KWAIT_REASON,
    WaitMode: KPROCESSOR_MODE,
    Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
    WaitBlockArray: PKWAIT_BLOCK,
) -> NTSTATUS;

/// `NTSTATUS PsCreateSystemThread(PHANDLE ThreadHandle, ULONG DesiredAccess,
/// POBJECT_ATTRIBUTES ObjectAttributes, HANDLE ProcessHandle, PCLIENT_ID ClientId,
/// PKSTART_ROUTINE StartRoutine, PVOID StartContext);`
pub type PFN_PsCreateSystemThread = unsafe extern "system" fn(
    ThreadHandle: PHANDLE,
    DesiredAccess: ACCESS_MASK,
    ObjectAttributes: POBJECT_ATTRIBUTES,
    ProcessHandle: HANDLE,
    ClientId: PCLIENT_ID,
    StartRoutine: PKSTART_ROUTINE,
    StartContext: PVOID,
) -> NTSTATUS;

/// `NTSTATUS ZwClose(HANDLE Handle);`
pub type PFN_ZwClose = unsafe extern "system" fn(Handle: HANDLE) -> NTSTATUS;

/// `NTSTATUS ZwWaitForSingleObject(HANDLE Handle, BOOLEAN Alertable, PLARGE_INTEGER Timeout);`
pub type PFN_ZwWaitForSingleObject = unsafe extern "system" fn(
    Handle: HANDLE,
    Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
) -> NTSTATUS;

/// `NTSTATUS IoAllocateDriverObjectExtension(PDRIVER_OBJECT DriverObject, PVOID
/// ClientIdentificationAddress, ULONG DriverObjectExtensionSize, PVOID *DriverObjectExtension);`
pub type PFN_IoAllocateDriverObjectExtension = unsafe extern "system" fn(
    DriverObject: PDRIVER_OBJECT,
    ClientIdentificationAddress: PVOID,
    DriverObjectExtensionSize: ULONG,
    DriverObjectExtension: *mut PVOID,
) -> NTSTATUS;

/// `PVOID IoGetDriverObjectExtension(PDRIVER_OBJECT DriverObject, PVOID
/// ClientIdentificationAddress);`
pub type PFN_IoGetDriverObjectExtension = unsafe extern "system" fn(
    DriverObject: PDRIVER_OBJECT,
    ClientIdentificationAddress: PVOID,
) -> PVOID;

/// `PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);`
pub type PFN_ExAllocatePool2 =
    unsafe extern "system" fn(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
/// `PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);`
pub type PFN_ExAllocatePoolWithTag =
    unsafe extern "system" fn(PoolType: POOL_TYPE, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
/// `VOID ExFreePoolWithTag(PVOID P, ULONG Tag);`
pub type PFN_ExFreePoolWithTag = unsafe extern "system" fn(P: PVOID, Tag: ULONG);

/// Export names, as `ntoskrnl.exe` exports them and `MmGetSystemRoutineAddress` is asked for
/// them.
pub mod names {
    /// The seven documented DriverProxy routines (`docs/ddi.md#summary`).
    pub const DRIVER_PROXY: [&str; 7] = [
        "IoGetDriverProxyFeatures",
        "IoCreateDriverProxyExtension",
        "IoGetDriverProxyExtensionFromDriverObject",
        "IoRegisterDriverProxyEndpoints",
        "IoGetDriverProxyEndpointWrapper",
        "IofGetDriverProxyWrapperFromEndpoint",
        "IoDriverProxyCreateHotSwappableWorkerThread",
    ];

    /// The general routines a driver using the library resolves at run time
    /// (`docs/ddi.md#kernel-routines-resolved-at-run-time`), without `MmGetSystemRoutineAddress`
    /// itself.
    pub const KERNEL: [&str; 14] = [
        "IoAllocateDriverObjectExtension",
        "IoGetDriverObjectExtension",
        "ExAllocatePool2",
        "ExAllocatePoolWithTag",
        "ExFreePoolWithTag",
        "KeInitializeEvent",
        "KeSetEvent",
        "KeClearEvent",
        "KeResetEvent",
        "KeReadStateEvent",
        "ZwWaitForSingleObject",
        "ZwClose",
        "PsCreateSystemThread",
        "KeWaitForMultipleObjects",
    ];

    /// `MmGetSystemRoutineAddress`.
    pub const MM_GET_SYSTEM_ROUTINE_ADDRESS: &str = "MmGetSystemRoutineAddress";
}
