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
//! front end does the unsafe steps: placing the block in kernel memory and initialising its
//! events pinned there ([`SharedBlock::events`]), making the exporter's buffer from raw
//! arguments ([`export_state`] is the rest of its [`ExportState`] routine), turning the
//! exporter's address back into an [`ExportState`] to call it, and waiting on and closing
//! the worker thread's handle ([`SharedBlock::stop_worker_thread`]).
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

use driver_proxy::{Event, EventKind, NtStatus};

use crate::state::State;
use crate::version::{DriverVersion, THIS_BUILD};
use crate::worker::WORKER_EVENT_COUNT;

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

    /// The two events with the kind each is initialised as, in the order of the worker's
    /// wait ([`WORKER_STOP_EVENT`](crate::worker::WORKER_STOP_EVENT),
    /// [`WORKER_KICK_EVENT`](crate::worker::WORKER_KICK_EVENT)): the stop event a notification
    /// event, the kick event a synchronization event. The image that created the block
    /// initialises each in place, not signalled, before the worker thread starts (pinning
    /// them there is its unsafe step: the block never moves).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn events(&self) -> [(&Event, EventKind); WORKER_EVENT_COUNT] {
        [
            (&self.stop_event, EventKind::Notification),
            (&self.kick_event, EventKind::Synchronization),
        ]
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
    /// [`Self::stop_worker_thread`]).
    ///
    /// IRQL: any.
    pub fn adopt_worker_thread(&self, handle: *mut c_void) {
        self.worker_thread.store(handle, Ordering::Release);
    }

    /// Starts ending the worker thread: takes its handle out of the block and, if there was
    /// one, sets the stop event. Returns the handle (`Some` once; `None` afterwards or when
    /// no thread was adopted), which the caller waits on (`ZwWaitForSingleObject`: the
    /// routine has returned for the last time) and closes (`ZwClose`).
    ///
    /// IRQL: `<= DISPATCH_LEVEL` (`PASSIVE_LEVEL` for the wait that follows).
    #[must_use]
    pub fn stop_worker_thread(&self) -> Option<NonNull<c_void>> {
        let handle = NonNull::new(self.worker_thread.swap(ptr::null_mut(), Ordering::AcqRel))?;
        // The thread was started waiting on this initialised event, whose routines were
        // resolved then: setting it cannot fail.
        let _ = self.stop_event.set();
        Some(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HANDOVER_SIZE;
    use crate::worker::{WORKER_KICK_EVENT, WORKER_STOP_EVENT};

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

    /// A block at a fixed address with its events initialised as a front end does (on the
    /// host kernel, which serves the event routines).
    #[cfg(target_os = "linux")]
    fn pinned_block() -> &'static SharedBlock {
        extern crate std;
        use driver_proxy_host as _;
        use std::boxed::Box;
        let block: &'static SharedBlock = Box::leak(Box::new(SharedBlock::new(
            DriverVersion::V1,
            ptr::null_mut(),
        )));
        for (event, kind) in block.events() {
            core::pin::Pin::static_ref(event)
                .initialize(kind, false)
                .unwrap();
        }
        block
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn stopping_the_worker_sets_the_stop_event_and_hands_the_handle_back_once() {
        let block = pinned_block();
        assert_eq!(block.stop_worker_thread(), None, "no thread adopted");
        assert_eq!(block.stop_event().is_set(), Ok(false), "nothing to stop");
        block.adopt_worker_thread(address(0x44));
        assert_eq!(
            block.stop_worker_thread().map(|h| h.as_ptr().addr()),
            Some(0x44)
        );
        assert_eq!(block.stop_event().is_set(), Ok(true));
        assert_eq!(block.kick_event().is_set(), Ok(false));
        assert_eq!(block.stop_worker_thread(), None, "taken once");
    }

    #[test]
    fn the_events_are_listed_in_the_worker_wait_order_with_their_kinds() {
        let block = SharedBlock::new(DriverVersion::V1, ptr::null_mut());
        let [(stop, stop_kind), (kick, kick_kind)] = block.events();
        assert!(ptr::eq(stop, block.stop_event()) && WORKER_STOP_EVENT == 0);
        assert!(ptr::eq(kick, block.kick_event()) && WORKER_KICK_EVENT == 1);
        assert_eq!(
            (stop_kind, kick_kind),
            (EventKind::Notification, EventKind::Synchronization)
        );
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
