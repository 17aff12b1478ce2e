//! `DriverEntry`: the first load, or swap mode when the driver object already carries this
//! driver's shared block (crate docs).

use driver_proxy::{
    CreateError, DriverObject, HotSwap, LookupError, NtStatus, NullDriverObject, RegisterError,
    Timeout,
};
use hotswap_sample_core::worker::{
    WORKER_EVENT_COUNT, WORKER_KICK_EVENT, WORKER_PERIOD_100NS, WORKER_STOP_EVENT,
};
use wdk_sys::{NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, call_unsafe_wdf_function_binding};

use crate::endpoints::{self, Wrappers};
use crate::{device, log, log_status, shared, swap};

// The worker's events are added in this order: stop, then kick.
const _: () = assert!(WORKER_STOP_EVENT == 0 && WORKER_KICK_EVENT == 1 && WORKER_EVENT_COUNT == 2);

/// The driver's entry, called by the framework's `FxDriverEntry` (the image's PE entry
/// point, from `WdfDriverEntry.lib`) once it has bound this image to the framework.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called with the driver's own `DRIVER_OBJECT` and its registry path.
// SAFETY: `DriverEntry` is the symbol FxDriverEntry calls; no other item of this image
// exports that name.
#[unsafe(export_name = "DriverEntry")]
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded contract.
    match unsafe { entry(driver, registry_path) } {
        Ok(()) => NtStatus::SUCCESS.raw(),
        Err(status) => {
            log_status("DriverEntry failed", status);
            status.raw()
        }
    }
}

/// # Safety
/// As [`driver_entry`].
unsafe fn entry(driver: PDRIVER_OBJECT, registry_path: PCUNICODE_STRING) -> Result<(), NtStatus> {
    // SAFETY: the driver's own DRIVER_OBJECT (contract), valid until unload; wdk-sys and
    // driver-proxy declare the same kernel structure.
    let proxy_driver =
        unsafe { DriverObject::from_raw(driver.cast()) }.map_err(NullDriverObject::status)?;
    // SAFETY: as above; no unload runs during DriverEntry.
    match unsafe { shared::existing(driver) }? {
        // SAFETY: DriverEntry's arguments.
        None => unsafe { first_load(driver, registry_path, proxy_driver) },
        Some(block) => swap::take_over(proxy_driver, block),
    }
}

/// The first load (crate docs, steps 1-6).
///
/// # Safety
/// As [`driver_entry`]; the driver has no shared block yet.
unsafe fn first_load(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
    proxy_driver: DriverObject,
) -> Result<(), NtStatus> {
    let hotswap = HotSwap::new(proxy_driver).map_err(CreateError::status)?;
    log(if hotswap.unavailable().is_none() {
        "DriverEntry: hot swap available"
    } else {
        "DriverEntry: hot swap unavailable, running without it"
    });
    let table = endpoints::table().map_err(RegisterError::status)?;
    hotswap
        .register(&table, None)
        .map_err(RegisterError::status)?;
    let wrappers = Wrappers::look_up(&hotswap, &table).map_err(LookupError::status)?;

    // SAFETY: DriverEntry's arguments; EvtDriverUnload is the unload wrapper.
    let wdf_driver = unsafe { device::create_driver(driver, registry_path, wrappers.unload) }?;
    // SAFETY: our driver object, in DriverEntry.
    let block = unsafe { shared::allocate(driver, swap::exporter_address()) }?;
    // SAFETY: our WDFDRIVER, in DriverEntry; EvtIoDeviceControl is the wrapper.
    let device = unsafe { device::create_control_device(wdf_driver, wrappers.device_control) }?;

    // The events live in the shared block, which lives as long as the driver object: the
    // borrows are 'static, so the safe `spawn` applies.
    let spawned = hotswap
        .worker_thread(wrappers.worker)
        .event(block.stop_event())
        .event(block.kick_event())
        .timeout(Timeout::relative_100ns(WORKER_PERIOD_100NS.unsigned_abs()))
        .spawn();
    match spawned {
        Ok(thread) => {
            block.adopt_worker_thread(thread.handle());
            // The block owns the handle now (closed by `shared::stop_worker` at unload).
            core::mem::forget(thread);
            Ok(())
        }
        Err(error) => {
            // SAFETY: our control device; DriverEntry fails, so no request is served.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfObjectDelete,
                    device.cast::<core::ffi::c_void>()
                );
            }
            Err(error.status())
        }
    }
}
