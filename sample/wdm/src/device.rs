//! The control device `\Device\HotSwapSample`, its symbolic link, and its device extension:
//! the one place both images of a swap reach.
//!
//! # Why the device extension
//!
//! Everything of the sample that must outlive the image that created it lives in the device
//! extension, not in a `static`: the worker thread (the address `WorkerThread::into_raw`
//! gives; the thread's context and events are the library's, in a pool block of its own),
//! and the exporter and version of the image currently serving. The extension **is** the core's
//! [`SharedBlock`] (its module docs list what is there and why; the KMDF front end keeps
//! the same block in a driver object extension instead): this module creates the device
//! with an extension of `size_of::<SharedBlock>()` bytes and writes the block there.
//!
//! The extension is non-paged memory owned by the device object: it exists from
//! `IoCreateDevice` in the first image's `DriverEntry` until `IoDeleteDevice` in the last
//! image's `DriverUnload`, which is reached through `DriverObject->DeviceObject` from any
//! image. Each image keeps its own counters ([`crate::STATE`]) in its own `static`: the
//! hand-over moves them.
//!
//! # Layout contract between images
//!
//! The block's first eight bytes identify it (`SHARED_MAGIC`, the bytes `"HSwK"`, and
//! `SHARED_LAYOUT`, format and size): an image refuses to take over a device whose
//! extension does not carry both ([`check_header`]: `STATUS_INVALID_DEVICE_STATE`, or
//! `STATUS_REVISION_MISMATCH` for another layout). The worker thread's storage behind the
//! address in the block is the library's, which `WorkerThread::from_raw` checks (magic and
//! type fingerprint), so the images of a swap must be built against the same
//! `driver-proxy` (true of every pair `cargo xtask build-driver` writes).

use core::ffi::c_void;
use core::mem::size_of;
use core::ptr::{self, NonNull};

use driver_proxy::NtStatus;
use hotswap_sample_core::shared::{ExportState, SharedBlock, check_header};
use hotswap_sample_core::worker::SampleWorkerThread;
use hotswap_sample_core::{DriverVersion, ioctl, names};

use crate::wdm_sys::{
    self, DEVICE_OBJECT, DO_DEVICE_INITIALIZING, FALSE, FILE_DEVICE_SECURE_OPEN, PDEVICE_OBJECT,
    PDRIVER_OBJECT, ULONG,
};

/// Names of the device and its link, as the UTF-16 the kernel wants (the constants of the
/// core, shared with the INF files and the client).
static DEVICE_NAME: [u16; names::DEVICE_NAME_UTF16.len()] = names::DEVICE_NAME_UTF16;
static DOS_DEVICE_NAME: [u16; names::DOS_DEVICE_NAME_UTF16.len()] = names::DOS_DEVICE_NAME_UTF16;

/// Takes the worker thread back from the extension, if it holds one
/// ([`SharedBlock::take_worker`], `WorkerThread::from_raw`). `None` when the driver runs
/// without its worker, or when the address is not a worker thread of the sample's type
/// (logged; cannot happen with images of this driver built against the same
/// `driver-proxy`): the address is then put back, untouched.
///
/// IRQL: any.
pub fn take_worker(extension: &SharedBlock) -> Option<SampleWorkerThread> {
    let raw = extension.take_worker()?;
    // SAFETY: only `WorkerThread::into_raw` of a `SampleWorkerThread` started for this
    // driver object is ever stored in the block (`first_load`, `give_worker`), and taking it
    // out of the block above makes this the thread's only owner.
    match unsafe { SampleWorkerThread::from_raw(raw) } {
        Ok(thread) => Some(thread),
        Err(error) => {
            crate::log_status(c"worker thread not taken back", error.into());
            extension.store_worker(raw);
            None
        }
    }
}

/// Gives the worker thread back to the extension (`WorkerThread::into_raw`), for the next
/// image or the unload routine to take.
///
/// IRQL: any.
pub fn give_worker(extension: &SharedBlock, thread: SampleWorkerThread) {
    extension.store_worker(thread.into_raw());
}

/// Ends the worker thread, if the extension holds one: takes it back ([`take_worker`]) and
/// stops and joins it (`WorkerThread::stop_and_join`: the library sets the thread's stop
/// event, the routine returns `false`, the thread ends and its handle is closed).
///
/// IRQL: `PASSIVE_LEVEL`.
pub fn stop_worker(extension: &SharedBlock) {
    if let Some(thread) = take_worker(extension)
        && let Err(error) = thread.stop_and_join()
    {
        crate::log_status(
            c"unload: waiting for the worker thread failed",
            error.into(),
        );
    }
}

/// The driver's control device: a device object whose extension is a [`SharedBlock`], and
/// the symbolic link `\DosDevices\HotSwapSample`.
///
/// # Invariants
/// `raw` is a device object created by [`Device::create`] (possibly by another image of
/// this driver), whose extension is an initialised `SharedBlock` that stays valid, at the
/// same address, until [`Device::delete`] consumes the handle.
pub struct Device {
    raw: NonNull<DEVICE_OBJECT>,
}

impl Device {
    /// Creates the device (`IoCreateDevice`, secure open, not exclusive), initialises its
    /// extension for `owner` with `exporter` (no worker thread yet), and creates the symbolic
    /// link. On failure nothing is left behind.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// The status of `IoCreateDevice` or `IoCreateSymbolicLink`.
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
        #[allow(clippy::cast_possible_truncation, reason = "0x20 bytes, asserted")]
        let extension_size = size_of::<SharedBlock>() as ULONG;
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
            let extension = raw.as_ref().DeviceExtension.cast::<SharedBlock>();
            extension.write(SharedBlock::new(owner, exporter as *mut c_void));
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
        Ok(Self { raw })
    }

    /// The device another image of this driver created, found through
    /// `DriverObject->DeviceObject`: `Ok(None)` when the driver has no device (a first
    /// load), an error when its extension is not a [`SharedBlock`] of this layout.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// `STATUS_INVALID_DEVICE_STATE` (not this driver's extension);
    /// `STATUS_REVISION_MISMATCH` (another layout), as [`check_header`].
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
        check_header(magic, layout)?;
        Ok(Some(Self { raw }))
    }

    /// The device extension: the shared block.
    #[must_use]
    pub fn extension(&self) -> &SharedBlock {
        // SAFETY: the extension is an initialised SharedBlock valid as long as `self`
        // (struct invariant); only its atomics are mutated through it.
        unsafe { &*self.raw.as_ref().DeviceExtension.cast::<SharedBlock>() }
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
