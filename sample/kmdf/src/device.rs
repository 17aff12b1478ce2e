//! The device of the root-enumerated node: `EvtDriverDeviceAdd` creates it, `EvtDeviceD0Entry`
//! and `EvtDeviceD0Exit` start and stop its worker thread, and the worker routine itself.
//! Every callback given to the framework or the kernel here is a wrapper
//! ([`crate::endpoints`]); what they decide is the core's ([`pnp`]).

use core::mem::size_of_val;

use driver_proxy::{HotSwap, NtStatus, WorkerRef, Wrapped};
use hotswap_sample_core::pnp::{self, D0Entry, D0Exit, PowerState};
use hotswap_sample_core::worker::{
    SampleWorkerRoutine, SampleWorkerThread, WORKER_EVENT_COUNT, WorkerStart,
    start_worker as core_start_worker,
};
use hotswap_sample_core::{ioctl, names, worker_routine as core_worker_routine};
use wdk_sys::{
    _WDF_POWER_DEVICE_STATE, FILE_DEVICE_SECURE_OPEN, GUID, NTSTATUS, PDRIVER_OBJECT,
    PWDFDEVICE_INIT, ULONG, UNICODE_STRING, WDF_PNPPOWER_EVENT_CALLBACKS, WDF_POWER_DEVICE_STATE,
    WDFDEVICE, WDFDRIVER, call_unsafe_wdf_function_binding,
};

use crate::abi::callback;
use crate::endpoints;
use crate::{STATE, context, log, log_args, log_status, log_unavailable, queue, wdf_size};

// The power states the core names are the framework's (`wdfdevice.h`).
const _: () = {
    assert!(PowerState::Invalid.raw() == _WDF_POWER_DEVICE_STATE::WdfPowerDeviceInvalid as i64);
    assert!(PowerState::D0.raw() == _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD0 as i64);
    assert!(PowerState::D1.raw() == _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD1 as i64);
    assert!(PowerState::D2.raw() == _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD2 as i64);
    assert!(PowerState::D3.raw() == _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD3 as i64);
    assert!(PowerState::D3Final.raw() == _WDF_POWER_DEVICE_STATE::WdfPowerDeviceD3Final as i64);
    assert!(
        PowerState::PrepareForHibernation.raw()
            == _WDF_POWER_DEVICE_STATE::WdfPowerDevicePrepareForHibernation as i64
    );
};

/// `GUID_DEVINTERFACE_HOTSWAP_SAMPLE`: `hotswap_sample_core::names::DEVICE_INTERFACE_GUID`, the
/// interface class `hotswapctl` looks for.
static INTERFACE: GUID = GUID {
    Data1: names::DEVICE_INTERFACE_GUID.data1,
    Data2: names::DEVICE_INTERFACE_GUID.data2,
    Data3: names::DEVICE_INTERFACE_GUID.data3,
    Data4: names::DEVICE_INTERFACE_GUID.data4,
};

static DOS_DEVICE_NAME: [u16; names::DOS_DEVICE_NAME_UTF16.len()] = names::DOS_DEVICE_NAME_UTF16;

/// A counted string over a `static` UTF-16 name (no terminating NUL).
fn unicode(units: &'static [u16]) -> UNICODE_STRING {
    let bytes = u16::try_from(size_of_val(units)).unwrap_or(u16::MAX);
    UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: units.as_ptr().cast_mut(),
    }
}

/// The `DRIVER_OBJECT` of the driver owning `device`.
///
/// # Safety
/// `device` is a live `WDFDEVICE` of this driver.
unsafe fn driver_object_of(device: WDFDEVICE) -> PDRIVER_OBJECT {
    // SAFETY: a live device (contract); its driver lives at least as long.
    let driver = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetDriver, device) };
    // SAFETY: this driver's framework driver object.
    unsafe { call_unsafe_wdf_function_binding!(WdfDriverWdmGetDriverObject, driver) }
}

/// `EvtDriverDeviceAdd`: `PnP` found the node `Root\HotSwapSample` and this driver is its
/// function driver. Creates the device ([`add_device`]).
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called by the framework (through the wrapper) with this driver's `WDFDRIVER` and a
/// `WDFDEVICE_INIT` it allocated for the node.
pub unsafe extern "system" fn evt_driver_device_add(
    driver: WDFDRIVER,
    device_init: PWDFDEVICE_INIT,
) -> NTSTATUS {
    // SAFETY: forwarded contract.
    match unsafe { add_device(driver, device_init) } {
        Ok(()) => NtStatus::SUCCESS.raw(),
        Err(status) => {
            log_status("EvtDriverDeviceAdd failed", status);
            status.raw()
        }
    }
}

/// Creates the device: the `PnP` power callbacks (`EvtDeviceD0Entry`, `EvtDeviceD0Exit`), the
/// device type and secure open, `WdfDeviceCreate` with the device context, the context's
/// initial value, the device interface, the symbolic link and the default queue. On failure
/// the framework deletes the device when this callback returns the status (the
/// `WDFDEVICE_INIT` of `EvtDriverDeviceAdd` is the framework's to free).
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// The status of the failing step; a symbolic link that cannot be created is logged, not
/// fatal (the interface finds the device).
///
/// # Safety
/// As [`evt_driver_device_add`].
unsafe fn add_device(driver: WDFDRIVER, mut device_init: PWDFDEVICE_INIT) -> Result<(), NtStatus> {
    // SAFETY: our framework driver object.
    let driver_object =
        unsafe { call_unsafe_wdf_function_binding!(WdfDriverWdmGetDriverObject, driver) };
    // SAFETY: this driver's own DRIVER_OBJECT.
    let (_, wrappers) = unsafe { endpoints::this_image(driver_object) }?;
    // SAFETY: as above.
    let info = unsafe { context::type_info(driver_object) }?;

    let mut power = WDF_PNPPOWER_EVENT_CALLBACKS {
        Size: wdf_size::<WDF_PNPPOWER_EVENT_CALLBACKS>(),
        EvtDeviceD0Entry: callback(wrappers.d0_entry),
        EvtDeviceD0Exit: callback(wrappers.d0_exit),
        ..WDF_PNPPOWER_EVENT_CALLBACKS::default()
    };
    let mut attributes = context::attributes(info);
    let mut device: WDFDEVICE = core::ptr::null_mut();
    // SAFETY: the framework's WDFDEVICE_INIT (contract), configured before WdfDeviceCreate;
    // the callbacks are wrappers; the attributes name the driver's context type; a local out
    // handle.
    NtStatus(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetPnpPowerEventCallbacks,
            device_init,
            &raw mut power
        );
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetDeviceType,
            device_init,
            ULONG::from(ioctl::DEVICE_TYPE)
        );
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetCharacteristics,
            device_init,
            FILE_DEVICE_SECURE_OPEN,
            1
        );
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut device_init,
            &raw mut attributes,
            &raw mut device
        )
    })
    .ok()?;
    // SAFETY: the device just created with `attributes(info)`; no callback of it runs yet.
    unsafe { context::initialise(device, info) }?;
    // SAFETY: our device; the GUID is a static.
    NtStatus(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateDeviceInterface,
            device,
            &raw const INTERFACE,
            core::ptr::null()
        )
    })
    .ok()?;
    let link = unicode(&DOS_DEVICE_NAME);
    // SAFETY: our device; the string outlives the call. The framework links the name to the
    // node's physical device object (the device itself is unnamed) and deletes the link
    // with the device.
    if let Err(status) = NtStatus(unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &raw const link)
    })
    .ok()
    {
        log_status(
            "EvtDriverDeviceAdd: no symbolic link (another device holds the name?); the device interface still leads here",
            status,
        );
    }
    // SAFETY: our device, still in EvtDriverDeviceAdd.
    unsafe { queue::create(device, wrappers.device_control) }?;
    log("EvtDriverDeviceAdd: device created");
    Ok(())
}

/// `EvtDeviceD0Entry`: the device enters D0 (its first start, a wake-up, a restart after a
/// disable): starts its worker thread ([`pnp::enter_d0`]).
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called by the framework (through the wrapper) with a device of this driver.
pub unsafe extern "system" fn evt_device_d0_entry(
    device: WDFDEVICE,
    previous_state: WDF_POWER_DEVICE_STATE,
) -> NTSTATUS {
    let previous = PowerState::from_raw(i64::from(previous_state));
    // SAFETY: forwarded contract.
    match unsafe { d0_entry(device) } {
        Ok(D0Entry::Started(n)) => {
            log_args(format_args!(
                "EvtDeviceD0Entry #{n} from {previous}: worker started"
            ));
            NtStatus::SUCCESS.raw()
        }
        Ok(D0Entry::WithoutWorker(n)) => {
            log_args(format_args!(
                "EvtDeviceD0Entry #{n} from {previous}: running without the worker"
            ));
            NtStatus::SUCCESS.raw()
        }
        Ok(D0Entry::AlreadyRunning(n)) => {
            log_args(format_args!(
                "EvtDeviceD0Entry #{n} from {previous}: the worker was still running"
            ));
            NtStatus::SUCCESS.raw()
        }
        Err(status) => {
            log_status("EvtDeviceD0Entry failed", status);
            status.raw()
        }
    }
}

/// # Safety
/// As [`evt_device_d0_entry`].
unsafe fn d0_entry(device: WDFDEVICE) -> Result<D0Entry, NtStatus> {
    // SAFETY: a device of this driver, live during its callback.
    let context = unsafe { context::of(device) }?;
    // SAFETY: as above.
    let driver_object = unsafe { driver_object_of(device) };
    // SAFETY: this driver's own DRIVER_OBJECT.
    let (hotswap, wrappers) = unsafe { endpoints::this_image(driver_object) }?;
    pnp::enter_d0(context, || start_worker(&hotswap, wrappers.worker))
}

/// Starts the worker thread ([`core_start_worker`]), or `None` when this kernel cannot run
/// it: the reason is logged and the device serves without its worker rather than fail to
/// start.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// The status of a failed `spawn` on a kernel that has every routine a worker needs.
fn start_worker(
    hotswap: &HotSwap,
    routine: Wrapped<SampleWorkerRoutine>,
) -> Result<Option<SampleWorkerThread>, NtStatus> {
    Ok(match core_start_worker(hotswap, routine)? {
        WorkerStart::Started(thread) => Some(thread),
        WorkerStart::Unavailable(reason) => {
            log_unavailable(
                "EvtDeviceD0Entry: no worker thread, running without it",
                reason,
            );
            None
        }
    })
}

/// `EvtDeviceD0Exit`: the device leaves D0 (removal, disable, sleep, resource rebalance):
/// stops and joins its worker thread ([`pnp::leave_d0`]). The device leaves D0 whatever
/// happens to the thread; only a device without a valid context fails the callback.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called by the framework (through the wrapper) with a device of this driver.
pub unsafe extern "system" fn evt_device_d0_exit(
    device: WDFDEVICE,
    target_state: WDF_POWER_DEVICE_STATE,
) -> NTSTATUS {
    let target = PowerState::from_raw(i64::from(target_state));
    // SAFETY: a device of this driver, live during its callback.
    let context = match unsafe { context::of(device) } {
        Ok(context) => context,
        Err(status) => {
            log_status("EvtDeviceD0Exit: no device context", status);
            return status.raw();
        }
    };
    // SAFETY: only `WorkerThread::into_raw` of a SampleWorkerThread started for this device
    // is ever stored in its context (`pnp::enter_d0`), and `leave_d0` took it out of the
    // context, so this is the thread's only owner.
    let take_back = |raw| unsafe { SampleWorkerThread::from_raw(raw) };
    match pnp::leave_d0(context, take_back) {
        Ok(D0Exit::Stopped) => {
            log_args(format_args!("EvtDeviceD0Exit to {target}: worker stopped"));
        }
        Ok(D0Exit::NoWorker) => log_args(format_args!("EvtDeviceD0Exit to {target}")),
        Ok(D0Exit::NotTakenBack(error)) => {
            log_status(
                "EvtDeviceD0Exit: worker thread not taken back",
                error.into(),
            );
        }
        Ok(D0Exit::JoinFailed(error)) => {
            log_status(
                "EvtDeviceD0Exit: waiting for the worker thread failed",
                error.into(),
            );
        }
        Err(status) => {
            log_status("EvtDeviceD0Exit: bad device context", status);
            return status.raw();
        }
    }
    NtStatus::SUCCESS.raw()
}

/// The hot-swappable worker thread's routine: one wake-up of the core's worker body on this
/// image's state, with the wake-up read by the library (`WorkerRef::wake`: the stop request,
/// the kick event, the timeout). The context's value (`()`) is unused: the library passes
/// the same context for the thread's whole life, across swaps.
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
