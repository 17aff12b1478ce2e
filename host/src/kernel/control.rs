//! The control API: what a test, the demo or the image driver model (`image_driver`, x86-64)
//! uses to configure the model kernel, inject faults, trigger swaps and look inside.
//!
//! Everything that can be is scoped so that tests running in parallel threads of one process
//! stay independent:
//!
//! * **per driver object** ([`DriverControl`]): features, a one-shot creation failure, an
//!   allocation fault, the drain timeout, poisoning, the endpoint limit, the `.shsept` list;
//!   forgotten when the driver object is deleted ([`DriverControl::delete`], which
//!   [`crate::HostDriverObject`] calls when dropped);
//! * **per extension** ([`ExtensionControl`]): swaps from any thread, in-flight counts,
//!   poisoning, the drain timeout;
//! * **per calling thread**: pool and thread-creation faults ([`fail_pool_allocation`],
//!   [`fail_thread_creation`]);
//! * **per pool tag**: accounting ([`pool_usage`]).
//!
//! Two knobs are process-wide and belong in a test binary of their own: the system-wide
//! switch ([`set_system_enabled`]) and hidden exports ([`crate::hide_export`]).

use std::sync::Arc;
use std::time::Duration;

use crate::ddi;

use super::extension::{self, DriverRecord, Extension, KERNEL};
pub use super::extension::{DriverFeatures, EndpointKey};
pub use super::pool::{PoolLeak, PoolUsage};
use super::threads::ThreadObject;
use super::{faults, lock};
pub use crate::engine::{Phase, SwapReport};

/// Switches DriverProxy on or off system-wide ("configured and not globally disabled"); on
/// by default. Off: `IoGetDriverProxyFeatures` reports `Enabled` = 0 for every driver,
/// creation and worker threads give `STATUS_NOT_SUPPORTED`. Existing extensions keep working.
/// Process-wide: use it only in a test binary of its own.
pub fn set_system_enabled(on: bool) {
    extension::set_system_enabled(on);
}

/// Whether DriverProxy is available system-wide: the switch is on and this host can make
/// wrappers (x86-64 Linux with XSAVE).
#[must_use]
pub fn system_enabled() -> bool {
    extension::system_available()
}

/// Configuration and faults of one driver object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverControl {
    driver: usize,
}

impl DriverControl {
    /// The control of the driver object at `driver`: a `PDRIVER_OBJECT` of any reading (the
    /// host's [`ddi::PDRIVER_OBJECT`], the library's, the WDM model's); only its address counts.
    ///
    /// # Panics
    /// If `driver` is null.
    #[must_use]
    pub fn new<T>(driver: *mut T) -> Self {
        assert!(!driver.is_null(), "a driver object is required");
        Self {
            driver: driver as usize,
        }
    }

    fn with_record<R>(self, f: impl FnOnce(&mut DriverRecord) -> R) -> R {
        f(lock(&KERNEL).drivers.entry(self.driver).or_default())
    }

    /// What `IoGetDriverProxyFeatures` and `IoCreateDriverProxyExtension` answer for this
    /// driver from now on ([`DriverFeatures::Enabled`] by default). An existing extension
    /// keeps working.
    pub fn set_features(&self, features: DriverFeatures) {
        self.with_record(|r| r.features = features);
    }

    /// The driver's features setting.
    #[must_use]
    pub fn features(&self) -> DriverFeatures {
        self.with_record(|r| r.features)
    }

    /// Makes the next `IoCreateDriverProxyExtension` for this driver that passes the parameter
    /// and feature checks fail with `status` (e.g. `STATUS_NOT_SUPPORTED`,
    /// `STATUS_DRIVER_BLOCKED`, `STATUS_INSUFFICIENT_RESOURCES`), changing nothing. One shot.
    pub fn fail_next_create(&self, status: ddi::NTSTATUS) {
        self.with_record(|r| r.create_failure = Some(status));
    }

    /// Makes the `nth` allocation charged to this driver object from now on fail (1 = the
    /// next one): the call that makes it returns `STATUS_INSUFFICIENT_RESOURCES` and changes
    /// nothing. Charged: 1 per extension creation plus 1 per `.shsept` endpoint it wraps, 1
    /// per new id of a registration, 1 per worker thread, 1 per endpoint declared on a live
    /// extension. One shot; `0` disarms.
    pub fn fail_allocation(&self, nth: u32) {
        self.with_record(|r| r.allocation_fault = (nth > 0).then_some(nth));
    }

    /// The drain timeout of registrations and swaps (default 5 s; the DDI does not give the
    /// kernel's value), for the extension if it exists and for one created later.
    pub fn set_drain_timeout(&self, timeout: Duration) {
        let extension = self.with_record(|r| {
            r.drain_timeout = timeout;
            r.extension.clone()
        });
        if let Some(extension) = extension {
            extension.set_drain_timeout(timeout);
        }
    }

    /// Whether swaps poison the implementations they retire (on by default): a call reaching
    /// a retired implementation through a wrapper then aborts the process with a message
    /// instead of running old code. Applies to the extension if it exists and to one created
    /// later.
    pub fn set_poison_retired(&self, on: bool) {
        let extension = self.with_record(|r| {
            r.poison = on;
            r.extension.clone()
        });
        if let Some(extension) = extension {
            extension.engine().set_poison_retired(on);
        }
    }

    /// The most endpoints an extension created later may have (default 256).
    pub fn set_max_endpoints(&self, max: usize) {
        self.with_record(|r| r.max_endpoints = max);
    }

    /// Declares endpoints of the driver's image: the model of the `.shsept` section that the
    /// compiler and linker emit for a V2 driver. Before the extension exists, they are wrapped
    /// when it is created (and counted in its allocations); on a live extension they are
    /// wrapped at once. Each gets the next [`EndpointKey::Ordinal`]; V2 lookups by endpoint
    /// find them.
    ///
    /// # Errors
    /// `STATUS_INVALID_PARAMETER` for an empty list, a null address, or an address given twice
    /// or already declared; `STATUS_INSUFFICIENT_RESOURCES` (allocation fault, endpoint limit).
    /// Nothing is declared on error.
    pub fn declare_image_endpoints(&self, addresses: &[usize]) -> Result<(), ddi::NTSTATUS> {
        if addresses.is_empty() {
            return Err(ddi::STATUS_INVALID_PARAMETER);
        }
        for (i, &address) in addresses.iter().enumerate() {
            if address == 0 || addresses[..i].contains(&address) {
                return Err(ddi::STATUS_INVALID_PARAMETER);
            }
        }
        let live = {
            let mut kernel = lock(&KERNEL);
            let record = kernel.drivers.entry(self.driver).or_default();
            match record.extension.clone() {
                None => {
                    if addresses.iter().any(|a| record.image.contains(a)) {
                        return Err(ddi::STATUS_INVALID_PARAMETER);
                    }
                    record.image.extend_from_slice(addresses);
                    return Ok(());
                }
                Some(extension) => extension,
            }
        };
        if addresses.iter().any(|&a| live.wrapper_of(a).is_some()) {
            return Err(ddi::STATUS_INVALID_PARAMETER);
        }
        if !extension::charge(self.driver, addresses.len()) {
            return Err(ddi::STATUS_INSUFFICIENT_RESOURCES);
        }
        live.add_image_endpoints(addresses)
    }

    /// The driver object's extension, if it owns one.
    #[must_use]
    pub fn extension(&self) -> Option<ExtensionControl> {
        lock(&KERNEL)
            .drivers
            .get(&self.driver)
            .and_then(|r| r.extension.clone())
            .map(|extension| ExtensionControl { extension })
    }

    /// Makes `IoAllocateDriverObjectExtension` for this driver answer `status` from now on
    /// without allocating (`None`: allocate again), as a kernel whose routine is a stub does:
    /// Wine 8's answers `STATUS_NOT_IMPLEMENTED`. Forgotten when the driver object is deleted.
    pub fn refuse_driver_object_extensions(&self, status: Option<ddi::NTSTATUS>) {
        self.with_record(|r| r.extension_refusal = status);
    }

    /// How many driver-object extensions (`IoAllocateDriverObjectExtension`) this driver
    /// object owns: the storage the library allocates for it (its endpoint record, where hot
    /// swap is available).
    #[must_use]
    pub fn driver_object_extensions(&self) -> usize {
        super::driver_extensions::count_of(self.driver)
    }

    /// The driver object goes away: its extension is released (as the DDI says happens with
    /// the owning driver object) and its configuration forgotten. Its extension handle is
    /// stale from now on (using it bugchecks); its wrappers keep working only while a worker
    /// thread of the extension still runs, and abort the process with a message once the
    /// extension is gone. Called by [`crate::HostDriverObject`]'s `Drop`.
    pub fn delete(&self) {
        extension::delete_driver_object(self.driver);
    }
}

/// A live extension, for tests: counts, swaps, settings. Keeps the extension's engine alive
/// while held (even after its driver object is deleted).
#[derive(Clone, Debug)]
pub struct ExtensionControl {
    extension: Arc<Extension>,
}

impl ExtensionControl {
    /// The extension behind `handle`, if it is a live extension: a `PDRIVER_PROXY_EXTENSION`
    /// of any reading (the host's [`ddi::PDRIVER_PROXY_EXTENSION`], the library's); only its
    /// address counts.
    #[must_use]
    pub fn from_raw<T>(handle: *mut T) -> Option<Self> {
        extension::lookup(handle.cast()).map(|extension| Self { extension })
    }

    /// The `PDRIVER_PROXY_EXTENSION` handle, as a pointer to the extension type of the caller's
    /// reading (inferred: the host's [`ddi::PDRIVER_PROXY_EXTENSION`] for its routines, the
    /// library's for the library's).
    #[must_use]
    pub fn as_raw<T>(&self) -> *mut T {
        self.extension.handle().cast()
    }

    /// The driver object that owns the extension.
    #[must_use]
    pub fn driver(&self) -> ddi::PDRIVER_OBJECT {
        self.extension.driver() as ddi::PDRIVER_OBJECT
    }

    /// Calls in flight in the extension's endpoints now.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.extension.engine().in_flight()
    }

    /// Callers held by a stall right now.
    #[must_use]
    pub fn held_callers(&self) -> u32 {
        self.extension.engine().held_callers()
    }

    /// Whether a swap is holding new calls right now.
    #[must_use]
    pub fn is_stalled(&self) -> bool {
        self.extension.engine().is_stalled()
    }

    /// The engine's generation (1 at creation; each repoint adds 1, a rollback's too).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.extension.engine().generation()
    }

    /// Swaps (registrations that ran the protocol included) that succeeded.
    #[must_use]
    pub fn swaps_completed(&self) -> u64 {
        self.extension.engine().swaps_completed()
    }

    /// Makes the next registration or swap of this extension that runs the swap protocol
    /// fail in `phase` with `status` (an error code), as if the phased callback had returned
    /// it there after the driver's own callback for that phase succeeded: the kernel rolls
    /// the swap back. One shot.
    pub fn fail_next_swap_in(&self, phase: crate::engine::Phase, status: ddi::NTSTATUS) {
        self.extension.inject_phase_failure(phase, status);
    }

    /// Every published endpoint with the implementation it forwards to now.
    #[must_use]
    pub fn implementations(&self) -> Vec<(EndpointKey, usize)> {
        self.extension.implementations()
    }

    /// What the last successful swap measured (drain, stall, total), if any.
    #[must_use]
    pub fn last_swap(&self) -> Option<crate::engine::SwapReport> {
        self.extension.engine().last_swap()
    }

    /// Swaps that failed and were rolled back.
    #[must_use]
    pub fn swaps_failed(&self) -> u64 {
        self.extension.engine().swaps_failed()
    }

    /// Endpoints registered or declared (published).
    #[must_use]
    pub fn endpoint_count(&self) -> usize {
        self.extension.endpoint_count()
    }

    /// Worker threads of this extension still running.
    #[must_use]
    pub fn worker_threads(&self) -> usize {
        self.extension
            .workers()
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The wrapper address of endpoint `key`.
    #[must_use]
    pub fn wrapper(&self, key: EndpointKey) -> Option<usize> {
        self.extension.wrapper(key)
    }

    /// The implementation endpoint `key` forwards to now.
    #[must_use]
    pub fn implementation(&self, key: EndpointKey) -> Option<usize> {
        self.extension.implementation(key)
    }

    /// Swaps endpoints to new implementations, as loading a new image of the driver does:
    /// the same protocol as a V1 re-registration (the `callback` is called in each phase;
    /// anything but `STATUS_SUCCESS` aborts and rolls back), from any thread. Swaps and
    /// registrations of one extension are serialised.
    ///
    /// # Errors
    /// `STATUS_INVALID_PARAMETER` for no change, a null address, a key given twice or not an
    /// endpoint of the extension (nothing done, no callback); `STATUS_UNSUCCESSFUL` when the
    /// drain timed out (or the swap was started inside an endpoint of the extension); the
    /// callback's status (`STATUS_UNSUCCESSFUL` if that is not an error code). Nothing changed,
    /// except when a `PostProcess` failure's rollback timed out: the new implementations then
    /// stay.
    pub fn swap(
        &self,
        changes: &[(EndpointKey, usize)],
        callback: Option<&mut dyn FnMut(Phase) -> ddi::NTSTATUS>,
    ) -> Result<SwapReport, ddi::NTSTATUS> {
        self.extension.swap(changes, callback)
    }

    /// Turns poisoning of retired implementations on or off for later swaps.
    pub fn set_poison_retired(&self, on: bool) {
        self.extension.engine().set_poison_retired(on);
    }

    /// Whether retired implementations are poisoned.
    #[must_use]
    pub fn poison_retired(&self) -> bool {
        self.extension.engine().poison_retired()
    }

    /// Sets the drain timeout of later registrations and swaps.
    pub fn set_drain_timeout(&self, timeout: Duration) {
        self.extension.set_drain_timeout(timeout);
    }

    /// The drain timeout.
    #[must_use]
    pub fn drain_timeout(&self) -> Duration {
        self.extension.drain_timeout()
    }
}

/// Makes the `nth` `ExAllocatePool2` call of the calling thread from now on return null
/// (1 = the next one). One shot; `0` disarms.
pub fn fail_pool_allocation(nth: u32) {
    faults::arm(&faults::POOL, nth);
}

/// Makes the `nth` system-thread creation (`PsCreateSystemThread` or a hot-swappable worker
/// thread) of the calling thread from now on fail with `STATUS_INSUFFICIENT_RESOURCES`
/// (1 = the next one). One shot; `0` disarms.
pub fn fail_thread_creation(nth: u32) {
    faults::arm(&faults::THREAD, nth);
}

/// Makes the `nth` `MmMapLockedPagesSpecifyCache` call of the calling thread from now on
/// fail (1 = the next one): it returns null, so `MmGetSystemAddressForMdlSafe` on an MDL not
/// yet mapped gives null, which a driver must handle (`STATUS_INSUFFICIENT_RESOURCES`). A
/// request's dispatch routine runs on the thread that sends it, so arm it on that thread.
/// One shot; `0` disarms.
pub fn fail_mdl_mapping(nth: u32) {
    faults::arm(&faults::MAP, nth);
}

/// Allocations of pool tag `tag` (`u32::from_le_bytes(*b"Tag1")` for the tag written
/// `'1gaT'` in C).
#[must_use]
pub fn pool_usage(tag: u32) -> PoolUsage {
    super::pool::usage(tag)
}

/// Pool blocks still allocated for the driver object `driver` (by threads that ran for it: the
/// I/O manager's calls into a driver of [`crate::wdm`] and the system threads it started),
/// per tag. Empty when the driver freed everything.
#[must_use]
pub fn pool_outstanding_for_driver(driver: *const core::ffi::c_void) -> Vec<PoolLeak> {
    super::pool::outstanding_of(driver as usize)
}

/// Whether pool tag `tag` has no block outstanding.
#[must_use]
pub fn pool_tag_is_clean(tag: u32) -> bool {
    super::pool::usage(tag).outstanding == 0
}

/// A system thread, by its handle: whether it has ended. Outlives the handle.
#[derive(Clone, Debug)]
pub struct ThreadControl {
    object: Arc<ThreadObject>,
}

/// The thread behind an open thread handle.
#[must_use]
pub fn thread(handle: ddi::HANDLE) -> Option<ThreadControl> {
    super::threads::object(handle).map(|object| ThreadControl { object })
}

impl ThreadControl {
    /// Waits at most `timeout` for the thread to end; whether it has.
    #[must_use]
    pub fn wait(&self, timeout: Duration) -> bool {
        self.object.wait(timeout)
    }

    /// Whether the thread has ended.
    #[must_use]
    pub fn has_ended(&self) -> bool {
        self.object.has_ended()
    }

    /// Its id (`CLIENT_ID::UniqueThread`).
    #[must_use]
    pub fn id(&self) -> u64 {
        self.object.id()
    }
}
