//! The seven documented DriverProxy routines, exported by their C names. Each is a thin shim
//! that validates pointers and hands over to `super::extension`; the policies are in the
//! module docs of [`super`].

use crate::ddi;

use super::extension::{self, DriverFeatures, Extension, KERNEL};
use super::{BugCheck, CallConv, bugcheck, lock};
use crate::engine::Phase;

/// `VOID IoGetDriverProxyFeatures(PDRIVER_OBJECT DriverObject, PDRIVER_PROXY_FEATURE_FLAGS
/// Flags)`: writes the whole `ULONG`, `Enabled` (bit 0) set when DriverProxy can be used
/// system-wide (null `DriverObject`) or by that driver (system-wide *and* the driver's
/// features are [`DriverFeatures::Enabled`]); reserved bits are 0.
///
/// Bugchecks for a null `Flags`.
///
/// # Safety
/// `Flags` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoGetDriverProxyFeatures(
    DriverObject: ddi::PDRIVER_OBJECT,
    Flags: ddi::PDRIVER_PROXY_FEATURE_FLAGS,
) {
    if Flags.is_null() {
        bugcheck(
            BugCheck::DriverProxyViolation,
            "IoGetDriverProxyFeatures",
            format_args!("Flags is null"),
        );
    }
    let enabled = extension::system_available()
        && (DriverObject.is_null()
            || lock(&KERNEL)
                .drivers
                .get(&(DriverObject as usize))
                .map_or(DriverFeatures::Enabled, |r| r.features)
                == DriverFeatures::Enabled);
    // SAFETY: caller contract: writable (checked non-null).
    unsafe {
        Flags.write(ddi::DRIVER_PROXY_FEATURE_FLAGS {
            Bits: ddi::DRIVER_PROXY_FEATURE_FLAGS_BITS::new(enabled),
        });
    }
}

/// `NTSTATUS IoCreateDriverProxyExtension(PDRIVER_OBJECT OwningDriverObject,
/// DRIVER_PROXY_EXTENSION_CREATION_FLAGS Flags, PDRIVER_PROXY_EXTENSION *DriverProxyExtension)`.
/// See the module docs of [`super`] for every status and the order of the checks. On failure
/// `*DriverProxyExtension` is not written.
///
/// # Safety
/// `DriverProxyExtension` null or writable; `OwningDriverObject` null or a driver object.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoCreateDriverProxyExtension(
    OwningDriverObject: ddi::PDRIVER_OBJECT,
    Flags: ddi::DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
    DriverProxyExtension: *mut ddi::PDRIVER_PROXY_EXTENSION,
) -> ddi::NTSTATUS {
    super::irql::require(super::irql::PASSIVE, "IoCreateDriverProxyExtension");
    if DriverProxyExtension.is_null() || OwningDriverObject.is_null() || Flags.as_ulong() != 0 {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    let driver = OwningDriverObject as usize;
    let mut kernel = lock(&KERNEL);
    let record = kernel.drivers.entry(driver).or_default();
    if !extension::system_available() {
        return ddi::STATUS_NOT_SUPPORTED;
    }
    match record.features {
        DriverFeatures::Enabled => {}
        DriverFeatures::Disabled => return ddi::STATUS_NOT_SUPPORTED,
        DriverFeatures::Blocked => return ddi::STATUS_DRIVER_BLOCKED,
    }
    if record.extension.is_some() {
        return ddi::STATUS_RESOURCE_IN_USE;
    }
    if let Some(status) = record.create_failure.take() {
        return status;
    }
    if !record.charge(1 + record.image.len()) {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    let created = match Extension::create(driver, record) {
        Ok(created) => created,
        Err(status) => return status,
    };
    let handle = created.handle();
    record.image.clear();
    record.extension = Some(created.clone());
    kernel.extensions.insert(handle as usize, created);
    drop(kernel);
    // SAFETY: caller contract: writable (checked non-null).
    unsafe { DriverProxyExtension.write(handle) };
    ddi::STATUS_SUCCESS
}

/// `PDRIVER_PROXY_EXTENSION IoGetDriverProxyExtensionFromDriverObject(PDRIVER_OBJECT
/// DriverObject)`: the extension the driver object owns, or NULL (also for a null driver
/// object).
///
/// # Safety
/// None beyond the C contract.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoGetDriverProxyExtensionFromDriverObject(
    DriverObject: ddi::PDRIVER_OBJECT,
) -> ddi::PDRIVER_PROXY_EXTENSION {
    lock(&KERNEL)
        .drivers
        .get(&(DriverObject as usize))
        .and_then(|r| r.extension.as_ref())
        .map_or(std::ptr::null_mut(), Extension::handle)
}

super::callback_entry! {
    /// `NTSTATUS IoRegisterDriverProxyEndpoints(PDRIVER_PROXY_EXTENSION DriverProxyExtension,
    /// PDRIVER_PROXY_ENDPOINT_INFORMATION EndpointInfo, ULONG Count, PDRIVER_PROXY_REGISTER_CALLBACK
    /// PhasedCallback, PVOID Context)` (V1). See the module docs of [`super`]. The array is only
    /// read.
    ///
    /// # Safety
    /// `EndpointInfo` null or `Count` readable entries; `DriverProxyExtension` null or a live
    /// extension; `PhasedCallback`, if given, callable with `Context` during the call.
    #[unsafe(no_mangle)]
    extern "system" fn IoRegisterDriverProxyEndpoints(
        DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
        EndpointInfo: ddi::PDRIVER_PROXY_ENDPOINT_INFORMATION,
        Count: ddi::ULONG,
        PhasedCallback: ddi::PDRIVER_PROXY_REGISTER_CALLBACK,
        Context: ddi::PVOID,
    ) -> ddi::NTSTATUS = register_endpoints, CallConv::System;
}

/// `IoRegisterDriverProxyEndpoints` for either convention: `PhasedCallback` is the phased
/// callback as the entry point's convention types it (NULL allowed), called with `conv`.
///
/// # Safety
/// As [`IoRegisterDriverProxyEndpoints`]; `C` is a nullable function-pointer type and
/// `PhasedCallback`, if not NULL, code of the type `DRIVER_PROXY_REGISTER_CALLBACK` in the
/// convention `conv`.
pub(crate) unsafe fn register_endpoints<C: Copy>(
    DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
    EndpointInfo: ddi::PDRIVER_PROXY_ENDPOINT_INFORMATION,
    Count: ddi::ULONG,
    PhasedCallback: C,
    Context: ddi::PVOID,
    conv: CallConv,
) -> ddi::NTSTATUS {
    super::irql::require(super::irql::PASSIVE, "IoRegisterDriverProxyEndpoints");
    // SAFETY: caller contract: a nullable function pointer.
    let callback = unsafe { super::code_address(PhasedCallback) };
    let callback = (callback != 0).then_some(callback);
    let Some(extension) =
        extension::resolve(DriverProxyExtension, "IoRegisterDriverProxyEndpoints")
    else {
        return ddi::STATUS_INVALID_PARAMETER;
    };
    if EndpointInfo.is_null() || Count == 0 {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    // SAFETY: caller contract: `Count` readable entries.
    let entries: Vec<(u32, usize, u32)> =
        unsafe { std::slice::from_raw_parts(EndpointInfo, Count as usize) }
            .iter()
            .map(|e| {
                (
                    e.Id,
                    e.EndpointFunction.map_or(0, |f| f as usize),
                    e.ParameterCount,
                )
            })
            .collect();
    let mut forward = callback.map(|callback| {
        move |phase: Phase| {
            // SAFETY: caller contract: the callback is code of this type in convention `conv`,
            // callable with its context during the registration.
            unsafe { call_phased_callback(callback, conv, phase.as_raw(), Context) }
        }
    });
    let callback = forward
        .as_mut()
        .map(|f| f as &mut dyn FnMut(Phase) -> ddi::NTSTATUS);
    match extension.register(&entries, callback) {
        Ok(()) => ddi::STATUS_SUCCESS,
        Err(status) => status,
    }
}

/// Calls a phased callback at `address` with the convention `conv`.
///
/// # Safety
/// `address` is a `DRIVER_PROXY_REGISTER_CALLBACK` in the convention `conv`.
unsafe fn call_phased_callback(
    address: usize,
    conv: CallConv,
    phase: ddi::DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
    context: ddi::PVOID,
) -> ddi::NTSTATUS {
    match conv {
        CallConv::System => {
            // SAFETY: caller contract: code of this type and convention.
            let f = unsafe {
                core::mem::transmute::<usize, ddi::DRIVER_PROXY_REGISTER_CALLBACK>(address)
            };
            // SAFETY: caller contract.
            unsafe { f(phase, context) }
        }
        #[cfg(target_arch = "x86_64")]
        CallConv::Win64 => {
            type Win64Callback = unsafe extern "win64" fn(
                ddi::DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
                ddi::PVOID,
            ) -> ddi::NTSTATUS;
            // SAFETY: caller contract: code of this type and convention.
            let f = unsafe { core::mem::transmute::<usize, Win64Callback>(address) };
            // SAFETY: caller contract.
            unsafe { f(phase, context) }
        }
    }
}

/// `PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION IoGetDriverProxyEndpointWrapper(PDRIVER_PROXY_EXTENSION
/// DriverProxyExtension, DRIVER_PROXY_ENDPOINT_FUNCTION_ID FunctionId)` (V1): the wrapper of
/// the endpoint registered under `FunctionId`; NULL for an unknown id or a null extension.
///
/// # Safety
/// `DriverProxyExtension` null or a live extension.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoGetDriverProxyEndpointWrapper(
    DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
    FunctionId: ddi::DRIVER_PROXY_ENDPOINT_FUNCTION_ID,
) -> ddi::PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION {
    let address = extension::resolve(DriverProxyExtension, "IoGetDriverProxyEndpointWrapper")
        .and_then(|e| e.wrapper(extension::EndpointKey::Id(FunctionId)));
    // SAFETY: a wrapper address is code callable with the endpoint's own signature; the
    // type-erased function type is only a carrier for it.
    address
        .map(|a| unsafe { core::mem::transmute::<usize, ddi::DRIVER_PROXY_ENDPOINT_FUNCTION>(a) })
}

/// `NTSTATUS IofGetDriverProxyWrapperFromEndpoint(PDRIVER_PROXY_EXTENSION DriverProxyExtension,
/// PDRIVER_PROXY_ENDPOINT_FUNCTION Endpoint, PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION *Wrapper)`
/// (V2): `STATUS_SUCCESS` with the wrapper of the endpoint whose *current* implementation is
/// `Endpoint`; `STATUS_NOT_FOUND` otherwise; `STATUS_INVALID_PARAMETER` for a null extension,
/// endpoint or `Wrapper`. On every failure a non-null `*Wrapper` is set to NULL.
///
/// # Safety
/// `Wrapper` null or writable; `DriverProxyExtension` null or a live extension.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IofGetDriverProxyWrapperFromEndpoint(
    DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
    Endpoint: ddi::PDRIVER_PROXY_ENDPOINT_FUNCTION,
    Wrapper: *mut ddi::PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION,
) -> ddi::NTSTATUS {
    if Wrapper.is_null() {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    let extension =
        extension::resolve(DriverProxyExtension, "IofGetDriverProxyWrapperFromEndpoint");
    let (status, found) = match (extension, Endpoint) {
        (Some(extension), Some(endpoint)) => match extension.wrapper_of(endpoint as usize) {
            Some(address) => (ddi::STATUS_SUCCESS, Some(address)),
            None => (ddi::STATUS_NOT_FOUND, None),
        },
        _ => (ddi::STATUS_INVALID_PARAMETER, None),
    };
    // SAFETY: a wrapper address is code callable with the endpoint's own signature.
    let found = found
        .map(|a| unsafe { core::mem::transmute::<usize, ddi::DRIVER_PROXY_ENDPOINT_FUNCTION>(a) });
    // SAFETY: caller contract: writable (checked non-null).
    unsafe { Wrapper.write(found) };
    status
}

super::callback_entry! {
    /// `NTSTATUS IoDriverProxyCreateHotSwappableWorkerThread(PDRIVER_PROXY_EXTENSION, PHANDLE
    /// ThreadHandle, ULONG DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes, HANDLE ProcessHandle,
    /// PCLIENT_ID ClientId, PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT WorkerStartContext)`.
    /// See `super::worker` and the module docs of [`super`]. The thread calls the worker
    /// routine (a wrapper) as `extern "system"` code.
    ///
    /// # Safety
    /// As `PsCreateSystemThread`; `WorkerStartContext` null or a readable start context with
    /// `EventCount` events (it is copied); the events and `Context` valid for the thread's life.
    #[unsafe(no_mangle)]
    extern "system" fn IoDriverProxyCreateHotSwappableWorkerThread(
        DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
        ThreadHandle: ddi::PHANDLE,
        DesiredAccess: ddi::ULONG,
        ObjectAttributes: ddi::POBJECT_ATTRIBUTES,
        ProcessHandle: ddi::HANDLE,
        ClientId: ddi::PCLIENT_ID,
        WorkerStartContext: ddi::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    ) -> ddi::NTSTATUS = create_worker_thread, CallConv::System;
}

/// `IoDriverProxyCreateHotSwappableWorkerThread` for either convention: the thread calls the
/// worker routine (a wrapper) with `conv`.
///
/// # Safety
/// As [`IoDriverProxyCreateHotSwappableWorkerThread`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn create_worker_thread(
    DriverProxyExtension: ddi::PDRIVER_PROXY_EXTENSION,
    ThreadHandle: ddi::PHANDLE,
    DesiredAccess: ddi::ULONG,
    ObjectAttributes: ddi::POBJECT_ATTRIBUTES,
    ProcessHandle: ddi::HANDLE,
    ClientId: ddi::PCLIENT_ID,
    WorkerStartContext: ddi::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    conv: CallConv,
) -> ddi::NTSTATUS {
    super::irql::require(
        super::irql::PASSIVE,
        "IoDriverProxyCreateHotSwappableWorkerThread",
    );
    let _ = DesiredAccess;
    let Some(extension) = extension::resolve(
        DriverProxyExtension,
        "IoDriverProxyCreateHotSwappableWorkerThread",
    ) else {
        return ddi::STATUS_INVALID_PARAMETER;
    };
    // SAFETY: forwarded caller contract.
    unsafe {
        super::worker::create(
            &extension,
            ThreadHandle,
            ObjectAttributes,
            ProcessHandle,
            ClientId,
            WorkerStartContext,
            conv,
        )
    }
}

// Every export has exactly the type of its prototype (the library resolves it as its own
// reading of the same prototype: `host/tests/ddi_readings.rs` compares the two).
const _: ddi::PFN_IoGetDriverProxyFeatures = IoGetDriverProxyFeatures;
const _: ddi::PFN_IoCreateDriverProxyExtension = IoCreateDriverProxyExtension;
const _: ddi::PFN_IoGetDriverProxyExtensionFromDriverObject =
    IoGetDriverProxyExtensionFromDriverObject;
const _: ddi::PFN_IoRegisterDriverProxyEndpoints = IoRegisterDriverProxyEndpoints;
const _: ddi::PFN_IoGetDriverProxyEndpointWrapper = IoGetDriverProxyEndpointWrapper;
const _: ddi::PFN_IofGetDriverProxyWrapperFromEndpoint = IofGetDriverProxyWrapperFromEndpoint;
const _: ddi::PFN_IoDriverProxyCreateHotSwappableWorkerThread =
    IoDriverProxyCreateHotSwappableWorkerThread;
