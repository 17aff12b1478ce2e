//! Where the [`SharedBlock`] lives: a driver object extension under the key
//! `hotswap_sample_core::shared::DRIVER_EXTENSION_KEY`, which every image of the driver
//! finds from the `DRIVER_OBJECT` (the core's `shared` module explains why not a WDF
//! context or the device extension). The block names the serving image and its exporter;
//! its worker slot stays empty in this build, whose worker belongs to the device
//! (`crate::context`, started and stopped with D0).

use core::ffi::c_void;
use core::mem::size_of;

use driver_proxy::NtStatus;
use hotswap_sample_core::THIS_BUILD;
use hotswap_sample_core::shared::{DRIVER_EXTENSION_KEY, SharedBlock, check_header};
use wdk_sys::ntddk::{IoAllocateDriverObjectExtension, IoGetDriverObjectExtension};
use wdk_sys::{PDRIVER_OBJECT, PVOID, ULONG};

/// The key, as the pointer the I/O manager compares (never dereferenced).
fn key() -> PVOID {
    core::ptr::without_provenance_mut(DRIVER_EXTENSION_KEY)
}

/// The block an image of this driver allocated, or `None` (a first load).
///
/// IRQL: `<= DISPATCH_LEVEL`.
///
/// # Errors
/// `STATUS_INVALID_DEVICE_STATE` / `STATUS_REVISION_MISMATCH` when the memory under the key
/// is not a block of this layout ([`check_header`]).
///
/// # Safety
/// `driver` must be this driver's own `DRIVER_OBJECT`.
pub unsafe fn existing(driver: PDRIVER_OBJECT) -> Result<Option<&'static SharedBlock>, NtStatus> {
    // SAFETY: our driver object (contract); the key is only compared.
    let raw = unsafe { IoGetDriverObjectExtension(driver, key()) };
    if raw.is_null() {
        return Ok(None);
    }
    let header = raw.cast::<u32>();
    // SAFETY: the extension under this key was allocated by an image of this driver with
    // the size of a SharedBlock (checked aligned for it) and its header written first.
    let (magic, layout) = unsafe { (header.read(), header.add(1).read()) };
    check_header(magic, layout)?;
    // SAFETY: an initialised SharedBlock (header checked); the I/O manager frees it with the
    // driver object, after the last unload, when no code of this driver runs any more. Its
    // mutable fields are atomics and kernel events.
    Ok(Some(unsafe { &*raw.cast::<SharedBlock>() }))
}

/// Allocates the block (first load), owned by [`THIS_BUILD`] with `exporter`, no worker
/// thread yet.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// `IoAllocateDriverObjectExtension`'s status (`STATUS_OBJECT_NAME_COLLISION` if a block
/// exists); `STATUS_INVALID_DEVICE_STATE` if the memory is not aligned for the block.
///
/// # Safety
/// `driver` must be this driver's own `DRIVER_OBJECT`, in `DriverEntry`.
pub unsafe fn allocate(
    driver: PDRIVER_OBJECT,
    exporter: *mut c_void,
) -> Result<&'static SharedBlock, NtStatus> {
    let mut raw: PVOID = core::ptr::null_mut();
    #[allow(
        clippy::cast_possible_truncation,
        reason = "0x20 bytes, asserted in the core"
    )]
    let size = size_of::<SharedBlock>() as ULONG;
    // SAFETY: our driver object; a local out pointer.
    NtStatus(unsafe { IoAllocateDriverObjectExtension(driver, key(), size, &raw mut raw) }).ok()?;
    let block = raw.cast::<SharedBlock>();
    if block.is_null() || !block.is_aligned() {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    // SAFETY: fresh non-paged memory of the block's size, aligned (checked), used by nobody
    // else yet; it lives as long as the driver object (see `existing`).
    let block = unsafe {
        block.write(SharedBlock::new(THIS_BUILD, exporter));
        &*block
    };
    Ok(block)
}
