//! The three endpoints: every routine this driver hands to the framework or the kernel,
//! registered in one V1 table and handed out only as wrappers.
//!
//! | id | endpoint | handed out as |
//! |---|---|---|
//! | [`DEVICE_CONTROL`] = 1 | [`evt_io_device_control`] | `EvtIoDeviceControl` of the control device's default queue |
//! | [`DRIVER_UNLOAD`] = 2 | [`evt_driver_unload`] | `EvtDriverUnload` of the `WDFDRIVER` |
//! | [`WORKER`] = 3 | [`worker_routine`] | the hot-swappable worker thread's routine |
//!
//! The ids and parameter counts are `hotswap_sample_core::kmdf::ENDPOINTS` (tested on Linux);
//! the `const` assertions below check that this crate's types have those counts. Nothing
//! else of the driver is reachable from outside: the framework owns the device's
//! `MajorFunction` table and calls these callbacks through the wrappers it was given.

use driver_proxy::{
    Endpoint, EndpointEntry, EndpointId, EndpointTable, HotSwap, LookupError, NtStatus,
    RegisterError, WorkerRef, Wrapped,
};
use hotswap_sample_core::kmdf::{self, BufferKind, DeviceControlRequest, RetrievedBuffer};
use hotswap_sample_core::worker::{SampleWorkerRoutine, WORKER_EVENT_COUNT};
use hotswap_sample_core::worker_routine as core_worker_routine;
use wdk_sys::{
    PFN_WDF_DRIVER_UNLOAD, PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL, PVOID, ULONG, ULONG_PTR, WDFDRIVER,
    WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding,
};

use crate::STATE;

/// `EVT_WDF_IO_QUEUE_IO_DEVICE_CONTROL` as an endpoint type (`extern "system"`, see
/// [`c_abi`]).
pub type EvtIoDeviceControl = unsafe extern "system" fn(WDFQUEUE, WDFREQUEST, usize, usize, ULONG);
/// `EVT_WDF_DRIVER_UNLOAD` as an endpoint type.
pub type EvtDriverUnload = unsafe extern "system" fn(WDFDRIVER);

/// V1 id of `EvtIoDeviceControl`.
pub const DEVICE_CONTROL: EndpointId<EvtIoDeviceControl> = EndpointId::new(kmdf::DEVICE_CONTROL.id);
/// V1 id of `EvtDriverUnload`.
pub const DRIVER_UNLOAD: EndpointId<EvtDriverUnload> = EndpointId::new(kmdf::DRIVER_UNLOAD.id);
/// V1 id of the worker routine.
pub const WORKER: EndpointId<SampleWorkerRoutine> = EndpointId::new(kmdf::WORKER.id);

const _: () = {
    assert!(EvtIoDeviceControl::ARITY == kmdf::DEVICE_CONTROL.parameter_count);
    assert!(EvtDriverUnload::ARITY == kmdf::DRIVER_UNLOAD.parameter_count);
    assert!(SampleWorkerRoutine::ARITY == kmdf::WORKER.parameter_count);
};

/// This image's V1 table.
///
/// # Errors
/// None in practice (the ids are distinct, tested in the core).
pub fn table() -> Result<EndpointTable<3>, RegisterError> {
    EndpointTable::new([
        EndpointEntry::new(DEVICE_CONTROL, evt_io_device_control as EvtIoDeviceControl),
        EndpointEntry::new(DRIVER_UNLOAD, evt_driver_unload as EvtDriverUnload),
        EndpointEntry::new(WORKER, worker_routine as SampleWorkerRoutine),
    ])
}

/// The wrappers (or, where hot-swap is unavailable, the endpoints themselves).
#[derive(Clone, Copy, Debug)]
pub struct Wrappers {
    /// For `WDF_IO_QUEUE_CONFIG` ([`c_abi::device_control`]).
    pub device_control: Wrapped<EvtIoDeviceControl>,
    /// For `WDF_DRIVER_CONFIG` ([`c_abi::driver_unload`]).
    pub unload: Wrapped<EvtDriverUnload>,
    /// For the worker thread builder.
    pub worker: Wrapped<SampleWorkerRoutine>,
}

impl Wrappers {
    /// Looks every wrapper up by id after `table` was registered.
    ///
    /// # Errors
    /// [`LookupError`] when an id has no wrapper.
    pub fn look_up(hotswap: &HotSwap, table: &EndpointTable<3>) -> Result<Self, LookupError> {
        Ok(Self {
            device_control: hotswap.wrapper(table, DEVICE_CONTROL)?,
            unload: hotswap.wrapper(table, DRIVER_UNLOAD)?,
            worker: hotswap.wrapper(table, WORKER)?,
        })
    }
}

/// `wdk-sys` types WDF callbacks `extern "C"`; `driver-proxy` implements `Endpoint` for
/// `extern "system"`. On the targets a driver builds for (x86-64 and ARM64 Windows) they
/// are the same calling convention (Rust distinguishes them only on 32-bit x86), so the
/// wrapper is handed over unchanged, retyped.
pub mod c_abi {
    use super::{
        EvtDriverUnload, EvtIoDeviceControl, PFN_WDF_DRIVER_UNLOAD,
        PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL, Wrapped,
    };

    #[cfg(not(all(windows, any(target_arch = "x86_64", target_arch = "aarch64"))))]
    compile_error!("\"system\" and \"C\" are one convention only on x86-64 and ARM64 Windows");

    /// The wrapper as the framework's `PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL`.
    #[must_use]
    pub fn device_control(
        wrapper: Wrapped<EvtIoDeviceControl>,
    ) -> PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL {
        // SAFETY: same parameter types, same calling convention on this target (module docs);
        // a non-null function pointer becomes `Some`.
        unsafe {
            core::mem::transmute::<EvtIoDeviceControl, PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL>(
                wrapper.get(),
            )
        }
    }

    /// The wrapper as the framework's `PFN_WDF_DRIVER_UNLOAD`.
    #[must_use]
    pub fn driver_unload(wrapper: Wrapped<EvtDriverUnload>) -> PFN_WDF_DRIVER_UNLOAD {
        // SAFETY: as in `device_control`.
        unsafe { core::mem::transmute::<EvtDriverUnload, PFN_WDF_DRIVER_UNLOAD>(wrapper.get()) }
    }
}

/// `EvtIoDeviceControl`: serves one request of the sample's protocol with the core's
/// `serve_device_control` (method check, system buffer from `WdfRequestRetrieve*Buffer`,
/// `dispatch_buffered`) and completes it with `WdfRequestCompleteWithInformation`.
///
/// IRQL: `<= DISPATCH_LEVEL` (a parallel queue without an execution-level constraint).
///
/// # Safety
/// Called by the framework (through the wrapper) with a request it presents to this queue.
pub unsafe extern "system" fn evt_io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    io_control_code: ULONG,
) {
    let parameters = DeviceControlRequest {
        io_control_code,
        input_length,
        output_length,
    };
    let completion = kmdf::serve_device_control(
        &STATE,
        parameters,
        |kind| retrieve(request, kind),
        |located| {
            // SAFETY: `located` is the request's METHOD_BUFFERED system buffer (non-null,
            // max(input, output) bytes, checked by the core), lent by the framework until
            // the request completes, which happens below after the slice's last use.
            unsafe { core::slice::from_raw_parts_mut(located.address.cast::<u8>(), located.length) }
        },
    );
    // SAFETY: the request was presented to us and is completed once, here; it is not touched
    // afterwards.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            completion.status.raw(),
            completion.information as ULONG_PTR
        );
    }
}

/// `WdfRequestRetrieveInputBuffer` or `WdfRequestRetrieveOutputBuffer`, any length.
fn retrieve(request: WDFREQUEST, kind: BufferKind) -> Result<RetrievedBuffer, NtStatus> {
    let mut address: PVOID = core::ptr::null_mut();
    let mut length: usize = 0;
    // SAFETY: a request presented to the running callback; the out pointers are locals.
    let status = unsafe {
        match kind {
            BufferKind::Input => call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request,
                0,
                &raw mut address,
                &raw mut length
            ),
            BufferKind::Output => call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                0,
                &raw mut address,
                &raw mut length
            ),
        }
    };
    NtStatus(status).ok()?;
    Ok(RetrievedBuffer { address, length })
}

/// `EvtDriverUnload`: ends the worker thread, if the driver runs one (takes it back from the
/// shared block and stops and joins it: `crate::shared::stop_worker`). The framework then
/// deletes the control device, its queue and symbolic link (they are its objects), and the
/// I/O manager frees the shared block with the driver object. Whichever image is loaded last
/// runs this, through the same wrapper.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called by the framework (through the wrapper) with this driver's `WDFDRIVER`, once.
pub unsafe extern "system" fn evt_driver_unload(driver: WDFDRIVER) {
    crate::log("unload");
    // SAFETY: our framework driver object, valid during its unload callback.
    let driver_object =
        unsafe { call_unsafe_wdf_function_binding!(WdfDriverWdmGetDriverObject, driver) };
    // SAFETY: our own DRIVER_OBJECT; at unload nothing else touches the block.
    if let Ok(Some(block)) = unsafe { crate::shared::existing(driver_object) } {
        crate::shared::stop_worker(block);
    }
}

/// The hot-swappable worker thread's routine: one wake-up of the core's worker body on this
/// image's state, with the wake-up read by the library (`WorkerRef::wake`: the stop
/// request, the kick event, the timeout). The context's value (`()`) is unused: the library
/// passes the same context for the thread's whole life, across swaps.
///
/// IRQL: `PASSIVE_LEVEL`.
#[allow(
    clippy::must_use_candidate,
    reason = "called by the kernel through its wrapper, never by Rust code"
)]
pub extern "system" fn worker_routine(
    worker: WorkerRef<(), WORKER_EVENT_COUNT>,
    wait_status: NtStatus,
) -> bool {
    core_worker_routine(&STATE, worker.wake(wait_status))
}
