//! The five endpoints: every routine this driver hands to the kernel, registered in one V1
//! table and handed out only as wrappers.
//!
//! | id | endpoint | handed out as | IRQL |
//! |---|---|---|---|
//! | [`CREATE`] = 1 | [`dispatch_create`] | `MajorFunction[IRP_MJ_CREATE]` | `PASSIVE_LEVEL` |
//! | [`CLOSE`] = 2 | [`dispatch_close`] | `MajorFunction[IRP_MJ_CLOSE]` | `PASSIVE_LEVEL` |
//! | [`DEVICE_CONTROL`] = 3 | [`dispatch_device_control`] | `MajorFunction[IRP_MJ_DEVICE_CONTROL]` | `PASSIVE_LEVEL` |
//! | [`UNLOAD`] = 4 | [`driver_unload`] | `DriverUnload` | `PASSIVE_LEVEL` |
//! | [`WORKER`] = 5 | [`worker_routine`] | the hot-swappable worker thread's routine | `PASSIVE_LEVEL` |
//!
//! The ids and signatures are the contract between the versions of the driver: a swap is
//! the incoming image registering the *same ids* with the *same parameter counts*
//! (`IoRegisterDriverProxyEndpoints` refuses a different count with
//! `STATUS_INVALID_PARAMETER_3`), after which every wrapper leads to the incoming image's
//! routine.
//!
//! Each endpoint uses only its own image's state ([`crate::STATE`]) and the device
//! extension; none keeps a pointer into the image it runs in anywhere the other image could
//! find it, except the exporter the device extension publishes on purpose.

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, HotSwap, LookupError, NtStatus, RegisterError,
    WorkerRef, Wrapped,
};
use hotswap_sample_core::worker::{SampleWorkerRoutine, WORKER_EVENT_COUNT};
use hotswap_sample_core::{dispatch_buffered, worker_routine as core_worker_routine};

use crate::STATE;
use crate::device::Device;
use crate::wdm_sys::{
    self, DRIVER_DISPATCH, DRIVER_UNLOAD, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL,
    METHOD_BUFFERED, NTSTATUS, PDEVICE_OBJECT, PDRIVER_OBJECT, PIRP,
};

/// V1 id of the `IRP_MJ_CREATE` dispatch routine.
pub const CREATE: EndpointId<DRIVER_DISPATCH> = EndpointId::new(1);
/// V1 id of the `IRP_MJ_CLOSE` dispatch routine.
pub const CLOSE: EndpointId<DRIVER_DISPATCH> = EndpointId::new(2);
/// V1 id of the `IRP_MJ_DEVICE_CONTROL` dispatch routine.
pub const DEVICE_CONTROL: EndpointId<DRIVER_DISPATCH> = EndpointId::new(3);
/// V1 id of the unload routine.
pub const UNLOAD: EndpointId<DRIVER_UNLOAD> = EndpointId::new(4);
/// V1 id of the worker thread's routine.
pub const WORKER: EndpointId<SampleWorkerRoutine> = EndpointId::new(5);

/// Number of endpoints.
pub const COUNT: usize = 5;

/// Number of endpoints swap mode re-registers: all of them, except in the test image of
/// feature `test-omit-unload-endpoint`, which leaves [`UNLOAD`] out.
pub const SWAP_COUNT: usize = if cfg!(feature = "test-omit-unload-endpoint") {
    COUNT - 1
} else {
    COUNT
};

/// This image's V1 table: every endpoint under its id.
///
/// IRQL: any.
///
/// # Errors
/// None in practice (the ids are distinct); [`RegisterError`] for the table's checks.
pub fn table() -> Result<EndpointTable<COUNT>, RegisterError> {
    EndpointTable::new([
        EndpointEntry::new(CREATE, dispatch_create as DRIVER_DISPATCH),
        EndpointEntry::new(CLOSE, dispatch_close as DRIVER_DISPATCH),
        EndpointEntry::new(DEVICE_CONTROL, dispatch_device_control as DRIVER_DISPATCH),
        EndpointEntry::new(UNLOAD, driver_unload as DRIVER_UNLOAD),
        EndpointEntry::new(WORKER, worker_routine as SampleWorkerRoutine),
    ])
}

/// The table swap mode registers ([`crate::swap::take_over`]): [`table`], except in the
/// **test-only** image of feature `test-omit-unload-endpoint`, where it is the same table
/// without [`UNLOAD`] (ids 1, 2, 3 and 5). That image re-registers only four of the five
/// ids, so after its swap `DriverUnload`'s wrapper still leads to the outgoing image: it
/// exists to test how a loader and the kernel deal with an incomplete swap, never to ship.
///
/// IRQL: any.
///
/// # Errors
/// As [`table`].
pub fn swap_table() -> Result<EndpointTable<SWAP_COUNT>, RegisterError> {
    #[cfg(not(feature = "test-omit-unload-endpoint"))]
    {
        table()
    }
    #[cfg(feature = "test-omit-unload-endpoint")]
    {
        EndpointTable::new([
            EndpointEntry::new(CREATE, dispatch_create as DRIVER_DISPATCH),
            EndpointEntry::new(CLOSE, dispatch_close as DRIVER_DISPATCH),
            EndpointEntry::new(DEVICE_CONTROL, dispatch_device_control as DRIVER_DISPATCH),
            EndpointEntry::new(WORKER, worker_routine as SampleWorkerRoutine),
        ])
    }
}

/// The wrappers of the endpoints: what the driver hands out (or, where hot-swap is
/// unavailable, the endpoints themselves).
#[derive(Clone, Copy, Debug)]
pub struct Wrappers {
    create: Wrapped<DRIVER_DISPATCH>,
    close: Wrapped<DRIVER_DISPATCH>,
    device_control: Wrapped<DRIVER_DISPATCH>,
    unload: Wrapped<DRIVER_UNLOAD>,
    /// The worker routine's wrapper, for the worker thread builder.
    pub worker: Wrapped<SampleWorkerRoutine>,
}

impl Wrappers {
    /// Looks every wrapper up by id (V1) after `table` was registered.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`LookupError`] when an id is not in `table`, has no wrapper, or was registered by
    /// another image of the driver (after the incomplete swap of the test image of feature
    /// `test-omit-unload-endpoint`, [`UNLOAD`] is still the outgoing image's:
    /// `LookupError::RegisteredByAnotherImage`).
    pub fn look_up<const N: usize>(
        hotswap: &HotSwap,
        table: &EndpointTable<N>,
    ) -> Result<Self, LookupError> {
        Ok(Self {
            create: hotswap.wrapper(table, CREATE)?,
            close: hotswap.wrapper(table, CLOSE)?,
            device_control: hotswap.wrapper(table, DEVICE_CONTROL)?,
            unload: hotswap.wrapper(table, UNLOAD)?,
            worker: hotswap.wrapper(table, WORKER)?,
        })
    }

    /// Stores the wrappers in the driver object: `MajorFunction[CREATE, CLOSE,
    /// DEVICE_CONTROL]` and `DriverUnload`. A slot already holding its wrapper is left
    /// untouched (a swap keeps the wrappers: V1 re-registration repoints them).
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Safety
    /// `driver` must be the driver's own `DRIVER_OBJECT`. Before its device exists nothing
    /// else reads these slots; afterwards (a swap), only slots that would change are
    /// written, each with one aligned pointer-sized store.
    pub unsafe fn install(&self, driver: PDRIVER_OBJECT) {
        let dispatch = [
            (IRP_MJ_CREATE, self.create),
            (IRP_MJ_CLOSE, self.close),
            (IRP_MJ_DEVICE_CONTROL, self.device_control),
        ];
        for (major, wrapper) in dispatch {
            // SAFETY: valid driver object (caller contract); `major` is inside the table.
            unsafe {
                let slot = &raw mut (*driver).MajorFunction[major];
                if slot.read().map(|f| f as usize) != Some(wrapper.address()) {
                    slot.write_volatile(Some(wrapper.get()));
                }
            }
        }
        // SAFETY: as above.
        unsafe {
            let slot = &raw mut (*driver).DriverUnload;
            if slot.read().map(|f| f as usize) != Some(self.unload.address()) {
                slot.write_volatile(Some(self.unload.get()));
            }
        }
    }
}

/// `IRP_MJ_CREATE`: opening the device always succeeds.
///
/// IRQL: `PASSIVE_LEVEL` (the opener's thread).
///
/// # Safety
/// Called by the I/O manager (through the wrapper) with a valid IRP it hands over.
pub unsafe extern "system" fn dispatch_create(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager hands us the valid IRP; it is completed once, here.
    unsafe { wdm_sys::complete_request(irp, NtStatus::SUCCESS.raw(), 0) }
}

/// `IRP_MJ_CLOSE`: the last handle was closed; nothing to release.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// As [`dispatch_create`].
pub unsafe extern "system" fn dispatch_close(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: as in dispatch_create.
    unsafe { wdm_sys::complete_request(irp, NtStatus::SUCCESS.raw(), 0) }
}

/// `IRP_MJ_DEVICE_CONTROL`: serves one request of the sample's protocol with the core's
/// [`dispatch_buffered`] on the `METHOD_BUFFERED` system buffer
/// (`AssociatedIrp.SystemBuffer`, `max(InputBufferLength, OutputBufferLength)` bytes) and
/// completes the IRP with the core's status and `Information`. A control code of another
/// transfer method is refused (`STATUS_INVALID_DEVICE_REQUEST`) before any buffer is
/// touched: its buffers are not a system buffer.
///
/// IRQL: `PASSIVE_LEVEL` (the caller's thread; the device is the top of its stack).
///
/// # Safety
/// As [`dispatch_create`].
pub unsafe extern "system" fn dispatch_device_control(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
) -> NTSTATUS {
    // SAFETY: the I/O manager hands us a valid IRP with a current stack location for this
    // device; for IRP_MJ_DEVICE_CONTROL its Parameters are the DeviceIoControl view.
    let (code, input_length, output_length, system_buffer) = unsafe {
        let stack = wdm_sys::current_stack_location(irp);
        let parameters = (*stack).Parameters.DeviceIoControl;
        (
            parameters.IoControlCode,
            parameters.InputBufferLength as usize,
            parameters.OutputBufferLength as usize,
            (*irp).AssociatedIrp.SystemBuffer.cast::<u8>(),
        )
    };
    let completion = if code & 3 == METHOD_BUFFERED {
        let length = input_length.max(output_length);
        let buffer: &mut [u8] = if system_buffer.is_null() || length == 0 {
            &mut []
        } else {
            // SAFETY: for METHOD_BUFFERED the I/O manager allocated the system buffer with
            // max(input, output) bytes, holding the input; it is ours until completion.
            unsafe { core::slice::from_raw_parts_mut(system_buffer, length) }
        };
        // An empty slice with non-zero lengths is refused by the core (buffer lengths).
        dispatch_buffered(&STATE, code, buffer, input_length, output_length)
    } else {
        STATE.record_rejected();
        hotswap_sample_core::Completion::failed(NtStatus::INVALID_DEVICE_REQUEST)
    };
    // SAFETY: the valid IRP is completed once, here, and not touched afterwards.
    unsafe { wdm_sys::complete_request(irp, completion.status.raw(), completion.information) }
}

/// `DriverUnload`: ends the worker thread, if the driver runs one (takes it back from the
/// device extension and stops and joins it: `crate::device::stop_worker`), deletes the
/// symbolic link and the device. Whichever image is loaded last runs it: everything it
/// needs is reached through the driver object and the device extension.
///
/// IRQL: `PASSIVE_LEVEL` (a system thread).
///
/// # Safety
/// Called by the I/O manager (through the wrapper) with the driver's own `DRIVER_OBJECT`,
/// once, when no request can arrive any more.
pub unsafe extern "system" fn driver_unload(driver: PDRIVER_OBJECT) {
    crate::log_version(c"unload");
    // SAFETY: our driver object; at unload nothing else deletes the device.
    match unsafe { Device::existing(driver) } {
        Ok(Some(device)) => {
            crate::device::stop_worker(device.extension());
            device.delete();
        }
        Ok(None) => {}
        Err(_) => {
            // Not our extension (cannot happen): delete the device without touching it.
            // SAFETY: our driver object and, when non-null, the device it created.
            unsafe {
                let raw = (*driver).DeviceObject;
                if !raw.is_null() {
                    wdm_sys::IoDeleteDevice(raw);
                }
            }
        }
    }
}

/// The hot-swappable worker thread's routine: one wake-up of the core's worker body
/// (`hotswap_sample_core::worker_routine`) on this image's state, with the wake-up read by
/// the library (`WorkerRef::wake`: the stop request, the kick event, the timeout). The
/// context's value (`()`) is not used: the library passes the same context for the thread's
/// whole life, across swaps, so the routine must not depend on anything of the image that
/// started the thread.
///
/// IRQL: `PASSIVE_LEVEL` (the worker thread).
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
