//! Swap mode: this image's `DriverEntry` called on a driver object that another image of the
//! driver already set up (the crate docs, *How a swap would reach it*). The framework
//! objects stay as they are; only the endpoints move, by V1 re-registration, and the state
//! moves in `ProxyStalled` through the core's [`TakeOver`].

use core::ffi::c_void;

use driver_proxy::{DriverObject, HotSwap, NtStatus};
use hotswap_sample_core::shared::{self, ExportState, SharedBlock};
use hotswap_sample_core::state::HANDOVER_SIZE;
use hotswap_sample_core::{THIS_BUILD, TakeOver};

use crate::{STATE, endpoints, log, log_status};

/// This image's exporter, as the code address published in the shared block.
#[must_use]
pub fn exporter_address() -> *mut c_void {
    export_state as ExportState as *mut c_void
}

/// The [`ExportState`] of this image: the core's [`shared::export_state`] of [`STATE`].
///
/// IRQL: `PASSIVE_LEVEL` (the incoming image's `ProxyStalled` callback).
///
/// # Safety
/// `buffer` must be null or valid for writes of `length` bytes.
unsafe extern "system" fn export_state(buffer: *mut u8, length: usize) -> i32 {
    // SAFETY: null (giving `None`) or valid for writes of `length` bytes (caller contract).
    let out = unsafe { core::ptr::slice_from_raw_parts_mut(buffer, length).as_mut() };
    shared::export_state(&STATE, out).raw()
}

/// Takes the driver over from the image serving it: re-registers the same endpoint ids with
/// this image's routines and the core's [`TakeOver`] as the phased callback (the hand-over
/// in `ProxyStalled`); once the registration returned success (committed), publishes this
/// image in the block. The framework objects stay as they are: the driver, the device, its
/// queue hold wrapper addresses, which the re-registration repointed. The device's worker
/// thread keeps running: its routine is an endpoint too, so its next wake-up (at most one
/// period later) runs in this image.
///
/// IRQL: `PASSIVE_LEVEL` (`DriverEntry`).
///
/// # Errors
/// `STATUS_NOT_SUPPORTED` when hot-swap is unavailable; `STATUS_REVISION_MISMATCH` when the
/// driver's extension has no endpoint record of this library, or another layout of it; the
/// status of a failed (rolled back) registration, e.g. `STATUS_INVALID_DEVICE_STATE` when no
/// other image's exporter is published.
pub fn take_over(proxy_driver: DriverObject, block: &SharedBlock) -> Result<(), NtStatus> {
    let hotswap = HotSwap::from_driver_object(proxy_driver)?;
    if hotswap.unavailable().is_some() {
        log("swap refused: hot-swap is unavailable");
        return Err(NtStatus::NOT_SUPPORTED);
    }
    let own = exporter_address();
    let outgoing = block.outgoing_exporter(own).map(|address| {
        // SAFETY: only `exporter_address()` of an image of this driver is ever published in
        // the block (`shared::allocate`, and below), so a non-null address is an ExportState.
        let export = unsafe { core::mem::transmute::<*mut c_void, ExportState>(address.as_ptr()) };
        move |snapshot: &mut [u8; HANDOVER_SIZE]| {
            // SAFETY: called by TakeOver in ProxyStalled only, while the outgoing image is
            // still mapped; directly, not through a wrapper; a buffer of HANDOVER_SIZE bytes.
            NtStatus(unsafe { export(snapshot.as_mut_ptr(), snapshot.len()) })
        }
    });
    let table = endpoints::table()?;
    let mut callback = TakeOver::new(&STATE, outgoing);
    if let Err(error) = hotswap.register(&table, Some(&mut callback)) {
        log_status("swap failed, rolled back", error.into());
        return Err(error.into());
    }
    // Committed: every wrapper leads here now. The framework keeps the wrapper addresses it
    // was given, which V1 re-registration repointed: nothing to re-store.
    block.publish(THIS_BUILD, own);
    log("took over");
    Ok(())
}
