//! Swap mode: this image's `DriverEntry` called on a driver object that another image of the
//! driver (the *outgoing* image) has already set up. The protocol is described in the crate
//! docs (*Swap mode*); this module is its code.

use core::ffi::c_void;
use core::ptr;

use driver_proxy::{DriverObject, HotSwap, NtStatus};
use hotswap_sample_core::shared::{self, ExportState};
use hotswap_sample_core::state::HANDOVER_SIZE;
use hotswap_sample_core::worker::WORKER_KICK_EVENT;
use hotswap_sample_core::{THIS_BUILD, TakeOver};

use crate::device::{self, Device};
use crate::endpoints::{self, Wrappers};
use crate::wdm_sys::{NTSTATUS, PDRIVER_OBJECT};
use crate::{STATE, log_version};

/// This image's exporter, published in the device extension while this image serves.
///
/// Kept in a `static` and read with a volatile load (see [`exporter`]): the stored value is
/// an absolute code address, so the image always has at least one base relocation and
/// therefore a `.reloc` section (`cargo xtask verify` checks it), whatever else the
/// optimiser folds away.
static EXPORTER: ExportState = export_state;

/// This image's [`ExportState`], as published in the device extension.
#[must_use]
pub fn exporter() -> ExportState {
    // SAFETY: an aligned read of an initialised, immutable static.
    unsafe { ptr::read_volatile(&raw const EXPORTER) }
}

/// The [`ExportState`] of this image: the core's [`shared::export_state`] of [`STATE`].
///
/// IRQL: `PASSIVE_LEVEL` (the incoming image's `ProxyStalled` callback).
///
/// # Safety
/// `buffer` must be null or valid for writes of `length` bytes.
unsafe extern "system" fn export_state(buffer: *mut u8, length: usize) -> NTSTATUS {
    // SAFETY: null (giving `None`) or valid for writes of `length` bytes (caller contract).
    let out = unsafe { ptr::slice_from_raw_parts_mut(buffer, length).as_mut() };
    shared::export_state(&STATE, out).raw()
}

/// Takes the driver over from the image serving it: re-registers the same endpoint ids
/// with this image's routines and the core's [`TakeOver`] as the phased callback (the
/// hand-over in `ProxyStalled`); once the registration has returned success (the swap is
/// committed), makes this image the serving one in the device extension and kicks the
/// worker (taken from the device extension, then given back) so that it ticks in the new
/// code at once.
///
/// IRQL: `PASSIVE_LEVEL` (`DriverEntry`).
///
/// # Errors
/// Before the swap commits: `STATUS_NOT_SUPPORTED` when hot-swap is unavailable (there is
/// nothing to swap: the outgoing image runs without DriverProxy); `STATUS_REVISION_MISMATCH`
/// when the driver's extension has no endpoint record of this library, or another layout of
/// it (`CreateError::RecordMissing` / `IncompatibleRecord`); the status of a failed
/// registration, including the rollback after a failed phase (e.g.
/// `STATUS_INVALID_DEVICE_STATE` when there is no exporter, or when the exporter is this
/// image's own, i.e. the same image entered twice; a hand-over error's status). Nothing
/// fails after the commit.
///
/// # Safety
/// `driver` is the driver's own `DRIVER_OBJECT` (`proxy_driver` the same one), `device` its
/// device; no unload runs concurrently.
pub unsafe fn take_over(
    driver: PDRIVER_OBJECT,
    proxy_driver: DriverObject,
    device: &Device,
) -> Result<(), NtStatus> {
    let extension = device.extension();
    let from = extension.owner().map_or(0, |v| u32::from(v.raw()));
    let hotswap = HotSwap::from_driver_object(proxy_driver)?;
    if hotswap.unavailable().is_some() {
        log_version(c"swap refused: hot-swap is unavailable");
        return Err(NtStatus::NOT_SUPPORTED);
    }
    let own = exporter() as *mut c_void;
    let outgoing = extension.outgoing_exporter(own).map(|address| {
        // SAFETY: only `exporter()` of an image of this driver is ever published in the
        // extension (`Device::create`, and below), so a non-null address is an ExportState.
        let export = unsafe { core::mem::transmute::<*mut c_void, ExportState>(address.as_ptr()) };
        move |snapshot: &mut [u8; HANDOVER_SIZE]| {
            // SAFETY: called by TakeOver in ProxyStalled only, while the outgoing image is
            // still mapped (it stays mapped until its swap has completed); directly, not
            // through a wrapper (which would wait for this phase to end); a buffer of
            // HANDOVER_SIZE bytes of our own.
            NtStatus(unsafe { export(snapshot.as_mut_ptr(), snapshot.len()) })
        }
    });
    // All five ids, or four in the test image of feature `test-omit-unload-endpoint`.
    let table = endpoints::swap_table()?;
    let mut on_phase = TakeOver::new(&STATE, outgoing);
    if let Err(error) = hotswap.register(&table, Some(&mut on_phase)) {
        crate::log_status(c"swap failed, rolled back", error.into());
        return Err(error.into());
    }
    // Committed: every wrapper leads here now, and the outgoing image may be unmapped.
    extension.publish(THIS_BUILD, own);
    // V1 re-registration keeps the wrappers; look them up with this image's full table and
    // store them anyway in case they changed. (In the test image of feature
    // `test-omit-unload-endpoint` the registered table has no UNLOAD, which the endpoint
    // record still gives to the outgoing image: the lookup fails with
    // `LookupError::RegisteredByAnotherImage(4)`, STATUS_OBJECT_TYPE_MISMATCH, logged, and
    // every slot keeps the wrapper it holds.)
    match endpoints::table()
        .map_err(NtStatus::from)
        .and_then(|full| Ok(Wrappers::look_up(&hotswap, &full)?))
    {
        // SAFETY: our driver object (caller contract).
        Ok(wrappers) => unsafe { wrappers.install(driver) },
        Err(status) => crate::log_status(c"wrapper lookup after the swap", status),
    }
    // Kick the worker, if the driver runs one: it ticks in this image's code at once.
    if let Some(thread) = device::take_worker(extension) {
        if let Some(kick) = thread.event(WORKER_KICK_EVENT) {
            kick.set();
        }
        device::give_worker(extension, thread);
    }
    crate::log_swap(from, STATE.stats().swaps);
    Ok(())
}
