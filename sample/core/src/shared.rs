//! [`SharedBlock`]: the memory every image of the driver reaches, whichever image is serving.
//!
//! A hot swap replaces the driver's *code*; anything the kernel keeps a pointer to for longer
//! than one image's life must live outside the images. For the sample that is:
//!
//! * the worker thread's **stop and kick events**: the kernel copied their addresses into
//!   the thread's start context and waits on them for the thread's whole life, across every
//!   swap (indices [`WORKER_STOP_EVENT`](crate::worker::WORKER_STOP_EVENT) and
//!   [`WORKER_KICK_EVENT`](crate::worker::WORKER_KICK_EVENT));
//! * the worker thread's **handle**, which the unload routine of whichever image is loaded
//!   last needs, to wait for the thread to end;
//! * the **exporter** of the image currently serving: the code address of its routine that
//!   writes its state's hand-over snapshot ([`State::export_to`](crate::State::export_to)),
//!   which the incoming image calls in `ProxyStalled` ([`crate::takeover`]);
//! * the **version** of the image currently serving.
//!
//! The WDM front end keeps these in its control device's extension (`sample/wdm/src/device.rs`,
//! the same fields in the same order). A KMDF driver cannot: the framework owns the WDM
//! device extension of its devices, and a WDF object context is found through a type-info
//! `static` *in the image* that declared it, which a second image does not share. The KMDF
//! front end therefore keeps this block in a **driver object extension**
//! (`IoAllocateDriverObjectExtension` with the key [`DRIVER_EXTENSION_KEY`], found again
//! with `IoGetDriverObjectExtension`): non-paged memory owned by the driver object, which
//! outlives every image and is freed by the I/O manager with the driver object.
//!
//! Everything here is plain memory and atomics, so it builds and is tested on any host; the
//! front end does the two unsafe steps (placing the block in kernel memory, turning the
//! exporter's address back into a function pointer).
//!
//! # Layout contract between images
//!
//! [`SharedBlock`] is `#[repr(C)]`; its first eight bytes identify it ([`SHARED_MAGIC`],
//! [`SHARED_LAYOUT`]). An image checks them with [`check_header`] before it treats memory
//! it found through the driver object as a `SharedBlock`: another layout is refused with
//! `STATUS_REVISION_MISMATCH`. The layout includes the size of `driver_proxy::Event`, so the
//! images of a swap must be built against the same `driver-proxy`.

use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use driver_proxy::{Event, NtStatus};

use crate::version::DriverVersion;

/// `magic` of the block: the bytes `"HSwK"`.
pub const SHARED_MAGIC: u32 = u32::from_le_bytes(*b"HSwK");

/// Format version of [`SharedBlock`].
pub const SHARED_FORMAT: u32 = 1;

/// `layout` of the block: [`SHARED_FORMAT`] in the high half, the size in the low half.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the size is asserted below to fit 16 bits"
)]
pub const SHARED_LAYOUT: u32 = (SHARED_FORMAT << 16) | size_of::<SharedBlock>() as u32;

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
    /// The worker thread's kernel handle (null when there is none).
    worker_thread: AtomicPtr<c_void>,
    /// Index `WORKER_STOP_EVENT` of the worker's wait: a notification event, set once to end
    /// the thread.
    stop_event: Event,
    /// Index `WORKER_KICK_EVENT`: a synchronization event; one tick per set.
    kick_event: Event,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(SharedBlock, magic) == 0);
    assert!(offset_of!(SharedBlock, layout) == 4);
    assert!(offset_of!(SharedBlock, owner) == 8);
    assert!(offset_of!(SharedBlock, exporter) == 0x10);
    assert!(offset_of!(SharedBlock, worker_thread) == 0x18);
    assert!(offset_of!(SharedBlock, stop_event) == 0x20);
    assert!(
        size_of::<Event>() == 0x20,
        "driver_proxy::Event changed size: raise SHARED_FORMAT"
    );
    assert!(offset_of!(SharedBlock, kick_event) == 0x40);
    assert!(size_of::<SharedBlock>() == 0x60);
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
    /// `exporter` is its exporter's code address; no worker thread; events not yet
    /// initialised (initialise them in place, once the block is at its final address).
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
            worker_thread: AtomicPtr::new(ptr::null_mut()),
            stop_event: Event::new(),
            kick_event: Event::new(),
        }
    }

    /// The block's identification words, as [`check_header`] reads them.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn header(&self) -> (u32, u32) {
        (self.magic, self.layout)
    }

    /// The stop event (pinned where the block lives; it never moves).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn stop_event(&self) -> &Event {
        &self.stop_event
    }

    /// The kick event.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn kick_event(&self) -> &Event {
        &self.kick_event
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

    /// Records the worker thread's handle, which the block then owns (taken back, once, by
    /// [`Self::take_worker_thread`]).
    ///
    /// IRQL: any.
    pub fn adopt_worker_thread(&self, handle: *mut c_void) {
        self.worker_thread.store(handle, Ordering::Release);
    }

    /// Takes the worker thread's handle out of the block: `Some` once, for the caller to
    /// wait on and close; `None` afterwards or when no thread was adopted.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn take_worker_thread(&self) -> Option<NonNull<c_void>> {
        NonNull::new(self.worker_thread.swap(ptr::null_mut(), Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(value: usize) -> *mut c_void {
        ptr::without_provenance_mut(value)
    }

    #[test]
    fn a_new_block_identifies_itself_and_names_its_owner() {
        let block = SharedBlock::new(DriverVersion::V1, address(0x1000));
        let (magic, layout) = block.header();
        assert_eq!(check_header(magic, layout), Ok(()));
        assert_eq!(magic.to_le_bytes(), *b"HSwK");
        assert_eq!(layout, 0x0001_0060);
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
            check_header(SHARED_MAGIC, (2 << 16) | 0x60),
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
    fn the_worker_handle_is_taken_back_once() {
        let block = SharedBlock::new(DriverVersion::V1, ptr::null_mut());
        assert_eq!(block.take_worker_thread(), None);
        block.adopt_worker_thread(address(0x44));
        assert_eq!(
            block.take_worker_thread().map(|h| h.as_ptr().addr()),
            Some(0x44)
        );
        assert_eq!(block.take_worker_thread(), None);
    }

    #[test]
    fn the_extension_key_is_the_pool_tag_and_no_kernel_address() {
        assert_eq!(DRIVER_EXTENSION_KEY.to_le_bytes()[..4], *b"HSwp");
        assert_eq!(DRIVER_EXTENSION_KEY >> 32, 0, "in the low 4 GiB");
    }
}
