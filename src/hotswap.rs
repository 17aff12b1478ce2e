//! [`HotSwap`]: one code path for drivers, whether or not the system can hot-swap them.

use core::ffi::c_void;
use core::ptr::NonNull;

use crate::phase::{CallbackContext, callback_trampoline};
use crate::record::{Conflict, Record};
use crate::resolve::{FallbackThreadRoutines, HotSwapRoutines, WorkerRoutines, exports};
use crate::{
    CreateError, DriverObject, Endpoint, EndpointId, EndpointTable, LookupError, NtStatus,
    RegisterError, SwapCallback, Unavailable, WrapError, Wrapped, sys,
};

/// The driver's view of Driver Hot-Swap: its DriverProxy extension and endpoint record where
/// hot-swap is available, and a *fallback* where it is not, so that the same driver code
/// runs on every kernel.
///
/// In fallback, every request for a wrapper returns the endpoint itself, registration
/// succeeds without doing anything, and worker threads are plain system threads running the
/// same loop; [`HotSwap::unavailable`] says why.
///
/// A `HotSwap` is a handle (`Copy`): everything it refers to belongs to the driver object.
#[derive(Clone, Copy)]
pub struct HotSwap {
    driver: DriverObject,
    mode: Mode,
    /// What worker threads need, or the routine this kernel lacks.
    workers: Result<WorkerRoutines, Unavailable>,
}

#[derive(Clone, Copy)]
enum Mode {
    Enabled {
        extension: NonNull<sys::DRIVER_PROXY_EXTENSION>,
        routines: HotSwapRoutines,
        record: &'static Record,
    },
    Fallback {
        reason: Unavailable,
        threads: Result<FallbackThreadRoutines, Unavailable>,
    },
}

// SAFETY: the extension and the record are kernel-owned storage of the driver object, usable
// from any thread (the DriverProxy lookups are documented for any thread and IRQL; the record
// is synchronised, see `record`); the routines are kernel code addresses.
unsafe impl Send for HotSwap {}
// SAFETY: as above; `&HotSwap` gives no unsynchronised access to anything.
unsafe impl Sync for HotSwap {}

impl core::fmt::Debug for HotSwap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut out = f.debug_struct("HotSwap");
        out.field("driver", &self.driver);
        match self.mode {
            Mode::Enabled { extension, .. } => out.field("extension", &extension),
            Mode::Fallback { reason, .. } => out.field("unavailable", &reason),
        };
        out.field("worker_threads", &self.worker_threads())
            .finish_non_exhaustive()
    }
}

fn missing(name: &'static str) -> Unavailable {
    Unavailable::ExportMissing(name)
}

impl HotSwap {
    /// Probes Driver Hot-Swap for `driver`, creates its DriverProxy extension and its endpoint
    /// record, and checks every kernel routine the handle will call later. Falls back when the
    /// kernel lacks one of them (named in [`Unavailable::ExportMissing`]), the feature is
    /// disabled for the driver, the kernel refuses the record's storage
    /// ([`Unavailable::RecordRefused`]), or creation says `STATUS_NOT_SUPPORTED` /
    /// `STATUS_DRIVER_BLOCKED`. Worker threads are checked too: [`HotSwap::worker_threads`]
    /// says whether they can run, before any is started. Call once, early in `DriverEntry`.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// Only the failures that are not "unavailable": [`CreateError::InsufficientResources`],
    /// [`CreateError::AlreadyExists`] (use [`HotSwap::from_driver_object`]),
    /// [`CreateError::IncompatibleRecord`] and unexpected statuses.
    pub fn new(driver: DriverObject) -> Result<Self, CreateError> {
        let exports = exports();
        let routines = match exports.hot_swap() {
            Ok(routines) => routines,
            Err(name) => return Ok(Self::fallback(driver, missing(name))),
        };
        if !crate::features::query(routines.get_features, Some(driver)).enabled() {
            return Ok(Self::fallback(driver, Unavailable::FeatureDisabled));
        }
        let record = match Record::of_driver(routines.storage, driver.as_raw(), true) {
            Ok(record) => record,
            // A kernel that refuses the storage (Wine 8 implements the routine as a stub that
            // answers STATUS_NOT_IMPLEMENTED): lookups could not be checked, so no hot swap.
            Err(CreateError::Unexpected(status)) => {
                return Ok(Self::fallback(driver, Unavailable::RecordRefused(status)));
            }
            Err(error) => return Err(error),
        };
        let mut raw = core::ptr::null_mut();
        let creation = sys::DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong: 0 };
        // SAFETY: resolved routine; live driver object; `raw` is a valid local; flags are 0 as
        // the DDI requires.
        let status = NtStatus(unsafe {
            (routines.create_extension)(driver.as_raw(), creation, &raw mut raw)
        });
        if !status.is_success() {
            let error = CreateError::from_status(status);
            return match error.unavailable() {
                Some(reason) => Ok(Self::fallback(driver, reason)),
                None => Err(error),
            };
        }
        let extension = NonNull::new(raw).ok_or(CreateError::Unexpected(status))?;
        Ok(Self::enabled(driver, extension, routines, record))
    }

    /// The handle for a driver object that already owns an extension: the entry of a new
    /// image of the driver taking over from the loaded one. Fallback with
    /// [`Unavailable::FeatureDisabled`] when it owns none.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`CreateError::RecordMissing`] (the extension was created without this crate's
    /// endpoint record), [`CreateError::IncompatibleRecord`]; those of [`HotSwap::new`] for
    /// the fallback's storage.
    pub fn from_driver_object(driver: DriverObject) -> Result<Self, CreateError> {
        let exports = exports();
        let routines = match exports.hot_swap() {
            Ok(routines) => routines,
            Err(name) => return Ok(Self::fallback(driver, missing(name))),
        };
        // SAFETY: resolved routine; live driver object.
        let raw = unsafe { (routines.extension_from_driver_object)(driver.as_raw()) };
        let Some(extension) = NonNull::new(raw) else {
            return Ok(Self::fallback(driver, Unavailable::FeatureDisabled));
        };
        let record = Record::of_driver(routines.storage, driver.as_raw(), false)?;
        Ok(Self::enabled(driver, extension, routines, record))
    }

    /// A handle that uses no DriverProxy at all (wrappers are the endpoints themselves), with
    /// `reason` as [`HotSwap::unavailable`]. Worker threads are plain system threads when the
    /// kernel has what they need.
    ///
    /// IRQL: `PASSIVE_LEVEL` on the first call into this crate (run-time resolution); any IRQL
    /// afterwards.
    #[must_use]
    pub fn fallback(driver: DriverObject, reason: Unavailable) -> Self {
        let exports = exports();
        Self {
            driver,
            mode: Mode::Fallback {
                reason,
                threads: exports.fallback_threads().map_err(missing),
            },
            workers: exports.workers().map_err(missing),
        }
    }

    fn enabled(
        driver: DriverObject,
        extension: NonNull<sys::DRIVER_PROXY_EXTENSION>,
        routines: HotSwapRoutines,
        record: &'static Record,
    ) -> Self {
        Self {
            driver,
            mode: Mode::Enabled {
                extension,
                routines,
                record,
            },
            workers: exports().workers().map_err(missing),
        }
    }

    /// The driver object.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn driver(&self) -> DriverObject {
        self.driver
    }

    /// Why hot-swap is unavailable, or `None` when it is available.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn unavailable(&self) -> Option<Unavailable> {
        match self.mode {
            Mode::Enabled { .. } => None,
            Mode::Fallback { reason, .. } => Some(reason),
        }
    }

    /// Whether hot-swap is available (wrappers are real DriverProxy wrappers).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn is_hot_swappable(&self) -> bool {
        matches!(self.mode, Mode::Enabled { .. })
    }

    /// The raw `PDRIVER_PROXY_EXTENSION` when hot-swap is available, for calls this crate does
    /// not wrap.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn raw_extension(&self) -> Option<sys::PDRIVER_PROXY_EXTENSION> {
        self.extension_and_routines()
            .map(|(extension, _)| extension)
    }

    pub(crate) fn extension_and_routines(
        &self,
    ) -> Option<(sys::PDRIVER_PROXY_EXTENSION, HotSwapRoutines)> {
        match self.mode {
            Mode::Enabled {
                extension,
                routines,
                ..
            } => Some((extension.as_ptr(), routines)),
            Mode::Fallback { .. } => None,
        }
    }

    pub(crate) fn worker_support(&self) -> Result<WorkerRoutines, Unavailable> {
        let support = self.workers?;
        if let Mode::Fallback { threads, .. } = self.mode {
            threads?;
        }
        Ok(support)
    }

    pub(crate) fn fallback_thread_routines(&self) -> Result<FallbackThreadRoutines, Unavailable> {
        match self.mode {
            Mode::Fallback { threads, .. } => threads,
            Mode::Enabled { .. } => Err(Unavailable::FeatureDisabled),
        }
    }

    /// Registers a V1 table (`IoRegisterDriverProxyEndpoints`). The first registration makes
    /// the wrappers; registering ids that exist again *is the V1 hot swap*: the kernel runs
    /// `callback` in each [`crate::Phase`], waits for calls in the old code to drain, and
    /// repoints the wrappers at the new endpoints. In fallback: does nothing and succeeds,
    /// without calling `callback` (there is nothing to swap).
    ///
    /// Before the kernel is called, the table is checked against the driver's endpoint record:
    /// an id this image registered before keeps its endpoint type, an id another image (an
    /// earlier version) registered keeps its parameter count and type name, and an address
    /// handed out by [`HotSwap::wrap`] keeps its type. The record takes the new registration in
    /// `ProxyStalled` (or when the call returns) and is restored if the kernel refuses it.
    ///
    /// The callback must not call any wrapper of this driver in `ProxyStalled` (it would wait
    /// for the phase it runs in), nor register again (refused with [`RegisterError::Busy`]). A
    /// panic in the callback cannot unwind into the kernel: it aborts (in a driver built with
    /// `panic = "abort"`, the panic handler runs, which normally stops the system) with the
    /// swap half done. Return `Err(status)` instead.
    ///
    /// IRQL: `PASSIVE_LEVEL` (it may block while calls drain).
    ///
    /// # Errors
    /// [`RegisterError::SignatureMismatch`], [`RegisterError::TooManyEndpoints`],
    /// [`RegisterError::Busy`] (checked first; nothing changed);
    /// [`RegisterError::ParameterCountMismatch`] (an id re-registered with another arity),
    /// [`RegisterError::DrainTimeout`], [`RegisterError::InsufficientResources`],
    /// [`RegisterError::Callback`] (the callback failed; rolled back). On every error nothing
    /// changed.
    pub fn register<const N: usize>(
        &self,
        table: &EndpointTable<N>,
        callback: Option<&mut dyn SwapCallback>,
    ) -> Result<(), RegisterError> {
        let Mode::Enabled {
            extension,
            routines,
            record,
        } = self.mode
        else {
            return Ok(());
        };
        let count =
            u32::try_from(N).map_err(|_| RegisterError::Unexpected(NtStatus::INVALID_PARAMETER))?;
        let guard = record.try_write().ok_or(RegisterError::Busy)?;
        let endpoints = table.registrations();
        record
            .check_registration(&guard, &endpoints)
            .map_err(RegisterError::from_conflict)?;
        let mut info = table.raw_copy();
        let mut saved = None;
        let (status, failure) = {
            let mut commit = || {
                if saved.is_none() {
                    saved = Some(record.commit(&guard, &endpoints));
                }
            };
            let mut context = CallbackContext {
                callback,
                on_stalled: &mut commit,
                failure: None,
            };
            // SAFETY: resolved routine; live extension; `info` holds `count` valid entries;
            // the context is a live local that the kernel passes back to the trampoline only
            // during this call, which is what the trampoline requires.
            let status = NtStatus(unsafe {
                (routines.register_endpoints)(
                    extension.as_ptr(),
                    info.as_mut_ptr(),
                    count,
                    Some(callback_trampoline),
                    (&raw mut context).cast::<c_void>(),
                )
            });
            (status, context.failure)
        };
        match failure {
            None if status.is_success() => {
                if saved.is_none() {
                    record.commit(&guard, &endpoints);
                }
                Ok(())
            }
            failure => {
                if let Some(saved) = &saved {
                    // A rollback that failed (its drain timed out) leaves new implementations in
                    // force: the record keeps those. Where the kernel cannot tell (a V2 lookup
                    // that does not find V1 endpoints), the record is restored.
                    let in_force = |i: usize| {
                        endpoints.get(i).is_some_and(|endpoint| {
                            endpoint.function.is_some_and(|function| {
                                implementation_in_force(extension, routines, endpoint.id, function)
                            })
                        })
                    };
                    record.restore(&guard, saved, in_force);
                }
                Err(match failure {
                    Some((phase, status)) => RegisterError::Callback { phase, status },
                    None => RegisterError::from_status(status),
                })
            }
        }
    }

    /// The wrapper registered under `id` (V1: `IoGetDriverProxyEndpointWrapper`), or in
    /// fallback the endpoint from `table`.
    ///
    /// `id` must be in `table` with the type `F`, and (hot-swap available) registered by this
    /// image of the driver with the type `F` according to the endpoint record: a wrapper is
    /// never handed out with a type its implementation may not have.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`LookupError::UnknownId`] / [`LookupError::TypeMismatch`] (checked against `table`
    /// and the record), [`LookupError::NotRegistered`],
    /// [`LookupError::RegisteredByAnotherImage`].
    pub fn wrapper<F: Endpoint, const N: usize>(
        &self,
        table: &EndpointTable<N>,
        id: EndpointId<F>,
    ) -> Result<Wrapped<F>, LookupError> {
        let endpoint = table.endpoint(id)?;
        match self.mode {
            Mode::Enabled {
                extension,
                routines,
                record,
            } => {
                record.check_lookup::<F>(id.raw())?;
                // SAFETY: the record says this image registered `id` as an `F`.
                unsafe { wrapper_by_id::<F>(extension, routines, id.raw()) }
                    .ok_or(LookupError::NotRegistered(id.raw()))
            }
            Mode::Fallback { .. } => Ok(Wrapped::fallback(endpoint)),
        }
    }

    /// The wrapper of `endpoint` (V2 lookup by endpoint: `IofGetDriverProxyWrapperFromEndpoint`,
    /// what the C macro `IoGetDriverProxyWrapperFromEndpoint` expands to), typed as the
    /// endpoint itself; in fallback, the endpoint itself.
    ///
    /// When `endpoint` is the implementation in force of ids this image registered (V1), it
    /// must have been registered with the type `F`, and the wrapper is that id's. Otherwise
    /// the kernel is asked (a V2 endpoint, declared in the image's `.shsept` section: Rust
    /// toolchains cannot emit one today; the host kernel models them), and the record notes
    /// the address as handed out as `F`, so that no later registration can give it another
    /// type.
    ///
    /// Hand out the result, never `endpoint`: a raw endpoint pointer held elsewhere keeps
    /// calling the old code after a swap and pins the old image.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`WrapError::NotAnEndpoint`] when the kernel knows no endpoint at that address;
    /// [`WrapError::SignatureMismatch`] (another type or image at that address);
    /// [`WrapError::Busy`] (a registration is in progress: the first V2 lookup of an address
    /// writes the record); [`WrapError::TooManyEndpoints`].
    pub fn wrap<F: Endpoint>(&self, endpoint: F) -> Result<Wrapped<F>, WrapError> {
        let () = F::FITS_SLOTS;
        let Mode::Enabled {
            extension,
            routines,
            record,
        } = self.mode
        else {
            return Ok(Wrapped::fallback(endpoint));
        };
        let address = endpoint.address();
        let by_id = |id| {
            // SAFETY: the record says this image registered `id` as an `F`.
            unsafe { wrapper_by_id::<F>(extension, routines, id) }.ok_or(WrapError::NotAnEndpoint)
        };
        match record.check_wrap::<F>(address) {
            Err(_) => return Err(WrapError::SignatureMismatch),
            Ok(Some(id)) => return by_id(id),
            Ok(None) if record.has_v2::<F>(address) => {
                return wrapper_from_endpoint(extension, routines, endpoint);
            }
            Ok(None) => {}
        }
        let guard = record.try_write().ok_or(WrapError::Busy)?;
        match record.check_wrap::<F>(address) {
            Err(_) => Err(WrapError::SignatureMismatch),
            Ok(Some(id)) => by_id(id),
            Ok(None) => {
                let wrapper = wrapper_from_endpoint(extension, routines, endpoint)?;
                record
                    .record_v2::<F>(&guard, address)
                    .map_err(|_| WrapError::TooManyEndpoints)?;
                Ok(wrapper)
            }
        }
    }
}

/// The wrapper of V1 id `id`.
///
/// # Safety
/// Every implementation the wrapper of `id` forwards to has the type `F` (the record says so).
unsafe fn wrapper_by_id<F: Endpoint>(
    extension: NonNull<sys::DRIVER_PROXY_EXTENSION>,
    routines: HotSwapRoutines,
    id: u32,
) -> Option<Wrapped<F>> {
    // SAFETY: resolved routine; live extension.
    let wrapper = unsafe { (routines.endpoint_wrapper_by_id)(extension.as_ptr(), id) }?;
    // SAFETY: the wrapper forwards calls of the endpoint's signature, `F` (caller contract).
    Some(unsafe { Wrapped::new_unchecked(F::unerase(wrapper)) })
}

/// The kernel's V2 lookup (`IofGetDriverProxyWrapperFromEndpoint`) of `endpoint`: its wrapper,
/// `None` when the kernel knows no endpoint there, or the status of another failure.
fn v2_lookup(
    extension: NonNull<sys::DRIVER_PROXY_EXTENSION>,
    routines: HotSwapRoutines,
    endpoint: sys::DRIVER_PROXY_ENDPOINT_FUNCTION,
) -> Result<sys::PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION, NtStatus> {
    let mut wrapper: sys::PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION = None;
    // SAFETY: resolved routine; live extension (HotSwap invariant); `wrapper` is a valid local;
    // the kernel only compares the endpoint's address.
    let status = NtStatus(unsafe {
        (routines.wrapper_from_endpoint)(extension.as_ptr(), Some(endpoint), &raw mut wrapper)
    });
    match wrapper {
        Some(_) if status.is_success() => Ok(wrapper),
        // The macro's documentation: `*Wrapper` is NULL when the endpoint is not found.
        _ if status.is_success() || status == NtStatus::NOT_FOUND => Ok(None),
        _ => Err(status),
    }
}

/// Whether the wrapper of V1 id `id` forwards to `endpoint` now: the kernel's V2 lookup of the
/// endpoint answers with that id's wrapper.
fn implementation_in_force(
    extension: NonNull<sys::DRIVER_PROXY_EXTENSION>,
    routines: HotSwapRoutines,
    id: u32,
    endpoint: sys::DRIVER_PROXY_ENDPOINT_FUNCTION,
) -> bool {
    let Ok(Some(by_address)) = v2_lookup(extension, routines, endpoint) else {
        return false;
    };
    // SAFETY: resolved routine; live extension (HotSwap invariant).
    let by_id = unsafe { (routines.endpoint_wrapper_by_id)(extension.as_ptr(), id) };
    by_id.is_some_and(|by_id| by_id as usize == by_address as usize)
}

/// The kernel's V2 lookup of `endpoint`, typed as the endpoint.
fn wrapper_from_endpoint<F: Endpoint>(
    extension: NonNull<sys::DRIVER_PROXY_EXTENSION>,
    routines: HotSwapRoutines,
    endpoint: F,
) -> Result<Wrapped<F>, WrapError> {
    match v2_lookup(extension, routines, endpoint.erase()) {
        // SAFETY: the kernel returned the wrapper of the endpoint `endpoint`, of type F, which
        // no V1 registration of this image can repoint to another type (the record).
        Ok(Some(wrapper)) => Ok(unsafe { Wrapped::new_unchecked(F::unerase(wrapper)) }),
        Ok(None) => Err(WrapError::NotAnEndpoint),
        Err(status) => Err(WrapError::Unexpected(status)),
    }
}

impl RegisterError {
    fn from_conflict(conflict: Conflict) -> Self {
        match conflict {
            Conflict::Signature(id) => Self::SignatureMismatch(id),
            Conflict::ParameterCount(_) => Self::ParameterCountMismatch,
            Conflict::Full => Self::TooManyEndpoints,
        }
    }
}
