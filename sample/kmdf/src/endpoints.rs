//! The six endpoints: every routine this driver hands to the framework or the kernel,
//! registered in one V1 table and handed out only as wrappers.
//!
//! | id | endpoint | handed out as |
//! |---|---|---|
//! | [`DEVICE_CONTROL`] = 1 | [`crate::queue::evt_io_device_control`] | `EvtIoDeviceControl` of the device's default queue |
//! | [`DRIVER_UNLOAD`] = 2 | [`crate::driver::evt_driver_unload`] | `EvtDriverUnload` of the `WDFDRIVER` |
//! | [`WORKER`] = 3 | [`crate::device::worker_routine`] | the hot-swappable worker thread's routine (started in `EvtDeviceD0Entry`) |
//! | [`DEVICE_ADD`] = 4 | [`crate::device::evt_driver_device_add`] | `EvtDriverDeviceAdd` of the `WDFDRIVER` |
//! | [`D0_ENTRY`] = 5 | [`crate::device::evt_device_d0_entry`] | `EvtDeviceD0Entry` of the device |
//! | [`D0_EXIT`] = 6 | [`crate::device::evt_device_d0_exit`] | `EvtDeviceD0Exit` of the device |
//!
//! The ids and parameter counts are `hotswap_sample_core::pnp::ENDPOINTS` (tested on Linux);
//! the `const` assertions below check that this crate's types have those counts, and that
//! each type, retyped for the framework, is exactly the `wdk-sys` callback type it is stored
//! as ([`crate::abi`]). Nothing else of the driver is reachable from outside: the framework
//! owns the device's `MajorFunction` table and calls these callbacks through the wrappers it
//! was given.
//!
//! Every image looks its wrappers up itself ([`this_image`]): `DriverEntry` after registering
//! the table (first load, or the re-registration of a swap), and the callbacks that hand out
//! more wrappers (`EvtDriverDeviceAdd`, `EvtDeviceD0Entry`) from the driver object, so that
//! after a swap they hand out the wrappers the incoming image registered.

use driver_proxy::{
    DriverObject, Endpoint, EndpointEntry, EndpointId, EndpointTable, HotSwap, LookupError,
    NtStatus, RegisterError, Wrapped,
};
use hotswap_sample_core::pnp;
use hotswap_sample_core::worker::SampleWorkerRoutine;
use wdk_sys::{
    NTSTATUS, PDRIVER_OBJECT, PFN_WDF_DEVICE_D0_ENTRY, PFN_WDF_DEVICE_D0_EXIT,
    PFN_WDF_DRIVER_DEVICE_ADD, PFN_WDF_DRIVER_UNLOAD, PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
    PWDFDEVICE_INIT, ULONG, WDF_POWER_DEVICE_STATE, WDFDEVICE, WDFDRIVER, WDFQUEUE, WDFREQUEST,
};

use crate::abi::{ToC, same_type};
use crate::{device, driver, queue};

/// `EVT_WDF_IO_QUEUE_IO_DEVICE_CONTROL` as an endpoint type.
pub type EvtIoDeviceControl = unsafe extern "system" fn(WDFQUEUE, WDFREQUEST, usize, usize, ULONG);
/// `EVT_WDF_DRIVER_UNLOAD` as an endpoint type.
pub type EvtDriverUnload = unsafe extern "system" fn(WDFDRIVER);
/// `EVT_WDF_DRIVER_DEVICE_ADD` as an endpoint type.
pub type EvtDriverDeviceAdd = unsafe extern "system" fn(WDFDRIVER, PWDFDEVICE_INIT) -> NTSTATUS;
/// `EVT_WDF_DEVICE_D0_ENTRY` and `EVT_WDF_DEVICE_D0_EXIT` as an endpoint type (the same
/// signature: the device and a power state).
pub type EvtDeviceD0 = unsafe extern "system" fn(WDFDEVICE, WDF_POWER_DEVICE_STATE) -> NTSTATUS;

// Retyped for the framework, each endpoint type is exactly the wdk-sys callback type it is
// stored as (crate::abi): a wdk-sys that declares another signature fails to compile here.
const _: () = {
    same_type::<Option<<EvtIoDeviceControl as ToC>::C>, PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL>();
    same_type::<Option<<EvtDriverUnload as ToC>::C>, PFN_WDF_DRIVER_UNLOAD>();
    same_type::<Option<<EvtDriverDeviceAdd as ToC>::C>, PFN_WDF_DRIVER_DEVICE_ADD>();
    same_type::<Option<<EvtDeviceD0 as ToC>::C>, PFN_WDF_DEVICE_D0_ENTRY>();
    same_type::<Option<<EvtDeviceD0 as ToC>::C>, PFN_WDF_DEVICE_D0_EXIT>();
};

/// V1 id of `EvtIoDeviceControl`.
pub const DEVICE_CONTROL: EndpointId<EvtIoDeviceControl> = EndpointId::new(pnp::DEVICE_CONTROL.id);
/// V1 id of `EvtDriverUnload`.
pub const DRIVER_UNLOAD: EndpointId<EvtDriverUnload> = EndpointId::new(pnp::DRIVER_UNLOAD.id);
/// V1 id of the worker routine.
pub const WORKER: EndpointId<SampleWorkerRoutine> = EndpointId::new(pnp::WORKER.id);
/// V1 id of `EvtDriverDeviceAdd`.
pub const DEVICE_ADD: EndpointId<EvtDriverDeviceAdd> = EndpointId::new(pnp::DEVICE_ADD.id);
/// V1 id of `EvtDeviceD0Entry`.
pub const D0_ENTRY: EndpointId<EvtDeviceD0> = EndpointId::new(pnp::D0_ENTRY.id);
/// V1 id of `EvtDeviceD0Exit`.
pub const D0_EXIT: EndpointId<EvtDeviceD0> = EndpointId::new(pnp::D0_EXIT.id);

const _: () = {
    assert!(EvtIoDeviceControl::ARITY == pnp::DEVICE_CONTROL.parameter_count);
    assert!(EvtDriverUnload::ARITY == pnp::DRIVER_UNLOAD.parameter_count);
    assert!(SampleWorkerRoutine::ARITY == pnp::WORKER.parameter_count);
    assert!(EvtDriverDeviceAdd::ARITY == pnp::DEVICE_ADD.parameter_count);
    assert!(EvtDeviceD0::ARITY == pnp::D0_ENTRY.parameter_count);
    assert!(EvtDeviceD0::ARITY == pnp::D0_EXIT.parameter_count);
    assert!(pnp::ENDPOINTS.len() == ENDPOINT_COUNT);
};

/// The number of endpoints.
pub const ENDPOINT_COUNT: usize = 6;

/// This image's V1 table: its own routines under the driver's ids.
///
/// # Errors
/// None in practice (the ids are distinct, tested in the core).
pub fn table() -> Result<EndpointTable<ENDPOINT_COUNT>, RegisterError> {
    EndpointTable::new([
        EndpointEntry::new(
            DEVICE_CONTROL,
            queue::evt_io_device_control as EvtIoDeviceControl,
        ),
        EndpointEntry::new(DRIVER_UNLOAD, driver::evt_driver_unload as EvtDriverUnload),
        EndpointEntry::new(WORKER, device::worker_routine as SampleWorkerRoutine),
        EndpointEntry::new(
            DEVICE_ADD,
            device::evt_driver_device_add as EvtDriverDeviceAdd,
        ),
        EndpointEntry::new(D0_ENTRY, device::evt_device_d0_entry as EvtDeviceD0),
        EndpointEntry::new(D0_EXIT, device::evt_device_d0_exit as EvtDeviceD0),
    ])
}

/// The wrappers (or, where hot-swap is unavailable, the endpoints themselves).
#[derive(Clone, Copy, Debug)]
pub struct Wrappers {
    /// For `WDF_IO_QUEUE_CONFIG`.
    pub device_control: Wrapped<EvtIoDeviceControl>,
    /// For `WDF_DRIVER_CONFIG`.
    pub unload: Wrapped<EvtDriverUnload>,
    /// For the worker thread builder.
    pub worker: Wrapped<SampleWorkerRoutine>,
    /// For `WDF_DRIVER_CONFIG`.
    pub device_add: Wrapped<EvtDriverDeviceAdd>,
    /// For `WDF_PNPPOWER_EVENT_CALLBACKS`.
    pub d0_entry: Wrapped<EvtDeviceD0>,
    /// For `WDF_PNPPOWER_EVENT_CALLBACKS`.
    pub d0_exit: Wrapped<EvtDeviceD0>,
}

impl Wrappers {
    /// Looks every wrapper up by id after `table` was registered by this image.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`LookupError`] when an id has no wrapper, or another image registered it.
    pub fn look_up(
        hotswap: &HotSwap,
        table: &EndpointTable<ENDPOINT_COUNT>,
    ) -> Result<Self, LookupError> {
        Ok(Self {
            device_control: hotswap.wrapper(table, DEVICE_CONTROL)?,
            unload: hotswap.wrapper(table, DRIVER_UNLOAD)?,
            worker: hotswap.wrapper(table, WORKER)?,
            device_add: hotswap.wrapper(table, DEVICE_ADD)?,
            d0_entry: hotswap.wrapper(table, D0_ENTRY)?,
            d0_exit: hotswap.wrapper(table, D0_EXIT)?,
        })
    }
}

/// The driver's `HotSwap` handle and this image's wrappers, from a callback: the handle of
/// the driver object's extension (`HotSwap::from_driver_object`; the fallback where the
/// driver runs without hot swap) and the wrappers of the ids this image registered, in its
/// `DriverEntry` or in its swap.
///
/// IRQL: `PASSIVE_LEVEL` (`EvtDriverDeviceAdd`, `EvtDeviceD0Entry`).
///
/// # Errors
/// `HotSwap::from_driver_object`'s error (the extension has no endpoint record of this
/// library); a [`LookupError`]'s status when this image did not register the ids (another
/// image's callback would not run here: every wrapper leads to the image that registered
/// last).
///
/// # Safety
/// `driver_object` is this driver's `DRIVER_OBJECT`.
pub unsafe fn this_image(driver_object: PDRIVER_OBJECT) -> Result<(HotSwap, Wrappers), NtStatus> {
    // SAFETY: the driver's own DRIVER_OBJECT (contract), valid while the driver is loaded;
    // wdk-sys and driver-proxy declare the same kernel structure.
    let driver = unsafe { DriverObject::from_raw(driver_object.cast()) }?;
    let hotswap = HotSwap::from_driver_object(driver)?;
    let table = table()?;
    let wrappers = Wrappers::look_up(&hotswap, &table)?;
    Ok((hotswap, wrappers))
}
