//! `DriverEntry`: the first load, or swap mode when the driver object already carries this
//! driver's shared block (crate docs).

use driver_proxy::{DriverObject, HotSwap, NtStatus, Wrapped};
use hotswap_sample_core::worker::{
    SampleWorkerRoutine, SampleWorkerThread, WORKER_EVENTS, WORKER_PERIOD,
};
use wdk_sys::{NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, call_unsafe_wdf_function_binding};

use crate::endpoints::{self, Wrappers};
use crate::{device, log, log_status, log_unavailable, shared, swap};

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
    let proxy_driver = unsafe { DriverObject::from_raw(driver.cast()) }?;
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
    let hotswap = HotSwap::new(proxy_driver)?;
    match hotswap.unavailable() {
        None => log("DriverEntry: hot swap available"),
        Some(reason) => log_unavailable(
            "DriverEntry: hot swap unavailable, running without it",
            reason,
        ),
    }
    let table = endpoints::table()?;
    hotswap.register(&table, None)?;
    let wrappers = Wrappers::look_up(&hotswap, &table)?;

    // SAFETY: DriverEntry's arguments; EvtDriverUnload is the unload wrapper.
    let wdf_driver = unsafe { device::create_driver(driver, registry_path, wrappers.unload) }?;
    // SAFETY: our driver object, in DriverEntry.
    let block = unsafe { shared::allocate(driver, swap::exporter_address()) }?;
    // SAFETY: our WDFDRIVER, in DriverEntry; EvtIoDeviceControl is the wrapper.
    let device = unsafe { device::create_control_device(wdf_driver, wrappers.device_control) }?;

    match start_worker(&hotswap, wrappers.worker) {
        Ok(worker) => {
            if let Some(thread) = worker {
                // The block holds the thread from now on: the unload routine of whichever
                // image is loaded last takes it back to stop it (`shared::stop_worker`).
                shared::give_worker(block, thread);
            }
            Ok(())
        }
        Err(status) => {
            // SAFETY: our control device; DriverEntry fails, so no request is served.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfObjectDelete,
                    device.cast::<core::ffi::c_void>()
                );
            }
            Err(status)
        }
    }
}

/// Starts the worker thread (crate docs, step 6) with the library's builder, or `None` when
/// this kernel cannot run it (`HotSwap::worker_threads` names the missing routine, logged):
/// the driver then serves without its worker rather than fail to load. The library owns the
/// thread's storage (context, stop and kick events) in a pool block of its own (tag `DPwk`),
/// freed when the thread is stopped and joined.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// The status of a failed `spawn` on a kernel that has every routine a worker needs.
fn start_worker(
    hotswap: &HotSwap,
    routine: Wrapped<SampleWorkerRoutine>,
) -> Result<Option<SampleWorkerThread>, NtStatus> {
    if let Err(reason) = hotswap.worker_threads() {
        log_unavailable("DriverEntry: no worker thread, running without it", reason);
        return Ok(None);
    }
    let thread = hotswap
        .worker_thread(routine, ())
        .events(WORKER_EVENTS)
        .timeout(WORKER_PERIOD)
        .spawn()?;
    Ok(Some(thread))
}
