//! [`HotSwap`]: one code path for drivers, whether or not the system can hot-swap them.

use crate::{
    CreateError, DriverObject, Endpoint, EndpointId, EndpointTable, Extension, LookupError,
    RegisterError, SwapCallback, Unavailable, WrapError, Wrapped, features,
};

/// The driver's view of Driver Hot-Swap: its [`Extension`] where hot-swap is available, and a
/// *fallback* where it is not, so that the same driver code runs on every kernel.
///
/// In fallback, every request for a wrapper returns the endpoint itself, registration
/// succeeds without doing anything, and worker threads are plain system threads running the
/// same loop; [`HotSwap::unavailable`] says why.
#[derive(Clone, Copy, Debug)]
pub struct HotSwap {
    mode: Mode,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Enabled(Extension),
    Fallback(Unavailable),
}

impl HotSwap {
    /// Probes DriverProxy for `driver` and creates its extension; falls back when the kernel
    /// lacks the exports, the feature is disabled for the driver, or creation says
    /// `STATUS_NOT_SUPPORTED` / `STATUS_DRIVER_BLOCKED`. Call once, early in `DriverEntry`.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// Only the failures that are not "unavailable": [`CreateError::InsufficientResources`],
    /// [`CreateError::AlreadyExists`] (use [`HotSwap::from_driver_object`]) and unexpected
    /// statuses.
    pub fn new(driver: DriverObject) -> Result<Self, CreateError> {
        // A missing export is "unavailable" in both calls: the probe names
        // `IoGetDriverProxyFeatures`, creation `IoCreateDriverProxyExtension`.
        match features::probe(Some(driver)) {
            Err(unavailable) => return Ok(Self::fallback(unavailable)),
            Ok(features) if !features.enabled() => {
                return Ok(Self::fallback(Unavailable::FeatureDisabled));
            }
            Ok(_) => {}
        }
        match Extension::create(driver) {
            Ok(extension) => Ok(Self {
                mode: Mode::Enabled(extension),
            }),
            Err(error) => error.unavailable().map(Self::fallback).ok_or(error),
        }
    }

    /// The handle for a driver object that already owns an extension (e.g. in the entry of a
    /// new version of the driver taking over from the old one); fallback with
    /// [`Unavailable::FeatureDisabled`] when it owns none.
    ///
    /// IRQL: any, once the crate has resolved its routines at `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// None in practice: a missing export gives the fallback. The `Result` is kept for
    /// symmetry with [`HotSwap::new`].
    pub fn from_driver_object(driver: DriverObject) -> Result<Self, CreateError> {
        match Extension::from_driver_object(driver) {
            Ok(Some(extension)) => Ok(Self {
                mode: Mode::Enabled(extension),
            }),
            Ok(None) => Ok(Self::fallback(Unavailable::FeatureDisabled)),
            Err(error) => error.unavailable().map(Self::fallback).ok_or(error),
        }
    }

    /// A handle that uses no DriverProxy at all.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn fallback(reason: Unavailable) -> Self {
        Self {
            mode: Mode::Fallback(reason),
        }
    }

    /// The extension, when hot-swap is available.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn extension(&self) -> Option<Extension> {
        match self.mode {
            Mode::Enabled(extension) => Some(extension),
            Mode::Fallback(_) => None,
        }
    }

    /// Why hot-swap is unavailable, or `None` when it is available.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn unavailable(&self) -> Option<Unavailable> {
        match self.mode {
            Mode::Enabled(_) => None,
            Mode::Fallback(reason) => Some(reason),
        }
    }

    /// The wrapper of `endpoint` (V2 lookup by endpoint), or in fallback the endpoint itself.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// See [`Extension::wrap`]; never fails in fallback.
    pub fn wrap<F: Endpoint>(&self, endpoint: F) -> Result<Wrapped<F>, WrapError> {
        match self.mode {
            Mode::Enabled(extension) => extension.wrap(endpoint),
            Mode::Fallback(_) => Ok(Wrapped::fallback(endpoint)),
        }
    }

    /// Registers a V1 table (see [`Extension::register`]); in fallback does nothing and
    /// succeeds, without calling `callback` (there is nothing to swap).
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// See [`Extension::register`]; never fails in fallback.
    pub fn register<const N: usize>(
        &self,
        table: &EndpointTable<N>,
        callback: Option<&mut dyn SwapCallback>,
    ) -> Result<(), RegisterError> {
        match self.mode {
            Mode::Enabled(extension) => extension.register(table, callback),
            Mode::Fallback(_) => Ok(()),
        }
    }

    /// The wrapper registered under `id` (V1), or in fallback the endpoint from `table`.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// See [`Extension::wrapper`]; in fallback only [`LookupError::UnknownId`] and
    /// [`LookupError::TypeMismatch`].
    pub fn wrapper<F: Endpoint, const N: usize>(
        &self,
        table: &EndpointTable<N>,
        id: EndpointId<F>,
    ) -> Result<Wrapped<F>, LookupError> {
        match self.mode {
            Mode::Enabled(extension) => extension.wrapper(table, id),
            Mode::Fallback(_) => table.endpoint(id).map(Wrapped::fallback),
        }
    }
}
