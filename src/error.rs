//! Error types: one per call, whose variants are the documented failures of that call.
//!
//! Every error converts to the [`NtStatus`] a driver would return (`status()`, and `From`, so
//! that a `DriverEntry` body returning `Result<(), NtStatus>` is written with `?`), and a
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
    /// The kernel refused the storage of the endpoint record (`IoAllocateDriverObjectExtension`
    /// answered this status; Wine 8 implements it as a stub answering
    /// `STATUS_NOT_IMPLEMENTED`): wrapper lookups could not be checked, so hot swap is not used.
    RecordRefused(NtStatus),
}

impl Unavailable {
    /// `STATUS_NOT_SUPPORTED`, for a driver that cannot do without the feature (e.g. the entry
    /// of a new image taking over from a loaded one).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::DriverBlocked => NtStatus::DRIVER_BLOCKED,
            _ => NtStatus::NOT_SUPPORTED,
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ExportMissing(name) => write!(f, "the kernel does not export {name}"),
            Self::FeatureDisabled => f.write_str("DriverProxy is not enabled for this driver"),
            Self::NotSupported => f.write_str("the system does not support DriverProxy"),
            Self::DriverBlocked => f.write_str("this driver is blocked from DriverProxy by policy"),
            Self::RecordRefused(status) => write!(
                f,
                "the kernel refused the storage of the endpoint record ({status})"
            ),
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

/// Failures of `IoCreateDriverProxyExtension` ([`crate::HotSwap::new`]).
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
    /// The driver object owns an extension but not this crate's endpoint record: the image
    /// that created it did not use this crate (or used version 0.1), so nothing it registered
    /// can be checked. [`crate::HotSwap::from_driver_object`] refuses to take over.
    RecordMissing,
    /// The driver object's endpoint record has another layout (it was written by an image
    /// built with an incompatible version of this crate).
    IncompatibleRecord,
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
            Self::RecordMissing | Self::IncompatibleRecord => NtStatus::REVISION_MISMATCH,
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

/// Failures of the V2 lookup `IofGetDriverProxyWrapperFromEndpoint` ([`crate::HotSwap::wrap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapError {
    /// The kernel lacks `IofGetDriverProxyWrapperFromEndpoint`.
    ExportMissing(&'static str),
    /// `STATUS_NOT_FOUND` (or a null wrapper): the address is not an endpoint of this
    /// extension. Handing out the raw function instead would pin the old image and break
    /// swapping, so the crate never does that silently.
    NotAnEndpoint,
    /// The address is an endpoint registered with another signature than the one asked for,
    /// or by another image of the driver: handing it out as this type could call code of
    /// another signature after a re-registration.
    SignatureMismatch,
    /// Another registration (or first V2 lookup) of this driver is in progress: try again
    /// once it returned. The record is written by one caller at a time and a lookup never
    /// waits.
    Busy,
    /// The endpoint record is full ([`crate::MAX_ENDPOINTS`]).
    TooManyEndpoints,
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
            Self::SignatureMismatch => NtStatus::OBJECT_TYPE_MISMATCH,
            Self::Busy => NtStatus::DEVICE_BUSY,
            Self::TooManyEndpoints => NtStatus::INSUFFICIENT_RESOURCES,
            Self::Unexpected(status) => status,
        }
    }
}

/// Failures of V1 registration `IoRegisterDriverProxyEndpoints` ([`crate::HotSwap::register`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The kernel lacks `IoRegisterDriverProxyEndpoints`.
    ExportMissing(&'static str),
    /// The table registers the same id twice (ids must be unique per extension); checked
    /// before the kernel is called.
    DuplicateId(u32),
    /// The table is empty; checked before the kernel is called.
    Empty,
    /// An id is already registered with another signature: by this image with another
    /// endpoint type, or by another image with a type of another name (or the entry's address
    /// is an endpoint of another type or image). Checked before the kernel is called; nothing
    /// changed. Wrappers of the id may be held as `Wrapped<F>` of the first signature, so it
    /// can never change. Two ids whose endpoints share an address must share a type too (a
    /// linker folding identical functions, `/OPT:ICF`, can give two functions one address).
    SignatureMismatch(u32),
    /// The endpoint record is full ([`crate::MAX_ENDPOINTS`]); nothing changed.
    TooManyEndpoints,
    /// Another registration (or first V2 lookup) of this driver is in progress; nothing
    /// changed. Registrations are serialised by the endpoint record, which never waits (a
    /// registration from inside a phased callback would otherwise deadlock).
    Busy,
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
            Self::SignatureMismatch(_) => NtStatus::OBJECT_TYPE_MISMATCH,
            Self::Busy => NtStatus::DEVICE_BUSY,
            Self::ParameterCountMismatch => NtStatus::INVALID_PARAMETER_3,
            Self::DrainTimeout => NtStatus::UNSUCCESSFUL,
            Self::InsufficientResources | Self::TooManyEndpoints => {
                NtStatus::INSUFFICIENT_RESOURCES
            }
            Self::Callback { status, .. } | Self::Unexpected(status) => status,
        }
    }
}

/// Failures of a V1 lookup by id ([`crate::HotSwap::wrapper`]),
/// and of [`crate::EndpointTable::endpoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// The kernel lacks `IoGetDriverProxyEndpointWrapper`.
    ExportMissing(&'static str),
    /// The id is not in the table.
    UnknownId(u32),
    /// The id is in the table with another function type than the one asked for.
    TypeMismatch(u32),
    /// The id was never registered with this extension (or its registration failed).
    NotRegistered(u32),
    /// The registration of the id in force was made by another image of the driver (an
    /// earlier version that the running one has not taken the id over from): its signature
    /// cannot be compared with this image's types.
    RegisteredByAnotherImage(u32),
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
            Self::RegisteredByAnotherImage(_) => NtStatus::OBJECT_TYPE_MISMATCH,
        }
    }
}

/// Failures of worker threads ([`crate::WorkerThreadBuilder::spawn`],
/// [`crate::WorkerThread::from_raw`], [`crate::WorkerThread::stop_and_join`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerError {
    /// This kernel cannot run worker threads for the driver: a routine they need is missing
    /// (named). Known from [`crate::HotSwap::new`] on ([`crate::HotSwap::worker_threads`]).
    Unavailable(Unavailable),
    /// `STATUS_NOT_SUPPORTED`: DriverProxy is unavailable.
    NotSupported,
    /// `STATUS_INVALID_PARAMETER`: e.g. the routine is not a wrapper of this extension.
    InvalidParameter,
    /// `STATUS_INSUFFICIENT_RESOURCES` (the thread, or its storage).
    InsufficientResources,
    /// [`crate::WorkerThread::from_raw`] was given storage that is not a worker thread of
    /// this type (wrong magic, or another context type or event count).
    NotAWorkerThread,
    /// Waiting for the thread to end failed with this status (the thread handle was kept).
    Join(NtStatus),
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
            Self::Unavailable(unavailable) => unavailable.status(),
            Self::NotSupported => NtStatus::NOT_SUPPORTED,
            Self::InvalidParameter | Self::NotAWorkerThread => NtStatus::INVALID_PARAMETER,
            Self::InsufficientResources => NtStatus::INSUFFICIENT_RESOURCES,
            Self::Join(status) | Self::Unexpected(status) => status,
        }
    }
}

/// Failures of [`crate::Event::initialize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    /// [`crate::Event::initialize`] was called twice.
    AlreadyInitialized,
    /// A kernel event routine is missing (named): the event could not be operated.
    ExportMissing(&'static str),
}

impl EventError {
    /// The status a driver would return for this failure.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
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
impl core::error::Error for Unavailable {}

/// `From<E> for NtStatus` through `E::status()`, so that `?` turns any error of this crate into
/// the status a `DriverEntry` returns.
macro_rules! into_status {
    ($($ty:ty),*) => {$(
        impl From<$ty> for NtStatus {
            #[inline]
            fn from(error: $ty) -> Self {
                error.status()
            }
        }
    )*};
}
into_status!(
    CreateError,
    WrapError,
    RegisterError,
    LookupError,
    WorkerError,
    EventError,
    NullDriverObject,
    Unavailable
);

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
        assert_eq!(
            WorkerError::Unavailable(Unavailable::ExportMissing("PsCreateSystemThread")).status(),
            NtStatus::NOT_SUPPORTED
        );
        assert_eq!(
            WorkerError::NotAWorkerThread.status(),
            NtStatus::INVALID_PARAMETER
        );
        assert_eq!(
            WorkerError::Join(NtStatus::INVALID_PARAMETER_1).status(),
            NtStatus::INVALID_PARAMETER_1
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
        assert_eq!(
            LookupError::RegisteredByAnotherImage(1).status(),
            NtStatus::OBJECT_TYPE_MISMATCH
        );
        assert_eq!(
            WrapError::SignatureMismatch.status(),
            NtStatus::OBJECT_TYPE_MISMATCH
        );
        assert_eq!(WrapError::Busy.status(), NtStatus::DEVICE_BUSY);
        assert_eq!(
            RegisterError::SignatureMismatch(4).status(),
            NtStatus::OBJECT_TYPE_MISMATCH
        );
        assert_eq!(RegisterError::Busy.status(), NtStatus::DEVICE_BUSY);
    }

    /// `?` in a `DriverEntry` body: every error type converts to the status it names.
    #[test]
    fn every_error_converts_into_its_status_with_question_mark() {
        fn entry(step: u8) -> Result<(), NtStatus> {
            match step {
                0 => Err(CreateError::AlreadyExists)?,
                1 => Err(WrapError::NotAnEndpoint)?,
                2 => Err(RegisterError::DrainTimeout)?,
                3 => Err(LookupError::NotRegistered(7))?,
                4 => Err(WorkerError::InsufficientResources)?,
                5 => Err(EventError::AlreadyInitialized)?,
                6 => Err(NullDriverObject)?,
                7 => Err(Unavailable::DriverBlocked)?,
                _ => Ok(()),
            }
        }
        let expected = [
            NtStatus::RESOURCE_IN_USE,
            NtStatus::NOT_FOUND,
            NtStatus::UNSUCCESSFUL,
            NtStatus::NOT_FOUND,
            NtStatus::INSUFFICIENT_RESOURCES,
            NtStatus::INVALID_PARAMETER,
            NtStatus::INVALID_PARAMETER,
            NtStatus::DRIVER_BLOCKED,
        ];
        for (step, status) in (0u8..).zip(expected) {
            assert_eq!(entry(step), Err(status), "step {step}");
        }
        assert_eq!(entry(8), Ok(()));
    }
}
