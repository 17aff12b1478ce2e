//! The framework objects: the `WDFDRIVER` (non-PnP), the control device
//! `\Device\HotSwapSample` with its symbolic link, and its default parallel queue. Every
//! callback given to the framework here is a wrapper ([`crate::endpoints`]).

use core::mem::{size_of, size_of_val};

use driver_proxy::{NtStatus, Wrapped};
use hotswap_sample_core::{ioctl, kmdf, names};
use wdk_sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_TRI_STATE, FILE_DEVICE_SECURE_OPEN, PCUNICODE_STRING,
    PDRIVER_OBJECT, PWDFDEVICE_INIT, ULONG, UNICODE_STRING, WDF_DRIVER_CONFIG, WDF_IO_QUEUE_CONFIG,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDEVICE, WDFDRIVER, WDFQUEUE, call_unsafe_wdf_function_binding,
};

use crate::endpoints::{EvtDriverUnload, EvtIoDeviceControl, c_abi};

/// `WdfDriverInitNonPnpDriver` (`WDF_DRIVER_INIT_FLAGS`, wdfdriver.h): the driver has no
/// `EvtDriverDeviceAdd`; it must register `EvtDriverUnload`.
const WDF_DRIVER_INIT_NON_PNP_DRIVER: ULONG = 0x0000_0001;

static DEVICE_NAME: [u16; names::DEVICE_NAME_UTF16.len()] = names::DEVICE_NAME_UTF16;
static DOS_DEVICE_NAME: [u16; names::DOS_DEVICE_NAME_UTF16.len()] = names::DOS_DEVICE_NAME_UTF16;
static SDDL: [u16; kmdf::CONTROL_DEVICE_SDDL_UTF16.len()] = kmdf::CONTROL_DEVICE_SDDL_UTF16;

/// The `Size` member of a WDF structure (`WDF_STRUCTURE_SIZE`).
const fn wdf_size<T>() -> ULONG {
    const { assert!(size_of::<T>() <= ULONG::MAX as usize) };
    #[allow(clippy::cast_possible_truncation, reason = "asserted above")]
    let size = size_of::<T>() as ULONG;
    size
}

/// A counted string over a `static` UTF-16 name (no terminating NUL).
fn unicode(units: &'static [u16]) -> UNICODE_STRING {
    let bytes = u16::try_from(size_of_val(units)).unwrap_or(u16::MAX);
    UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: units.as_ptr().cast_mut(),
    }
}

/// `WdfDriverCreate` for a non-PnP driver whose `EvtDriverUnload` is `unload`.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// `WdfDriverCreate`'s status.
///
/// # Safety
/// `driver` and `registry_path` are `DriverEntry`'s arguments.
pub unsafe fn create_driver(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
    unload: Wrapped<EvtDriverUnload>,
) -> Result<WDFDRIVER, NtStatus> {
    let mut config = WDF_DRIVER_CONFIG {
        Size: wdf_size::<WDF_DRIVER_CONFIG>(),
        EvtDriverUnload: c_abi::driver_unload(unload),
        DriverInitFlags: WDF_DRIVER_INIT_NON_PNP_DRIVER,
        DriverPoolTag: names::POOL_TAG,
        ..WDF_DRIVER_CONFIG::default()
    };
    let mut wdf_driver: WDFDRIVER = core::ptr::null_mut();
    // SAFETY: DriverEntry's arguments (contract); a complete config; a local out handle.
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

/// Creates the control device (SDDL system + administrators, the sample's device type,
/// secure open), its symbolic link and its default parallel queue with `device_control` as
/// `EvtIoDeviceControl`, then `WdfControlFinishInitializing`. On failure nothing is left.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// `STATUS_INSUFFICIENT_RESOURCES` when `WdfControlDeviceInitAllocate` fails; the status of
/// the failing framework call otherwise.
///
/// # Safety
/// `wdf_driver` is this driver's `WDFDRIVER`, in `DriverEntry`.
pub unsafe fn create_control_device(
    wdf_driver: WDFDRIVER,
    device_control: Wrapped<EvtIoDeviceControl>,
) -> Result<WDFDEVICE, NtStatus> {
    let sddl = unicode(&SDDL);
    // SAFETY: our WDFDRIVER (contract); the SDDL string outlives the call.
    let mut init: PWDFDEVICE_INIT = unsafe {
        call_unsafe_wdf_function_binding!(WdfControlDeviceInitAllocate, wdf_driver, &raw const sddl)
    };
    if init.is_null() {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    let name = unicode(&DEVICE_NAME);
    let mut device: WDFDEVICE = core::ptr::null_mut();
    // SAFETY: `init` is the live WDFDEVICE_INIT allocated above, the strings outlive the
    // calls; `device` is a local out handle.
    let created = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetDeviceType,
            init,
            ULONG::from(ioctl::DEVICE_TYPE)
        );
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetCharacteristics,
            init,
            FILE_DEVICE_SECURE_OPEN,
            1
        );
        NtStatus(call_unsafe_wdf_function_binding!(
            WdfDeviceInitAssignName,
            init,
            &raw const name
        ))
        .ok()
        .and_then(|()| {
            NtStatus(call_unsafe_wdf_function_binding!(
                WdfDeviceCreate,
                &raw mut init,
                WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut device
            ))
            .ok()
        })
    };
    if let Err(status) = created {
        // SAFETY: the device was not created, so `init` is still ours to free.
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitFree, init) };
        return Err(status);
    }
    // SAFETY: the device created above.
    if let Err(status) = unsafe { finish_device(device, device_control) } {
        // SAFETY: our device, not yet reachable by any request; deleting it deletes its
        // link and queue.
        unsafe {
            call_unsafe_wdf_function_binding!(WdfObjectDelete, device.cast::<core::ffi::c_void>());
        }
        return Err(status);
    }
    Ok(device)
}

/// The symbolic link, the default queue, `WdfControlFinishInitializing`.
///
/// # Safety
/// `device` is the control device just created, still initialising.
unsafe fn finish_device(
    device: WDFDEVICE,
    device_control: Wrapped<EvtIoDeviceControl>,
) -> Result<(), NtStatus> {
    let link = unicode(&DOS_DEVICE_NAME);
    // SAFETY: our device (contract); the string outlives the call.
    NtStatus(unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &raw const link)
    })
    .ok()?;
    let mut config = WDF_IO_QUEUE_CONFIG {
        Size: wdf_size::<WDF_IO_QUEUE_CONFIG>(),
        // A control device has no power management.
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: 1,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        EvtIoDeviceControl: c_abi::device_control(device_control),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    // As WDF_IO_QUEUE_CONFIG_INIT does for a parallel queue: no limit on presented requests.
    config.Settings.Parallel.NumberOfPresentedRequests = ULONG::MAX;
    let mut queue: WDFQUEUE = core::ptr::null_mut();
    // SAFETY: our device; a complete config whose callback is a wrapper; a local out handle.
    NtStatus(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    })
    .ok()?;
    // SAFETY: our control device, fully set up: requests may arrive from now on.
    unsafe { call_unsafe_wdf_function_binding!(WdfControlFinishInitializing, device) };
    Ok(())
}
