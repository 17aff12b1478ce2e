//! The control device `\Device\HotSwapSample`, its symbolic link, and its device extension:
//! the one place both images of a swap reach.
//!
//! # Why the device extension
//!
//! Everything that must outlive the image that created it lives here, not in a `static`:
//!
//! * the worker thread's **stop and kick events**: the kernel copied their addresses into
//!   the thread's start context and waits on them for the thread's whole life, across every
//!   swap, and the image that created them is unmapped after a swap;
//! * the worker thread's **handle**, which the unload routine of whichever image is loaded
//!   last needs to wait for the thread to end;
//! * the **exporter** of the image currently serving: the code address of its
//!   [`ExportState`] routine, which the incoming image calls in `ProxyStalled` to get the
//!   hand-over snapshot of the outgoing image's state (see the crate docs, *Swap mode*).
//!
//! The extension is non-paged memory owned by the device object: it exists from
//! `IoCreateDevice` in the first image's `DriverEntry` until `IoDeleteDevice` in the last
//! image's `DriverUnload`, which is reached through `DriverObject->DeviceObject` from any
//! image. Each image keeps its own counters ([`crate::STATE`]) in its own `static`: the
//! hand-over moves them.
//!
//! # Layout contract between images
//!
//! [`DeviceExtension`] is `#[repr(C)]`; its first eight bytes identify it ([`MAGIC`],
//! [`LAYOUT`]). An image refuses to take over a device whose extension does not carry both
//! (`STATUS_REVISION_MISMATCH` for another layout). `LAYOUT` encodes the format version and
//! the structure's size; the two events are `driver_proxy::Event`s, whose size is part of
//! that and is asserted here, so the images of a swap must be built against the same
//! `driver-proxy` (true of every pair `cargo xtask build-driver` writes).

use core::ffi::c_void;
use core::mem::{offset_of, size_of};
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use driver_proxy::{Event, EventKind, NtStatus};
use hotswap_sample_core::{DriverVersion, ioctl, names};

use crate::wdm_sys::{
    self, DEVICE_OBJECT, DO_DEVICE_INITIALIZING, FALSE, FILE_DEVICE_SECURE_OPEN, NTSTATUS,
    PDEVICE_OBJECT, PDRIVER_OBJECT, ULONG,
};

/// `magic` of the device extension: the bytes `"HSwD"`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"HSwD");

/// Format version of [`DeviceExtension`].
pub const FORMAT: u32 = 1;

/// `layout` of the device extension: [`FORMAT`] in the high half, the size in the low half.
#[allow(
    clippy::cast_possible_truncation,
    reason = "asserted below to fit 16 bits"
)]
pub const LAYOUT: u32 = (FORMAT << 16) | size_of::<DeviceExtension>() as u32;

/// The exporter an image publishes: writes its state's hand-over snapshot
/// (`HANDOVER_SIZE` bytes) to `buffer` and returns `STATUS_SUCCESS`, or the status of the
/// failure (`STATUS_BUFFER_TOO_SMALL`, `STATUS_INVALID_PARAMETER` for a null buffer).
///
/// Called only by the incoming image, only in `ProxyStalled`, while the exporting image is
/// still mapped. IRQL: `PASSIVE_LEVEL`.
pub type ExportState = unsafe extern "system" fn(buffer: *mut u8, length: usize) -> NTSTATUS;

/// Names of the device and its link, as the UTF-16 the kernel wants (the constants of the
/// core, shared with the INF files and the client).
static DEVICE_NAME: [u16; names::DEVICE_NAME_UTF16.len()] = names::DEVICE_NAME_UTF16;
static DOS_DEVICE_NAME: [u16; names::DOS_DEVICE_NAME_UTF16.len()] = names::DOS_DEVICE_NAME_UTF16;

/// The device extension (module docs). Every field an image writes after creation is atomic:
/// requests and the worker thread run while a swap or an unload reads it.
#[repr(C)]
pub struct DeviceExtension {
    /// [`MAGIC`].
    magic: u32,
    /// [`LAYOUT`].
    layout: u32,
    /// `DriverVersion::raw` of the image currently serving.
    owner: AtomicU32,
    reserved: u32,
    /// The serving image's [`ExportState`], as a code address.
    exporter: AtomicPtr<c_void>,
    /// The worker thread's kernel handle (null when there is none).
    worker_thread: AtomicPtr<c_void>,
    /// Index `WORKER_STOP_EVENT` of the worker's wait: a notification event, set once to end
    /// the thread.
    stop_event: Event,
    /// Index `WORKER_KICK_EVENT`: a synchronization event; one tick per set.
    kick_event: Event,
}

const _: () = {
    assert!(offset_of!(DeviceExtension, magic) == 0);
    assert!(offset_of!(DeviceExtension, layout) == 4);
    assert!(offset_of!(DeviceExtension, owner) == 8);
    assert!(offset_of!(DeviceExtension, exporter) == 0x10);
    assert!(offset_of!(DeviceExtension, worker_thread) == 0x18);
    assert!(offset_of!(DeviceExtension, stop_event) == 0x20);
    assert!(
        size_of::<Event>() == 0x20,
        "driver_proxy::Event changed size: raise FORMAT"
    );
    assert!(offset_of!(DeviceExtension, kick_event) == 0x40);
    assert!(size_of::<DeviceExtension>() == 0x60);
    assert!(size_of::<DeviceExtension>() <= 0xFFFF);
};

impl DeviceExtension {
    /// The value written into a new device's extension.
    const fn new(owner: DriverVersion, exporter: ExportState) -> Self {
        Self {
            magic: MAGIC,
            layout: LAYOUT,
            owner: AtomicU32::new(owner.raw() as u32),
            reserved: 0,
            exporter: AtomicPtr::new(exporter as *mut c_void),
            worker_thread: AtomicPtr::new(ptr::null_mut()),
            stop_event: Event::new(),
            kick_event: Event::new(),
        }
    }

    /// The stop event (pinned: it lives in the device extension and never moves).
    pub fn stop_event(&self) -> &Event {
        &self.stop_event
    }

    /// The kick event.
    pub fn kick_event(&self) -> &Event {
        &self.kick_event
    }

    /// The version of the image currently serving.
    pub fn owner(&self) -> Option<DriverVersion> {
        u16::try_from(self.owner.load(Ordering::Acquire))
            .ok()
            .and_then(DriverVersion::from_raw)
    }

    /// The exporter of the image currently serving, if one is published.
    pub fn exporter(&self) -> Option<ExportState> {
        let address = self.exporter.load(Ordering::Acquire);
        if address.is_null() {
            return None;
        }
        // SAFETY: `exporter` is only ever written by `new` and `publish`, from an
        // `ExportState` of an image of this driver; non-null, so it is such a function.
        Some(unsafe { core::mem::transmute::<*mut c_void, ExportState>(address) })
    }

    /// Makes `owner` the serving image: its version and exporter. Called once a swap to it
    /// has committed (the registration returned success).
    pub fn publish(&self, owner: DriverVersion, exporter: ExportState) {
        self.exporter
            .store(exporter as *mut c_void, Ordering::Release);
        self.owner.store(owner.raw().into(), Ordering::Release);
    }

    /// Records the worker thread's handle, which the extension then owns (closed by
    /// [`Self::stop_worker`]).
    pub fn adopt_worker_thread(&self, handle: wdm_sys::HANDLE) {
        self.worker_thread.store(handle, Ordering::Release);
    }

    /// Ends the worker thread, if there is one: sets the stop event, waits for the thread to
    /// exit (its routine has returned for the last time) and closes its handle.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    pub fn stop_worker(&self) {
        let handle = self.worker_thread.swap(ptr::null_mut(), Ordering::AcqRel);
        if handle.is_null() {
            return;
        }
        // The thread was started waiting on this event, so it is initialised and the
        // routines to set it are resolved; an error cannot happen here.
        let _ = self.stop_event.set();
        // SAFETY: `handle` is the worker thread's kernel handle, owned by the extension
        // (taken out of it above, so waited on and closed once).
        unsafe {
            let _ = wdm_sys::ZwWaitForSingleObject(handle, FALSE, ptr::null_mut());
            let _ = wdm_sys::ZwClose(handle);
        }
    }
}

/// The driver's control device: a device object carrying a [`DeviceExtension`] and the
/// symbolic link `\DosDevices\HotSwapSample`.
///
/// # Invariants
/// `raw` is a device object created by [`Device::create`] (possibly by another image of
/// this driver), whose extension is an initialised `DeviceExtension` that stays valid until
/// [`Device::delete`] consumes the handle.
pub struct Device {
    raw: NonNull<DEVICE_OBJECT>,
}

impl Device {
    /// Creates the device (`IoCreateDevice`, secure open, not exclusive), initialises its
    /// extension for `owner` with `exporter` and its two events, and creates the symbolic
    /// link. On failure nothing is left behind.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The status of `IoCreateDevice` or `IoCreateSymbolicLink`; that of initialising an
    /// event.
    ///
    /// # Safety
    /// `driver` must be the driver's own `DRIVER_OBJECT`, in `DriverEntry`.
    pub unsafe fn create(
        driver: PDRIVER_OBJECT,
        owner: DriverVersion,
        exporter: ExportState,
    ) -> Result<Self, NtStatus> {
        let mut device_name = wdm_sys::unicode_string(&DEVICE_NAME);
        let mut raw: PDEVICE_OBJECT = ptr::null_mut();
        #[allow(clippy::cast_possible_truncation, reason = "0x60 bytes, asserted")]
        let extension_size = size_of::<DeviceExtension>() as ULONG;
        // SAFETY: valid driver object (caller contract), name and out pointer.
        let status = NtStatus(unsafe {
            wdm_sys::IoCreateDevice(
                driver,
                extension_size,
                &raw mut device_name,
                ULONG::from(ioctl::DEVICE_TYPE),
                FILE_DEVICE_SECURE_OPEN,
                FALSE, // not exclusive: clients open one handle per thread
                &raw mut raw,
            )
        });
        if !status.is_success() {
            return Err(status);
        }
        let raw = NonNull::new(raw).ok_or(NtStatus::UNSUCCESSFUL)?;
        // SAFETY: IoCreateDevice succeeded: `raw` is our new device object, whose non-paged
        // extension of `extension_size` bytes (pointer-aligned) nobody else uses yet.
        unsafe {
            let extension = raw.as_ref().DeviceExtension.cast::<DeviceExtension>();
            extension.write(DeviceExtension::new(owner, exporter));
        }
        let device = Self { raw };
        let extension = device.extension();
        for (event, kind) in [
            (&extension.stop_event, EventKind::Notification),
            (&extension.kick_event, EventKind::Synchronization),
        ] {
            // SAFETY: the extension lives at a fixed address until IoDeleteDevice (struct
            // invariant), so the event is never moved.
            let event = unsafe { Pin::new_unchecked(event) };
            if let Err(error) = event.initialize(kind, false) {
                // SAFETY: the device was created above and has no link yet.
                unsafe { wdm_sys::IoDeleteDevice(raw.as_ptr()) };
                return Err(error.status());
            }
        }
        let mut link = wdm_sys::unicode_string(&DOS_DEVICE_NAME);
        // SAFETY: two valid counted strings.
        let status =
            NtStatus(unsafe { wdm_sys::IoCreateSymbolicLink(&raw mut link, &raw mut device_name) });
        if !status.is_success() {
            // SAFETY: the device was created above and nothing else references it yet.
            unsafe { wdm_sys::IoDeleteDevice(raw.as_ptr()) };
            return Err(status);
        }
        Ok(device)
    }

    /// The device another image of this driver created, found through
    /// `DriverObject->DeviceObject`: `Ok(None)` when the driver has no device (a first
    /// load), an error when its extension is not a [`DeviceExtension`] of this format.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// `STATUS_INVALID_DEVICE_STATE` (not this driver's extension);
    /// `STATUS_REVISION_MISMATCH` (another [`LAYOUT`]).
    ///
    /// # Safety
    /// `driver` must be the driver's own `DRIVER_OBJECT`, and no other thread may delete its
    /// device while the returned handle is in use.
    pub unsafe fn existing(driver: PDRIVER_OBJECT) -> Result<Option<Self>, NtStatus> {
        // SAFETY: valid driver object (caller contract).
        let Some(raw) = NonNull::new(unsafe { (*driver).DeviceObject }) else {
            return Ok(None);
        };
        // SAFETY: a device object of this driver; its extension pointer may be null.
        let extension = unsafe { raw.as_ref().DeviceExtension }.cast::<u32>();
        if extension.is_null() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        // SAFETY: every device this driver creates has an extension of at least 8 bytes,
        // aligned; its first two words are written at creation and never change.
        let (magic, layout) = unsafe { (extension.read(), extension.add(1).read()) };
        if magic != MAGIC {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        if layout != LAYOUT {
            return Err(NtStatus::REVISION_MISMATCH);
        }
        Ok(Some(Self { raw }))
    }

    /// The device extension.
    #[must_use]
    pub fn extension(&self) -> &DeviceExtension {
        // SAFETY: the extension is an initialised DeviceExtension valid as long as `self`
        // (struct invariant); only atomics and kernel-synchronised events are mutated
        // through it.
        unsafe { &*self.raw.as_ref().DeviceExtension.cast::<DeviceExtension>() }
    }

    /// Lets the device receive requests: clears `DO_DEVICE_INITIALIZING`.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    pub fn start(&self) {
        // SAFETY: our device object; its Flags are written only by its driver while no
        // request can reach it yet (DriverEntry).
        unsafe { (*self.raw.as_ptr()).Flags &= !DO_DEVICE_INITIALIZING };
    }

    /// Deletes the symbolic link and the device (the extension with it).
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    pub fn delete(self) {
        let mut link = wdm_sys::unicode_string(&DOS_DEVICE_NAME);
        // SAFETY: the link and the device were created by `create`; consuming `self` ends
        // every borrow of the extension.
        unsafe {
            let _ = wdm_sys::IoDeleteSymbolicLink(&raw mut link);
            wdm_sys::IoDeleteDevice(self.raw.as_ptr());
        }
    }
}
