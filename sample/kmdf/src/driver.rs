//! `DriverEntry` (the first load, or swap mode when the driver object already carries this
//! driver's shared block) and `EvtDriverUnload` (crate docs).

use driver_proxy::{DriverObject, HotSwap, NtStatus};
use wdk_sys::{
    NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, WDF_DRIVER_CONFIG, WDF_NO_OBJECT_ATTRIBUTES,
    WDFDRIVER, call_unsafe_wdf_function_binding,
};

use crate::abi::callback;
use crate::endpoints::{self, Wrappers};
use crate::{STATE, context, log, log_status, log_unavailable, shared, swap, wdf_size};
use hotswap_sample_core::names;

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

/// The first load (crate docs, steps 1-4): the endpoints registered, the shared block and
/// the device context's type description allocated, then the framework driver created, last,
/// so that nothing is left to undo when a step fails (the I/O manager frees the driver
/// object's extensions with it).
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
    // SAFETY: our driver object, in DriverEntry.
    unsafe { shared::allocate(driver, swap::exporter_address()) }?;
    // SAFETY: as above.
    unsafe { context::allocate(driver) }?;
    // SAFETY: DriverEntry's arguments.
    unsafe { create_driver(driver, registry_path, &wrappers) }?;
    Ok(())
}

/// `WdfDriverCreate` for a `PnP` function driver: `EvtDriverDeviceAdd` and `EvtDriverUnload`
/// are wrappers.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// `WdfDriverCreate`'s status.
///
/// # Safety
/// `driver` and `registry_path` are `DriverEntry`'s arguments.
unsafe fn create_driver(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
    wrappers: &Wrappers,
) -> Result<WDFDRIVER, NtStatus> {
    let mut config = WDF_DRIVER_CONFIG {
        Size: wdf_size::<WDF_DRIVER_CONFIG>(),
        EvtDriverDeviceAdd: callback(wrappers.device_add),
        EvtDriverUnload: callback(wrappers.unload),
        // No flag: a `PnP` driver, for whose device node `PnP` calls `EvtDriverDeviceAdd`.
        DriverInitFlags: 0,
        DriverPoolTag: names::POOL_TAG,
    };
    let mut wdf_driver: WDFDRIVER = core::ptr::null_mut();
    // SAFETY: DriverEntry's arguments (contract); a complete config whose callbacks are
    // wrappers; a local out handle.
    NtStatus(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            &raw mut wdf_driver
        )
    })
    .ok()?;
    Ok(wdf_driver)
}

/// `EvtDriverUnload`: the driver's last device is gone (each device stopped its worker in
/// `EvtDeviceD0Exit`), and the framework is about to let the I/O manager unload the image.
/// Nothing is left to release: the framework deletes its objects, the I/O manager frees the
/// shared block and the context type description with the driver object. Whichever image is
/// loaded last runs this, through the same wrapper.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called by the framework (through the wrapper) with this driver's `WDFDRIVER`, once.
pub unsafe extern "system" fn evt_driver_unload(_driver: WDFDRIVER) {
    let stats = STATE.stats();
    crate::log_args(format_args!(
        "EvtDriverUnload: unloading after serving {} requests ({} rejected, {} swaps)",
        stats.served, stats.rejected, stats.swaps
    ));
}
