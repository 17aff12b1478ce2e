//! Where the [`SharedBlock`] lives: a driver object extension under the key
//! `hotswap_sample_core::shared::DRIVER_EXTENSION_KEY`, which every image of the driver
//! finds from the `DRIVER_OBJECT` (the core's `shared` module explains why not a WDF
//! context or the device extension).

use core::ffi::c_void;
use core::mem::size_of;

use driver_proxy::NtStatus;
use hotswap_sample_core::THIS_BUILD;
use hotswap_sample_core::shared::{DRIVER_EXTENSION_KEY, SharedBlock, check_header};
use hotswap_sample_core::worker::SampleWorkerThread;
use wdk_sys::ntddk::{IoAllocateDriverObjectExtension, IoGetDriverObjectExtension};
use wdk_sys::{PDRIVER_OBJECT, PVOID, ULONG};

use crate::log_status;

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

/// Takes the worker thread back from the block, if it holds one
/// ([`SharedBlock::take_worker`], `WorkerThread::from_raw`). `None` when the driver runs
/// without its worker, or when the address is not a worker thread of the sample's type
/// (logged; cannot happen with images of this driver built against the same
/// `driver-proxy`): the address is then put back, untouched.
///
/// IRQL: any.
pub fn take_worker(block: &SharedBlock) -> Option<SampleWorkerThread> {
    let raw = block.take_worker()?;
    // SAFETY: only `WorkerThread::into_raw` of a `SampleWorkerThread` started for this
    // driver object is ever stored in the block (`give_worker`), and taking it out of the
    // block above makes this the thread's only owner.
    match unsafe { SampleWorkerThread::from_raw(raw) } {
        Ok(thread) => Some(thread),
        Err(error) => {
            log_status("worker thread not taken back", error.into());
            block.store_worker(raw);
            None
        }
    }
}

/// Gives the worker thread to the block (`WorkerThread::into_raw`), for the next image or
/// the unload routine to take.
///
/// IRQL: any.
pub fn give_worker(block: &SharedBlock, thread: SampleWorkerThread) {
    block.store_worker(thread.into_raw());
}

/// Ends the worker thread, if the block holds one: takes it back ([`take_worker`]) and
/// stops and joins it (`WorkerThread::stop_and_join`: the library sets the thread's stop
/// event, the routine returns `false`, the thread ends and its handle is closed).
///
/// IRQL: `PASSIVE_LEVEL`.
pub fn stop_worker(block: &SharedBlock) {
    if let Some(thread) = take_worker(block)
        && let Err(error) = thread.stop_and_join()
    {
        log_status("unload: waiting for the worker thread failed", error.into());
    }
}
