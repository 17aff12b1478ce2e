//! The documented DriverProxy routines (`docs/ddi.md#routines`): pointer types and
//! export names for run-time resolution, the Rust form of the
//! `IoGetDriverProxyWrapperFromEndpoint` macro, and the crate's single static import.
//!
//! None of the DriverProxy routines is imported statically: a driver that imports an export
//! the running kernel lacks fails to load with `STATUS_DRIVER_ENTRYPOINT_NOT_FOUND`. They are
//! looked up with `MmGetSystemRoutineAddress`, as storport.sys and acpi.sys do.

use core::ffi::c_void;
use core::mem::size_of;

use super::ntdef::{
    ACCESS_MASK, HANDLE, NTSTATUS, PCLIENT_ID, PDRIVER_OBJECT, PHANDLE, POBJECT_ATTRIBUTES,
    PUNICODE_STRING, ULONG,
};
use super::proxy::{
    DRIVER_PROXY_ENDPOINT_FUNCTION_ID, DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
    PDRIVER_PROXY_ENDPOINT_FUNCTION, PDRIVER_PROXY_ENDPOINT_INFORMATION, PDRIVER_PROXY_EXTENSION,
    PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT, PDRIVER_PROXY_REGISTER_CALLBACK,
    PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION,
};

// The one static import. On Windows it comes from ntoskrnl.exe through a raw-dylib import
// (no WDK import library needed). Elsewhere it is left to the link: the host kernel crate
// (`driver-proxy-host`) exports it under the same name.
#[cfg_attr(
    target_os = "windows",
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    /// `PVOID MmGetSystemRoutineAddress(PUNICODE_STRING SystemRoutineName)`: the address of
    /// a kernel (or HAL) export, or null if the running system does not export it.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Safety
    /// `SystemRoutineName` must point to a valid `UNICODE_STRING`; call at `PASSIVE_LEVEL`.
    pub fn MmGetSystemRoutineAddress(SystemRoutineName: PUNICODE_STRING) -> *mut c_void;
}

/// `VOID IoGetDriverProxyFeatures(PDRIVER_OBJECT DriverObject, PDRIVER_PROXY_FEATURE_FLAGS Flags)`.
/// Any IRQL. `DriverObject` may be null ("drivers in general on this system").
pub type PFN_IoGetDriverProxyFeatures = unsafe extern "system" fn(
    DriverObject: PDRIVER_OBJECT,
    Flags: *mut super::proxy::DRIVER_PROXY_FEATURE_FLAGS,
);

/// `NTSTATUS IoCreateDriverProxyExtension(PDRIVER_OBJECT OwningDriverObject,
/// DRIVER_PROXY_EXTENSION_CREATION_FLAGS Flags, PDRIVER_PROXY_EXTENSION *DriverProxyExtension)`.
/// `PASSIVE_LEVEL`.
pub type PFN_IoCreateDriverProxyExtension = unsafe extern "system" fn(
    OwningDriverObject: PDRIVER_OBJECT,
    Flags: DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
    DriverProxyExtension: *mut PDRIVER_PROXY_EXTENSION,
) -> NTSTATUS;

/// `PDRIVER_PROXY_EXTENSION IoGetDriverProxyExtensionFromDriverObject(PDRIVER_OBJECT DriverObject)`.
/// Any IRQL.
pub type PFN_IoGetDriverProxyExtensionFromDriverObject =
    unsafe extern "system" fn(DriverObject: PDRIVER_OBJECT) -> PDRIVER_PROXY_EXTENSION;

/// `NTSTATUS IoRegisterDriverProxyEndpoints(PDRIVER_PROXY_EXTENSION, PDRIVER_PROXY_ENDPOINT_INFORMATION
/// EndpointInfo, ULONG Count, PDRIVER_PROXY_REGISTER_CALLBACK PhasedCallback, PVOID Context)` (V1).
/// `PASSIVE_LEVEL`.
pub type PFN_IoRegisterDriverProxyEndpoints = unsafe extern "system" fn(
    DriverProxyExtension: PDRIVER_PROXY_EXTENSION,
    EndpointInfo: PDRIVER_PROXY_ENDPOINT_INFORMATION,
    Count: ULONG,
    PhasedCallback: PDRIVER_PROXY_REGISTER_CALLBACK,
    Context: *mut c_void,
) -> NTSTATUS;

/// `PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION IoGetDriverProxyEndpointWrapper(PDRIVER_PROXY_EXTENSION,
/// DRIVER_PROXY_ENDPOINT_FUNCTION_ID FunctionId)` (V1, deprecated). Any IRQL.
pub type PFN_IoGetDriverProxyEndpointWrapper =
    unsafe extern "system" fn(
        DriverProxyExtension: PDRIVER_PROXY_EXTENSION,
        FunctionId: DRIVER_PROXY_ENDPOINT_FUNCTION_ID,
    ) -> PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION;

/// `NTSTATUS IofGetDriverProxyWrapperFromEndpoint(PDRIVER_PROXY_EXTENSION, PDRIVER_PROXY_ENDPOINT_FUNCTION
/// Endpoint, PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION *Wrapper)` (V2). Any IRQL.
pub type PFN_IofGetDriverProxyWrapperFromEndpoint = unsafe extern "system" fn(
    DriverProxyExtension: PDRIVER_PROXY_EXTENSION,
    Endpoint: PDRIVER_PROXY_ENDPOINT_FUNCTION,
    Wrapper: *mut PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION,
) -> NTSTATUS;

/// `NTSTATUS IoDriverProxyCreateHotSwappableWorkerThread(PDRIVER_PROXY_EXTENSION, PHANDLE ThreadHandle,
/// ULONG DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes, HANDLE ProcessHandle, PCLIENT_ID ClientId,
/// PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT WorkerStartContext)`. `PASSIVE_LEVEL`.
pub type PFN_IoDriverProxyCreateHotSwappableWorkerThread = unsafe extern "system" fn(
    DriverProxyExtension: PDRIVER_PROXY_EXTENSION,
    ThreadHandle: PHANDLE,
    DesiredAccess: ACCESS_MASK,
    ObjectAttributes: POBJECT_ATTRIBUTES,
    ProcessHandle: HANDLE,
    ClientId: PCLIENT_ID,
    WorkerStartContext: PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
) -> NTSTATUS;

/// `IoGetDriverProxyWrapperFromEndpoint(DriverProxyExtension, Endpoint, Wrapper)`: the C macro
/// over `IofGetDriverProxyWrapperFromEndpoint` "with automatic type casting", for an endpoint of
/// any function-pointer type `F`. Its exact C expansion is UNCONFIRMED; this is the consistent
/// reconstruction (cast the endpoint in, cast the wrapper out, evaluate to the `NTSTATUS`).
///
/// IRQL: any.
///
/// # Safety
/// `iof` must be the kernel's `IofGetDriverProxyWrapperFromEndpoint`; `extension` a live
/// extension; `F` a function-pointer type (pointer-sized, never null); `wrapper` valid for a
/// write of `Option<F>`. On failure `*wrapper` is `None`.
pub unsafe fn IoGetDriverProxyWrapperFromEndpoint<F: Copy>(
    iof: PFN_IofGetDriverProxyWrapperFromEndpoint,
    extension: PDRIVER_PROXY_EXTENSION,
    endpoint: F,
    wrapper: *mut Option<F>,
) -> NTSTATUS {
    const { assert!(size_of::<F>() == size_of::<PDRIVER_PROXY_ENDPOINT_FUNCTION>()) };
    // SAFETY: F is a function-pointer type of pointer size (caller contract + the assertion),
    // so it has the same representation as the type-erased endpoint pointer.
    let erased: PDRIVER_PROXY_ENDPOINT_FUNCTION = unsafe { core::mem::transmute_copy(&endpoint) };
    let mut out: PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION = None;
    // SAFETY: the caller guarantees `iof` and `extension`; `out` is a valid local.
    let status = unsafe { iof(extension, erased, &raw mut out) };
    // SAFETY: `Option<fn>` of any signature has the same size and null niche as `out`'s type;
    // the wrapper forwards calls of the endpoint's own signature. `wrapper` is valid (caller).
    unsafe { wrapper.write(core::mem::transmute_copy::<_, Option<F>>(&out)) };
    status
}

/// An export name, in ASCII (for messages) and UTF-16 (for `MmGetSystemRoutineAddress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutineName {
    /// The name as written in C.
    pub ascii: &'static str,
    /// The same name in UTF-16, without a terminating NUL.
    pub utf16: &'static [u16],
}

/// Converts an ASCII routine name to UTF-16 at compile time.
///
/// IRQL: any.
///
/// # Panics
/// At compile time, if `N` is not the name's length or the name is not ASCII.
#[must_use]
pub const fn ascii_to_utf16<const N: usize>(ascii: &str) -> [u16; N] {
    let bytes = ascii.as_bytes();
    assert!(bytes.len() == N, "length mismatch");
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(bytes[i].is_ascii(), "routine names are ASCII");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

/// Declares a [`RoutineName`] constant for an export.
#[macro_export]
#[doc(hidden)]
macro_rules! __routine_name {
    ($name:literal) => {
        $crate::sys::RoutineName {
            ascii: $name,
            utf16: &$crate::sys::ascii_to_utf16::<{ $name.len() }>($name),
        }
    };
}

/// Export names of the seven documented DriverProxy routines.
pub mod names {
    use super::RoutineName;
    /// `IoGetDriverProxyFeatures`.
    pub const IO_GET_DRIVER_PROXY_FEATURES: RoutineName =
        crate::__routine_name!("IoGetDriverProxyFeatures");
    /// `IoCreateDriverProxyExtension`.
    pub const IO_CREATE_DRIVER_PROXY_EXTENSION: RoutineName =
        crate::__routine_name!("IoCreateDriverProxyExtension");
    /// `IoGetDriverProxyExtensionFromDriverObject`.
    pub const IO_GET_DRIVER_PROXY_EXTENSION_FROM_DRIVER_OBJECT: RoutineName =
        crate::__routine_name!("IoGetDriverProxyExtensionFromDriverObject");
    /// `IoRegisterDriverProxyEndpoints`.
    pub const IO_REGISTER_DRIVER_PROXY_ENDPOINTS: RoutineName =
        crate::__routine_name!("IoRegisterDriverProxyEndpoints");
    /// `IoGetDriverProxyEndpointWrapper`.
    pub const IO_GET_DRIVER_PROXY_ENDPOINT_WRAPPER: RoutineName =
        crate::__routine_name!("IoGetDriverProxyEndpointWrapper");
    /// `IofGetDriverProxyWrapperFromEndpoint`.
    pub const IOF_GET_DRIVER_PROXY_WRAPPER_FROM_ENDPOINT: RoutineName =
        crate::__routine_name!("IofGetDriverProxyWrapperFromEndpoint");
    /// `IoDriverProxyCreateHotSwappableWorkerThread`.
    pub const IO_DRIVER_PROXY_CREATE_HOT_SWAPPABLE_WORKER_THREAD: RoutineName =
        crate::__routine_name!("IoDriverProxyCreateHotSwappableWorkerThread");
}
