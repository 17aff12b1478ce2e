//! [`SharedBlock`]: the memory every image of the driver reaches, whichever image is serving.
//!
//! A hot swap replaces the driver's *code*; anything that must outlive one image, and that
//! the next image must find, lives outside the images. For the sample that is:
//!
//! * the **worker thread**, as the address `driver_proxy::WorkerThread::into_raw` gives
//!   ([`SharedBlock::store_worker`]): the library keeps the thread's storage (its context,
//!   its kick event, the stop request) in a pool block of its own (tag `DPwk`), outside every
//!   image, which the `WorkerThread` owning the thread frees after joining it; this address
//!   is how the image that needs the thread next takes it back with
//!   `WorkerThread::from_raw` ([`SharedBlock::take_worker`]): the incoming image of a swap
//!   (to kick it, then store it again) and the unload routine of whichever image is loaded
//!   last (to stop and join it);
//! * the **exporter** of the image currently serving: the code address of its routine that
//!   writes its state's hand-over snapshot ([`State::export_to`](crate::State::export_to)),
//!   which the incoming image calls in `ProxyStalled` ([`crate::takeover`]);
//! * the **version** of the image currently serving.
//!
//! The block holds no kernel object: the worker's events belong to the library (the thread's
//! storage behind `driver_proxy::WorkerThread`), not to the sample.
//!
//! The WDM front end's control device extension **is** this block (`sample/wdm/src/device.rs`
//! creates the device with an extension of `size_of::<SharedBlock>()` bytes and writes a
//! block there). A KMDF driver cannot do that: the framework owns the WDM device extension
//! of its devices, and a WDF object context is found through a type-info `static` *in the
//! image* that declared it, which a second image does not share. The KMDF front end
//! therefore keeps this block in a **driver object extension**
//! (`IoAllocateDriverObjectExtension` with the key [`DRIVER_EXTENSION_KEY`], found again
//! with `IoGetDriverObjectExtension`): non-paged memory owned by the driver object, which
//! outlives every image and is freed by the I/O manager with the driver object.
//!
//! Everything here is plain memory and atomics, so it builds and is tested on any host; the
//! front end does the unsafe steps: placing the block in kernel memory, making the
//! exporter's buffer from raw arguments ([`export_state`] is the rest of its [`ExportState`]
//! routine), turning the exporter's address back into an [`ExportState`] to call it, and
//! taking the worker thread back from its address (`WorkerThread::from_raw`).
//!
//! # Layout contract between images
//!
//! [`SharedBlock`] is `#[repr(C)]`; its first eight bytes identify it ([`SHARED_MAGIC`],
//! [`SHARED_LAYOUT`]). An image checks them with [`check_header`] before it treats memory
//! it found through the driver object as a `SharedBlock`: another layout is refused with
//! `STATUS_REVISION_MISMATCH`. Format 2 (this one) replaced format 1's worker events and
//! thread handle with the worker thread's address; the thread's storage behind that address
//! is the library's, checked by `WorkerThread::from_raw` (its magic and type fingerprint),
//! so the images of a swap must be built against the same `driver-proxy` (true of every pair
//! `cargo xtask build-driver` writes).

use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use driver_proxy::NtStatus;

use crate::state::State;
use crate::version::{DriverVersion, THIS_BUILD};

/// `magic` of the block: the bytes `"HSwK"`.
pub const SHARED_MAGIC: u32 = u32::from_le_bytes(*b"HSwK");

/// Format version of [`SharedBlock`].
pub const SHARED_FORMAT: u32 = 2;

/// `layout` of the block: [`SHARED_FORMAT`] in the high half, the size in the low half.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the size is asserted below to fit 16 bits"
)]
pub const SHARED_LAYOUT: u32 = (SHARED_FORMAT << 16) | size_of::<SharedBlock>() as u32;

/// The routine an image publishes in the block (as a code address, [`SharedBlock::publish`]):
/// writes its state's hand-over snapshot (`HANDOVER_SIZE` bytes) to `buffer` and returns
/// `STATUS_SUCCESS`, or the failure's status (`STATUS_BUFFER_TOO_SMALL`,
/// `STATUS_INVALID_PARAMETER` for a null buffer). Its body is [`export_state`].
///
/// Called only by the incoming image, only in `ProxyStalled`, directly (never through a
/// wrapper), while the exporting image is still mapped. IRQL: `PASSIVE_LEVEL`.
pub type ExportState = unsafe extern "system" fn(buffer: *mut u8, length: usize) -> i32;

/// The body of an image's [`ExportState`] routine: writes the hand-over snapshot of `state`
/// (the image's own counters) as [`THIS_BUILD`] to `buffer`, which the routine made from its
/// raw arguments (`None` for a null pointer). Returns the status the routine returns.
///
/// IRQL: any.
#[must_use]
pub fn export_state(state: &State, buffer: Option<&mut [u8]>) -> NtStatus {
    let Some(out) = buffer else {
        return NtStatus::INVALID_PARAMETER;
    };
    match state.export_to(THIS_BUILD, out) {
        Ok(_) => NtStatus::SUCCESS,
        Err(error) => error.status(),
    }
}

/// The `ClientIdentificationAddress` under which the KMDF front end allocates the block as a
/// driver object extension (`IoAllocateDriverObjectExtension`) and finds it again
/// (`IoGetDriverObjectExtension`).
///
/// The kernel uses the value only as a key, and every image of the driver must use the
/// same one, so it cannot be the address of something in an image (the usual choice, the
/// address of `DriverEntry`, differs between images). It is the pool tag `'HSwp'`: far below
/// any kernel address, so it cannot collide with the keys of components that use their
/// own addresses (the framework among them).
pub const DRIVER_EXTENSION_KEY: usize = crate::names::POOL_TAG as usize;

/// The block both images reach (module docs). Every field written after creation is atomic:
/// requests and the worker thread run while a swap or an unload reads it.
#[repr(C)]
pub struct SharedBlock {
    /// [`SHARED_MAGIC`].
    magic: u32,
    /// [`SHARED_LAYOUT`].
    layout: u32,
    /// `DriverVersion::raw` of the image currently serving.
    owner: AtomicU32,
    reserved: u32,
    /// The serving image's exporter, as a code address.
    exporter: AtomicPtr<c_void>,
    /// The worker thread, as `WorkerThread::into_raw` gave it (null when there is none, or
    /// while an image has taken it back).
    worker: AtomicPtr<c_void>,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(SharedBlock, magic) == 0);
    assert!(offset_of!(SharedBlock, layout) == 4);
    assert!(offset_of!(SharedBlock, owner) == 8);
    assert!(offset_of!(SharedBlock, exporter) == 0x10);
    assert!(offset_of!(SharedBlock, worker) == 0x18);
    assert!(size_of::<SharedBlock>() == 0x20);
};
const _: () = assert!(size_of::<SharedBlock>() <= 0xFFFF);

/// Checks the first two words of memory that should hold a [`SharedBlock`].
///
/// IRQL: any.
///
/// # Errors
/// `STATUS_INVALID_DEVICE_STATE` when `magic` is not [`SHARED_MAGIC`] (not this driver's
/// block); `STATUS_REVISION_MISMATCH` when `layout` is not [`SHARED_LAYOUT`] (an image
/// built with another layout).
pub const fn check_header(magic: u32, layout: u32) -> Result<(), NtStatus> {
    if magic != SHARED_MAGIC {
        Err(NtStatus::INVALID_DEVICE_STATE)
    } else if layout != SHARED_LAYOUT {
        Err(NtStatus::REVISION_MISMATCH)
    } else {
        Ok(())
    }
}

impl SharedBlock {
    /// The value an image writes into freshly allocated block memory: `owner` serves,
    /// `exporter` is its exporter's code address; no worker thread.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn new(owner: DriverVersion, exporter: *mut c_void) -> Self {
        Self {
            magic: SHARED_MAGIC,
            layout: SHARED_LAYOUT,
            owner: AtomicU32::new(owner.raw() as u32),
            reserved: 0,
            exporter: AtomicPtr::new(exporter),
            worker: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The block's identification words, as [`check_header`] reads them.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn header(&self) -> (u32, u32) {
        (self.magic, self.layout)
    }

    /// The version of the image currently serving.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn owner(&self) -> Option<DriverVersion> {
        u16::try_from(self.owner.load(Ordering::Acquire))
            .ok()
            .and_then(DriverVersion::from_raw)
    }

    /// The code address of the serving image's exporter, if one is published.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn exporter(&self) -> Option<NonNull<c_void>> {
        NonNull::new(self.exporter.load(Ordering::Acquire))
    }

    /// The exporter the incoming image `own` may take state from: the published one, unless
    /// there is none or it is `own` itself (the same image entered twice). This is the
    /// `PreProcess` check of a take-over.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn outgoing_exporter(&self, own: *mut c_void) -> Option<NonNull<c_void>> {
        self.exporter()
            .filter(|exporter| exporter.as_ptr().addr() != own.addr())
    }

    /// Makes `owner` the serving image, with its exporter. Called once a swap to it has
    /// committed (the registration returned success), never before: a rolled-back swap
    /// must leave the outgoing image's exporter in place.
    ///
    /// IRQL: any.
    pub fn publish(&self, owner: DriverVersion, exporter: *mut c_void) {
        self.exporter.store(exporter, Ordering::Release);
        self.owner.store(owner.raw().into(), Ordering::Release);
    }

    /// Stores the worker thread's address (`WorkerThread::into_raw`): the block holds it
    /// until [`Self::take_worker`]. The block holds one thread: store the thread the driver
    /// started (first load), or the one it took out (a swap), never a second one.
    ///
    /// IRQL: any.
    pub fn store_worker(&self, raw: NonNull<c_void>) {
        self.worker.store(raw.as_ptr(), Ordering::Release);
    }

    /// Takes the worker thread's address out of the block: `Some` once per
    /// [`Self::store_worker`], `None` when no thread was stored (the driver runs without its
    /// worker) or it was taken already. The caller takes the thread back with
    /// `WorkerThread::from_raw` and either stores it again (a swap) or stops and joins it
    /// (unload).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn take_worker(&self) -> Option<NonNull<c_void>> {
        NonNull::new(self.worker.swap(ptr::null_mut(), Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HANDOVER_SIZE;

    fn address(value: usize) -> *mut c_void {
        ptr::without_provenance_mut(value)
    }

    #[test]
    fn a_new_block_identifies_itself_and_names_its_owner() {
        let block = SharedBlock::new(DriverVersion::V1, address(0x1000));
        let (magic, layout) = block.header();
        assert_eq!(check_header(magic, layout), Ok(()));
        assert_eq!(magic.to_le_bytes(), *b"HSwK");
        assert_eq!(layout, 0x0002_0020);
        assert_eq!(block.owner(), Some(DriverVersion::V1));
        assert_eq!(block.exporter().map(|e| e.as_ptr().addr()), Some(0x1000));
    }

    #[test]
    fn foreign_or_other_layout_memory_is_refused() {
        assert_eq!(
            check_header(0, SHARED_LAYOUT),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        assert_eq!(
            check_header(SHARED_MAGIC, SHARED_LAYOUT + 1),
            Err(NtStatus::REVISION_MISMATCH)
        );
        assert_eq!(
            check_header(SHARED_MAGIC, (1 << 16) | 0x60),
            Err(NtStatus::REVISION_MISMATCH)
        );
    }

    #[test]
    fn the_outgoing_exporter_is_the_published_one_unless_it_is_our_own() {
        let block = SharedBlock::new(DriverVersion::V1, address(0x1000));
        let outgoing = block.outgoing_exporter(address(0x2000));
        assert_eq!(outgoing.map(|e| e.as_ptr().addr()), Some(0x1000));
        assert_eq!(block.outgoing_exporter(address(0x1000)), None, "same image");
        let empty = SharedBlock::new(DriverVersion::V1, ptr::null_mut());
        assert_eq!(
            empty.outgoing_exporter(address(0x2000)),
            None,
            "nothing published"
        );
    }

    #[test]
    fn publishing_switches_owner_and_exporter() {
        let block = SharedBlock::new(DriverVersion::V1, address(0x1000));
        block.publish(DriverVersion::V2, address(0x2000));
        assert_eq!(block.owner(), Some(DriverVersion::V2));
        assert_eq!(block.exporter().map(|e| e.as_ptr().addr()), Some(0x2000));
        assert_eq!(block.outgoing_exporter(address(0x2000)), None);
        assert!(block.outgoing_exporter(address(0x1000)).is_some());
    }

    #[test]
    fn the_worker_is_stored_and_taken_back_once() {
        let block = SharedBlock::new(DriverVersion::V1, ptr::null_mut());
        assert_eq!(block.take_worker(), None, "no thread stored");
        let thread = NonNull::new(address(0x44)).unwrap();
        block.store_worker(thread);
        assert_eq!(block.take_worker(), Some(thread));
        assert_eq!(block.take_worker(), None, "taken once");
        // A swap: taken, then stored again.
        block.store_worker(thread);
        assert_eq!(block.take_worker(), Some(thread));
    }

    #[test]
    fn export_state_writes_this_build_s_snapshot_or_the_failure_status() {
        let outgoing = State::new();
        outgoing.record_served(THIS_BUILD);
        let mut snapshot = [0u8; HANDOVER_SIZE];
        assert_eq!(
            export_state(&outgoing, Some(&mut snapshot)),
            NtStatus::SUCCESS
        );
        let incoming = State::new();
        assert_eq!(incoming.import_from(&snapshot), Ok(()));
        assert_eq!(incoming.stats().served_by(THIS_BUILD), 1);
        assert_eq!(export_state(&outgoing, None), NtStatus::INVALID_PARAMETER);
        let mut short = [0u8; HANDOVER_SIZE - 1];
        assert_eq!(
            export_state(&outgoing, Some(&mut short)),
            NtStatus::BUFFER_TOO_SMALL
        );
    }

    #[test]
    fn the_extension_key_is_the_pool_tag_and_no_kernel_address() {
        assert_eq!(DRIVER_EXTENSION_KEY.to_le_bytes()[..4], *b"HSwp");
        assert_eq!(DRIVER_EXTENSION_KEY >> 32, 0, "in the low 4 GiB");
    }
}
