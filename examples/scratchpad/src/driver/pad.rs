//! The device and its extension ([`Pad`]): the store, the counters, the flush work item and
//! its routine's wrapper. Everything that must outlive an image is here: both images of a
//! swap reach it through `DriverObject->DeviceObject`, and it lives from the first
//! `DriverEntry` to the last image's `DriverUnload`.

use core::mem::size_of;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use driver_proxy::NtStatus;
use scratchpad::{CAPACITY, DEVICE_TYPE, MAGIC, STORE_TAG};

use super::wdm::{
    self, DELAYED_WORK_QUEUE, DO_DEVICE_INITIALIZING, DO_DIRECT_IO, FILE_DEVICE_SECURE_OPEN,
    IO_WORKITEM_ROUTINE, NON_PAGED_POOL_NX, PDEVICE_OBJECT, PDRIVER_OBJECT, PVOID, ULONG,
};

/// `\Device\Scratchpad` as UTF-16.
static DEVICE_NAME: [u16; 18] = utf16(scratchpad::DEVICE_NAME);
/// `\DosDevices\Scratchpad` as UTF-16.
static LINK_NAME: [u16; 22] = utf16(scratchpad::LINK_NAME);

/// An ASCII name as UTF-16 (checked at compile time).
const fn utf16<const N: usize>(text: &str) -> [u16; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() == N, "the array length is the name's");
    let mut units = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(bytes[i].is_ascii());
        units[i] = bytes[i] as u16;
        i += 1;
    }
    units
}

/// The layout tag: a new layout gets a new tag, and an image refuses to take over a device
/// whose extension has another.
#[allow(clippy::cast_possible_truncation, reason = "a few dozen bytes")]
const LAYOUT: u32 = (1 << 16) | size_of::<Pad>() as u32;

/// The device extension.
#[repr(C)]
pub struct Pad {
    magic: u32,
    layout: u32,
    /// The version of the image serving now.
    pub serving_version: AtomicU32,
    /// Swaps so far.
    pub swaps: AtomicU32,
    /// The version that ran the last flush.
    pub last_flush_version: AtomicU32,
    /// The flush work item is queued (and its routine has not started).
    flush_queued: AtomicBool,
    /// Reads, writes and device controls served.
    pub requests: AtomicU64,
    /// Reads served.
    pub reads: AtomicU64,
    /// Writes served.
    pub writes: AtomicU64,
    /// Flushes run.
    pub flushes: AtomicU64,
    /// What the last flush computed.
    pub flushed_checksum: AtomicU64,
    /// [`CAPACITY`] bytes of non-paged pool, tag `'SPdt'`.
    store: NonNull<AtomicU8>,
    /// The flush work item (`PIO_WORKITEM`).
    work_item: PVOID,
    /// The flush routine's wrapper (an `IO_WORKITEM_ROUTINE`).
    pub flush_routine: AtomicUsize,
}

impl Pad {
    /// The extension of `device`.
    ///
    /// # Safety
    /// `device` is this driver's device, created by [`create`], not deleted.
    pub unsafe fn of<'d>(device: PDEVICE_OBJECT) -> &'d Self {
        // SAFETY: caller contract: its extension is an initialised Pad.
        unsafe { &*(*device).DeviceExtension.cast::<Self>() }
    }

    /// The extension of the driver's device, if it has one (`Ok(None)`: a first load); an
    /// error when the extension is not a `Pad` of this layout.
    ///
    /// # Errors
    /// `STATUS_REVISION_MISMATCH`.
    ///
    /// # Safety
    /// `driver` is this driver's object.
    pub unsafe fn existing<'d>(driver: PDRIVER_OBJECT) -> Result<Option<&'d Self>, NtStatus> {
        // SAFETY: caller contract.
        let device = unsafe { (*driver).DeviceObject };
        if device.is_null() {
            return Ok(None);
        }
        // SAFETY: the driver's device; its extension holds at least the two header words
        // (any device this driver creates has a Pad).
        let (magic, layout) = unsafe {
            let header = (*device).DeviceExtension.cast::<u32>();
            (header.read(), header.add(1).read())
        };
        if magic != MAGIC || layout != LAYOUT {
            return Err(NtStatus::REVISION_MISMATCH);
        }
        // SAFETY: checked: a Pad of this layout.
        Ok(Some(unsafe { Self::of(device) }))
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &[AtomicU8] {
        // SAFETY: CAPACITY bytes of pool, alive as long as the extension (freed by `delete`).
        unsafe { core::slice::from_raw_parts(self.store.as_ptr(), CAPACITY) }
    }

    /// Queues the flush work item, unless it is queued already: whether it was queued now.
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    pub fn queue_flush(&self) -> bool {
        if self
            .flush_queued
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let routine = self.flush_routine.load(Ordering::Acquire);
        // SAFETY: only the wrapper of the flush routine (an IO_WORKITEM_ROUTINE) is stored.
        let routine = unsafe { core::mem::transmute::<usize, IO_WORKITEM_ROUTINE>(routine) };
        // SAFETY: the device's work item, not queued (the flag above), freed only at unload,
        // after the kernel let every routine finish.
        unsafe {
            wdm::IoQueueWorkItem(self.work_item, routine, DELAYED_WORK_QUEUE, ptr::null_mut());
        }
        true
    }

    /// The flush routine started: the work item may be queued again.
    pub fn flush_started(&self) {
        self.flush_queued.store(false, Ordering::Release);
    }
}

/// Creates the device (direct I/O), its extension (the store from pool, zeroed; the work
/// item; `flush_routine` as the flush routine's wrapper) and its link; readies it. On failure
/// nothing is left.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// The status of `IoCreateDevice` or `IoCreateSymbolicLink`; `STATUS_INSUFFICIENT_RESOURCES`
/// for the pool or the work item.
///
/// # Safety
/// `driver` is this driver's object, in `DriverEntry`, with no device yet.
pub unsafe fn create(driver: PDRIVER_OBJECT, flush_routine: usize) -> Result<(), NtStatus> {
    let mut name = wdm::unicode_string(&DEVICE_NAME);
    let mut device: PDEVICE_OBJECT = ptr::null_mut();
    #[allow(clippy::cast_possible_truncation, reason = "a few dozen bytes")]
    let size = size_of::<Pad>() as ULONG;
    // SAFETY: our driver object, a valid name and out-pointer.
    NtStatus(unsafe {
        wdm::IoCreateDevice(
            driver,
            size,
            &raw mut name,
            DEVICE_TYPE,
            FILE_DEVICE_SECURE_OPEN,
            0,
            &raw mut device,
        )
    })
    .ok()?;
    // SAFETY: non-paged pool for the store, freed by `delete` (or below).
    let store = unsafe { wdm::ExAllocatePoolWithTag(NON_PAGED_POOL_NX, CAPACITY, STORE_TAG) };
    // SAFETY: the new device.
    let work_item = unsafe { wdm::IoAllocateWorkItem(device) };
    let Some(store) = NonNull::new(store.cast::<AtomicU8>()).filter(|_| !work_item.is_null())
    else {
        // SAFETY: what was allocated above, nothing else references it.
        unsafe {
            if !store.is_null() {
                wdm::ExFreePoolWithTag(store, STORE_TAG);
            }
            if !work_item.is_null() {
                wdm::IoFreeWorkItem(work_item);
            }
            wdm::IoDeleteDevice(device);
        }
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    };
    // SAFETY: the new device's extension (size_of::<Pad>() bytes, 16-byte aligned) and the
    // store (CAPACITY bytes; ExAllocatePoolWithTag does not zero it).
    unsafe {
        store.as_ptr().cast::<u8>().write_bytes(0, CAPACITY);
        (*device).DeviceExtension.cast::<Pad>().write(Pad {
            magic: MAGIC,
            layout: LAYOUT,
            serving_version: AtomicU32::new(scratchpad::VERSION),
            swaps: AtomicU32::new(0),
            last_flush_version: AtomicU32::new(0),
            flush_queued: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flushed_checksum: AtomicU64::new(0),
            store,
            work_item,
            flush_routine: AtomicUsize::new(flush_routine),
        });
        (*device).Flags |= DO_DIRECT_IO;
    }
    let mut link = wdm::unicode_string(&LINK_NAME);
    // SAFETY: two valid names.
    let linked = NtStatus(unsafe { wdm::IoCreateSymbolicLink(&raw mut link, &raw mut name) });
    if !linked.is_success() {
        // SAFETY: the device created above; nothing else references it.
        unsafe { delete(device) };
        return Err(linked);
    }
    // SAFETY: the device is set up; requests may come.
    unsafe { (*device).Flags &= !DO_DEVICE_INITIALIZING };
    Ok(())
}

/// Frees the extension's work item and store and deletes the device.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// `device` is this driver's device; no request and no flush can run (the unload, or a
/// failed `DriverEntry`).
unsafe fn delete(device: PDEVICE_OBJECT) {
    // SAFETY: caller contract.
    unsafe {
        let pad = Pad::of(device);
        wdm::IoFreeWorkItem(pad.work_item);
        wdm::ExFreePoolWithTag(pad.store.as_ptr().cast(), STORE_TAG);
        wdm::IoDeleteDevice(device);
    }
}

/// Deletes the link and the device (the unload).
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// As [`delete`], for the driver's device.
pub unsafe fn remove(driver: PDRIVER_OBJECT) {
    let mut link = wdm::unicode_string(&LINK_NAME);
    // SAFETY: a valid name; our device (caller contract).
    unsafe {
        let _ = wdm::IoDeleteSymbolicLink(&raw mut link);
        let device = (*driver).DeviceObject;
        if !device.is_null() {
            delete(device);
        }
    }
}
