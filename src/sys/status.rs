//! `NTSTATUS` codes (values from `ntstatus.h`) that the DriverProxy family documents, plus
//! the ones the safe layer and its fallback paths produce.

use super::ntdef::NTSTATUS;

macro_rules! status_codes {
    ($($(#[doc = $doc:literal])* $name:ident = $value:literal;)*) => {
        $(
            $(#[doc = $doc])*
            #[allow(clippy::cast_possible_wrap)]
            pub const $name: NTSTATUS = $value as u32 as NTSTATUS;
        )*

        /// Every code in this module, with its symbolic name, in declaration order.
        pub const KNOWN_STATUS_CODES: &[(NTSTATUS, &str)] = &[$(($name, stringify!($name))),*];
    };
}

status_codes! {
    /// The operation completed successfully (also `STATUS_WAIT_0`: object 0 was signalled).
    STATUS_SUCCESS = 0x0000_0000;
    /// A `WaitAny` wait was satisfied by object 1.
    STATUS_WAIT_1 = 0x0000_0001;
    /// A `WaitAny` wait was satisfied by object 2.
    STATUS_WAIT_2 = 0x0000_0002;
    /// A `WaitAny` wait was satisfied by object 3.
    STATUS_WAIT_3 = 0x0000_0003;
    /// A `WaitAny` wait was satisfied by object 63, the last possible one.
    STATUS_WAIT_63 = 0x0000_003F;
    /// A mutant in the wait was abandoned (index 0).
    STATUS_ABANDONED_WAIT_0 = 0x0000_0080;
    /// An alertable user-mode wait was ended to deliver a user APC.
    STATUS_USER_APC = 0x0000_00C0;
    /// An alertable wait was ended by an alert.
    STATUS_ALERTED = 0x0000_0101;
    /// The wait timed out.
    STATUS_TIMEOUT = 0x0000_0102;
    /// The operation is in progress.
    STATUS_PENDING = 0x0000_0103;
    /// The device is busy (this crate: another registration of the driver is in progress).
    STATUS_DEVICE_BUSY = 0x8000_0011;
    /// The operation failed (DriverProxy: the drain of in-flight calls timed out).
    STATUS_UNSUCCESSFUL = 0xC000_0001;
    /// The routine is not implemented (e.g. a missing export in a shim).
    STATUS_NOT_IMPLEMENTED = 0xC000_0002;
    /// A parameter is invalid.
    STATUS_INVALID_PARAMETER = 0xC000_000D;
    /// The request is not valid for this device.
    STATUS_INVALID_DEVICE_REQUEST = 0xC000_0010;
    /// Not enough virtual memory or paging file quota.
    STATUS_NO_MEMORY = 0xC000_0017;
    /// The buffer is too small for the data.
    STATUS_BUFFER_TOO_SMALL = 0xC000_0023;
    /// An object with that name already exists.
    STATUS_OBJECT_NAME_COLLISION = 0xC000_0035;
    /// The object type does not match (this crate: an endpoint id or address is registered
    /// with another signature).
    STATUS_OBJECT_TYPE_MISMATCH = 0xC000_0024;
    /// The revision level is unknown.
    STATUS_REVISION_MISMATCH = 0xC000_0059;
    /// Insufficient system resources.
    STATUS_INSUFFICIENT_RESOURCES = 0xC000_009A;
    /// The request is not supported (DriverProxy: the system lacks it).
    STATUS_NOT_SUPPORTED = 0xC000_00BB;
    /// The first parameter is invalid.
    STATUS_INVALID_PARAMETER_1 = 0xC000_00EF;
    /// The second parameter is invalid.
    STATUS_INVALID_PARAMETER_2 = 0xC000_00F0;
    /// The third parameter is invalid (DriverProxy V1: a re-registration changed `ParameterCount`).
    STATUS_INVALID_PARAMETER_3 = 0xC000_00F1;
    /// The device is not in a valid state for the request.
    STATUS_INVALID_DEVICE_STATE = 0xC000_0184;
    /// The buffer size is invalid for the request.
    STATUS_INVALID_BUFFER_SIZE = 0xC000_0206;
    /// The object was not found (DriverProxy V2: the address is not an endpoint).
    STATUS_NOT_FOUND = 0xC000_0225;
    /// A driver imports a routine the running kernel does not export; the driver fails to load.
    STATUS_DRIVER_ENTRYPOINT_NOT_FOUND = 0xC000_0263;
    /// The driver is blocked (DriverProxy: excluded by registry policy).
    STATUS_DRIVER_BLOCKED = 0xC000_036C;
    /// The resource is in use (DriverProxy: the driver object already owns an extension).
    STATUS_RESOURCE_IN_USE = 0xC000_0708;
}

/// `STATUS_WAIT_0`: a `WaitAny` wait was satisfied by object 0 (same value as success).
pub const STATUS_WAIT_0: NTSTATUS = STATUS_SUCCESS;

/// The symbolic name of `status`, if it is one of [`KNOWN_STATUS_CODES`]; `None` otherwise,
/// including for `STATUS_WAIT_4` to `STATUS_WAIT_62`, which are not in the table
/// (`NtStatus`'s `Display` names them from their index).
///
/// IRQL: any.
#[must_use]
pub fn status_name(status: NTSTATUS) -> Option<&'static str> {
    KNOWN_STATUS_CODES
        .iter()
        .find(|(code, _)| *code == status)
        .map(|(_, name)| *name)
}
