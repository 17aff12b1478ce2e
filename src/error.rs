//! Error types: one per call, whose variants are the documented failures of that call.
//!
//! Every error converts to the [`NtStatus`] a driver would return (`status()`), and a
//! status the documentation does not list is kept, not lost, in an `Unexpected` variant.

use core::fmt;

use crate::{NtStatus, Phase};

/// Why Driver Hot-Swap cannot be used by a driver. Not an error for the driver: the
/// [`crate::HotSwap`] handle falls back to plain calls and the driver runs normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The running kernel does not export this DriverProxy routine (older than 24H2).
    ExportMissing(&'static str),
    /// `IoGetDriverProxyFeatures` reports `Enabled == 0`: no Secure Kernel, not configured,
    /// globally disabled, or this driver excluded.
    FeatureDisabled,
    /// `IoCreateDriverProxyExtension` returned `STATUS_NOT_SUPPORTED`.
    NotSupported,
    /// `IoCreateDriverProxyExtension` returned `STATUS_DRIVER_BLOCKED` (registry policy).
    DriverBlocked,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExportMissing(name) => write!(f, "the kernel does not export {name}"),
            Self::FeatureDisabled => f.write_str("DriverProxy is not enabled for this driver"),
            Self::NotSupported => f.write_str("the system does not support DriverProxy"),
            Self::DriverBlocked => f.write_str("this driver is blocked from DriverProxy by policy"),
        }
    }
}

/// A null `DRIVER_OBJECT` was given where the DDI requires one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NullDriverObject;

impl NullDriverObject {
    /// `STATUS_INVALID_PARAMETER`, the status a driver would return for this failure.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        NtStatus::INVALID_PARAMETER
    }
}

impl fmt::Display for NullDriverObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a DRIVER_OBJECT is required, but the pointer is null")
    }
}

/// Failures of `IoCreateDriverProxyExtension` ([`crate::Extension::create`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The kernel lacks a DriverProxy export this call needs.
    ExportMissing(&'static str),
    /// `STATUS_NOT_SUPPORTED`: the system lacks DriverProxy.
    NotSupported,
    /// `STATUS_DRIVER_BLOCKED`: the driver is excluded by registry policy.
    DriverBlocked,
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    InsufficientResources,
    /// `STATUS_RESOURCE_IN_USE`: this driver object already owns an extension.
    AlreadyExists,
    /// A status the documentation does not list.
    Unexpected(NtStatus),
}

impl CreateError {
    /// Maps a failure status of `IoCreateDriverProxyExtension`.
    pub(crate) fn from_status(status: NtStatus) -> Self {
        match status {
            NtStatus::NOT_SUPPORTED => Self::NotSupported,
            NtStatus::DRIVER_BLOCKED => Self::DriverBlocked,
            NtStatus::INSUFFICIENT_RESOURCES => Self::InsufficientResources,
            NtStatus::RESOURCE_IN_USE => Self::AlreadyExists,
            other => Self::Unexpected(other),
        }
    }

    /// The status a driver would return for this failure.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::ExportMissing(_) | Self::NotSupported => NtStatus::NOT_SUPPORTED,
            Self::DriverBlocked => NtStatus::DRIVER_BLOCKED,
            Self::InsufficientResources => NtStatus::INSUFFICIENT_RESOURCES,
            Self::AlreadyExists => NtStatus::RESOURCE_IN_USE,
            Self::Unexpected(status) => status,
        }
    }

    /// Whether this failure means "hot-swap unavailable" (fall back) rather than an error.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn unavailable(self) -> Option<Unavailable> {
        match self {
            Self::ExportMissing(name) => Some(Unavailable::ExportMissing(name)),
            Self::NotSupported => Some(Unavailable::NotSupported),
            Self::DriverBlocked => Some(Unavailable::DriverBlocked),
            _ => None,
        }
    }
}

/// Failures of the V2 lookup `IofGetDriverProxyWrapperFromEndpoint` ([`crate::Extension::wrap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapError {
    /// The kernel lacks `IofGetDriverProxyWrapperFromEndpoint`.
    ExportMissing(&'static str),
    /// `STATUS_NOT_FOUND` (or a null wrapper): the address is not an endpoint of this
    /// extension. Handing out the raw function instead would pin the old image and break
    /// swapping, so the crate never does that silently.
    NotAnEndpoint,
    /// A status the documentation does not list.
    Unexpected(NtStatus),
}

impl WrapError {
    /// The status a driver would return for this failure.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::ExportMissing(_) => NtStatus::NOT_SUPPORTED,
            Self::NotAnEndpoint => NtStatus::NOT_FOUND,
            Self::Unexpected(status) => status,
        }
    }
}

/// Failures of V1 registration `IoRegisterDriverProxyEndpoints` ([`crate::Extension::register`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The kernel lacks `IoRegisterDriverProxyEndpoints`.
    ExportMissing(&'static str),
    /// The table registers the same id twice (ids must be unique per extension); checked
    /// before the kernel is called.
    DuplicateId(u32),
    /// The table is empty; checked before the kernel is called.
    Empty,
    /// `STATUS_INVALID_PARAMETER_3`: an entry replaces an existing id with a different
    /// `ParameterCount`. Nothing was changed.
    ParameterCountMismatch,
    /// `STATUS_UNSUCCESSFUL`: in-flight calls did not drain in time. Nothing was changed.
    DrainTimeout,
    /// `STATUS_INSUFFICIENT_RESOURCES`. Nothing was changed.
    InsufficientResources,
    /// The phased callback failed in `phase` with `status`; the registration was rolled back.
    Callback {
        /// The phase whose callback failed.
        phase: Phase,
        /// What the callback returned.
        status: NtStatus,
    },
    /// A status the documentation does not list.
    Unexpected(NtStatus),
}

impl RegisterError {
    /// Maps a failure status of `IoRegisterDriverProxyEndpoints` when no callback failed.
    pub(crate) fn from_status(status: NtStatus) -> Self {
        match status {
            NtStatus::INVALID_PARAMETER_3 => Self::ParameterCountMismatch,
            NtStatus::UNSUCCESSFUL => Self::DrainTimeout,
            NtStatus::INSUFFICIENT_RESOURCES => Self::InsufficientResources,
            other => Self::Unexpected(other),
        }
    }

    /// The status a driver would return for this failure.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::ExportMissing(_) => NtStatus::NOT_SUPPORTED,
            Self::DuplicateId(_) | Self::Empty => NtStatus::INVALID_PARAMETER,
            Self::ParameterCountMismatch => NtStatus::INVALID_PARAMETER_3,
            Self::DrainTimeout => NtStatus::UNSUCCESSFUL,
            Self::InsufficientResources => NtStatus::INSUFFICIENT_RESOURCES,
            Self::Callback { status, .. } | Self::Unexpected(status) => status,
        }
    }
}

/// Failures of a V1 lookup by id ([`crate::HotSwap::wrapper`], [`crate::Extension::wrapper`]),
/// and of [`crate::EndpointTable::endpoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// The kernel lacks `IoGetDriverProxyEndpointWrapper`.
    ExportMissing(&'static str),
    /// The id is not in the table.
    UnknownId(u32),
    /// The id is in the table with another function type than the one asked for.
    TypeMismatch(u32),
    /// The kernel returned no wrapper: the id was never registered with this extension.
    NotRegistered(u32),
}

impl LookupError {
    /// The status a driver would return for this failure.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::ExportMissing(_) => NtStatus::NOT_SUPPORTED,
            Self::UnknownId(_) | Self::NotRegistered(_) => NtStatus::NOT_FOUND,
            Self::TypeMismatch(_) => NtStatus::INVALID_PARAMETER,
        }
    }
}

/// Failures of [`crate::WorkerThreadBuilder::spawn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerError {
    /// No event was given; the thread needs at least one object to wait on.
    NoEvents,
    /// More events than [`crate::MAX_WORKER_EVENTS`].
    TooManyEvents(usize),
    /// An event was not initialised.
    EventNotInitialized,
    /// A kernel routine the thread needs is missing (named).
    ExportMissing(&'static str),
    /// `STATUS_NOT_SUPPORTED`: DriverProxy is unavailable.
    NotSupported,
    /// `STATUS_INVALID_PARAMETER`: e.g. the routine is not a wrapper of this extension.
    InvalidParameter,
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    InsufficientResources,
    /// A status the documentation does not list.
    Unexpected(NtStatus),
}

impl WorkerError {
    /// Maps a failure status of the thread-creating routine.
    pub(crate) fn from_status(status: NtStatus) -> Self {
        match status {
            NtStatus::NOT_SUPPORTED => Self::NotSupported,
            NtStatus::INVALID_PARAMETER => Self::InvalidParameter,
            NtStatus::INSUFFICIENT_RESOURCES => Self::InsufficientResources,
            other => Self::Unexpected(other),
        }
    }

    /// The status a driver would return for this failure.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::NoEvents
            | Self::TooManyEvents(_)
            | Self::EventNotInitialized
            | Self::InvalidParameter => NtStatus::INVALID_PARAMETER,
            Self::ExportMissing(_) | Self::NotSupported => NtStatus::NOT_SUPPORTED,
            Self::InsufficientResources => NtStatus::INSUFFICIENT_RESOURCES,
            Self::Unexpected(status) => status,
        }
    }
}

/// Failures of [`crate::Event`] operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    /// The event was used before [`crate::Event::initialize`].
    NotInitialized,
    /// [`crate::Event::initialize`] was called twice.
    AlreadyInitialized,
    /// The kernel routine is missing (named).
    ExportMissing(&'static str),
}

impl EventError {
    /// The status a driver would return for this failure.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::NotInitialized => NtStatus::INVALID_DEVICE_STATE,
            Self::AlreadyInitialized => NtStatus::INVALID_PARAMETER,
            Self::ExportMissing(_) => NtStatus::NOT_SUPPORTED,
        }
    }
}

macro_rules! display_via_debug_and_status {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{self:?} ({})", self.status())
            }
        }
        impl core::error::Error for $ty {}
    )*};
}
display_via_debug_and_status!(
    CreateError,
    WrapError,
    RegisterError,
    LookupError,
    WorkerError,
    EventError
);
impl core::error::Error for NullDriverObject {}

#[cfg(test)]
mod tests {
    use super::*;

    const UNDOCUMENTED: NtStatus = NtStatus(0xC000_0022_u32.cast_signed()); // ACCESS_DENIED

    #[test]
    fn create_maps_every_documented_status_and_keeps_unknown_ones() {
        for (status, error) in [
            (NtStatus::NOT_SUPPORTED, CreateError::NotSupported),
            (NtStatus::DRIVER_BLOCKED, CreateError::DriverBlocked),
            (
                NtStatus::INSUFFICIENT_RESOURCES,
                CreateError::InsufficientResources,
            ),
            (NtStatus::RESOURCE_IN_USE, CreateError::AlreadyExists),
        ] {
            assert_eq!(CreateError::from_status(status), error);
            assert_eq!(
                error.status(),
                status,
                "{error:?} round-trips to its status"
            );
        }
        assert_eq!(
            CreateError::from_status(UNDOCUMENTED),
            CreateError::Unexpected(UNDOCUMENTED)
        );
        assert_eq!(CreateError::Unexpected(UNDOCUMENTED).status(), UNDOCUMENTED);
    }

    #[test]
    fn only_not_supported_blocked_and_missing_exports_mean_unavailable() {
        assert_eq!(
            CreateError::NotSupported.unavailable(),
            Some(Unavailable::NotSupported)
        );
        assert_eq!(
            CreateError::DriverBlocked.unavailable(),
            Some(Unavailable::DriverBlocked)
        );
        assert_eq!(
            CreateError::ExportMissing("X").unavailable(),
            Some(Unavailable::ExportMissing("X"))
        );
        assert_eq!(CreateError::InsufficientResources.unavailable(), None);
        assert_eq!(CreateError::AlreadyExists.unavailable(), None);
        assert_eq!(CreateError::Unexpected(UNDOCUMENTED).unavailable(), None);
    }

    #[test]
    fn register_maps_every_documented_status_and_keeps_unknown_ones() {
        for (status, error) in [
            (
                NtStatus::INVALID_PARAMETER_3,
                RegisterError::ParameterCountMismatch,
            ),
            (NtStatus::UNSUCCESSFUL, RegisterError::DrainTimeout),
            (
                NtStatus::INSUFFICIENT_RESOURCES,
                RegisterError::InsufficientResources,
            ),
        ] {
            assert_eq!(RegisterError::from_status(status), error);
            assert_eq!(error.status(), status);
        }
        assert_eq!(
            RegisterError::from_status(UNDOCUMENTED),
            RegisterError::Unexpected(UNDOCUMENTED)
        );
        let callback = RegisterError::Callback {
            phase: Phase::ProxyStalled,
            status: NtStatus::NO_MEMORY,
        };
        assert_eq!(
            callback.status(),
            NtStatus::NO_MEMORY,
            "the callback's own status is propagated"
        );
        assert_eq!(
            RegisterError::DuplicateId(3).status(),
            NtStatus::INVALID_PARAMETER
        );
    }

    #[test]
    fn worker_maps_every_documented_status_and_keeps_unknown_ones() {
        for (status, error) in [
            (NtStatus::NOT_SUPPORTED, WorkerError::NotSupported),
            (NtStatus::INVALID_PARAMETER, WorkerError::InvalidParameter),
            (
                NtStatus::INSUFFICIENT_RESOURCES,
                WorkerError::InsufficientResources,
            ),
        ] {
            assert_eq!(WorkerError::from_status(status), error);
            assert_eq!(error.status(), status);
        }
        assert_eq!(
            WorkerError::from_status(UNDOCUMENTED),
            WorkerError::Unexpected(UNDOCUMENTED)
        );
        assert_eq!(WorkerError::NoEvents.status(), NtStatus::INVALID_PARAMETER);
        assert_eq!(
            WorkerError::TooManyEvents(65).status(),
            NtStatus::INVALID_PARAMETER
        );
    }

    #[test]
    fn lookup_and_wrap_failures_have_their_documented_statuses() {
        assert_eq!(WrapError::NotAnEndpoint.status(), NtStatus::NOT_FOUND);
        assert_eq!(LookupError::NotRegistered(1).status(), NtStatus::NOT_FOUND);
        assert_eq!(
            LookupError::TypeMismatch(1).status(),
            NtStatus::INVALID_PARAMETER
        );
        assert_eq!(NullDriverObject.status(), NtStatus::INVALID_PARAMETER);
    }
}
