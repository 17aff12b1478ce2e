//! The `NTSTATUS` values of `ntstatus.h` that the DDI documents (`docs/ddi.md#status-codes`)
//! and that the host kernel returns. The I/O manager model's own codes are in
//! `crate::wdm::status`.

use super::nt::NTSTATUS;

/// Declares each code from its `ntstatus.h` value (a `u32` literal, as the header writes it)
/// and [`STATUS_CODES`], every code with its name.
macro_rules! codes {
    ($($(#[doc = $doc:literal])* $name:ident = $value:literal;)*) => {
        $(
            $(#[doc = $doc])*
            pub const $name: NTSTATUS = u32::cast_signed($value);
        )*

        /// Every code of this module and its C name.
        pub const STATUS_CODES: &[(&str, NTSTATUS)] = &[$((stringify!($name), $name)),*];
    };
}

codes! {
    /// Success; also `STATUS_WAIT_0`.
    STATUS_SUCCESS = 0x0000_0000;
    /// A `WaitAny` wait satisfied by object 0.
    STATUS_WAIT_0 = 0x0000_0000;
    /// … by object 1.
    STATUS_WAIT_1 = 0x0000_0001;
    /// … by object 63, the last (`MAXIMUM_WAIT_OBJECTS` - 1).
    STATUS_WAIT_63 = 0x0000_003F;
    /// An alertable user-mode wait ended to deliver a user APC.
    STATUS_USER_APC = 0x0000_00C0;
    /// An alertable wait ended by an alert.
    STATUS_ALERTED = 0x0000_0101;
    /// A wait's timeout elapsed.
    STATUS_TIMEOUT = 0x0000_0102;
    /// The operation is in progress (an IRP marked pending).
    STATUS_PENDING = 0x0000_0103;
    /// Registration: the calls in flight did not drain in time.
    STATUS_UNSUCCESSFUL = 0xC000_0001;
    /// The routine is not implemented.
    STATUS_NOT_IMPLEMENTED = 0xC000_0002;
    /// A handle that is not open.
    STATUS_INVALID_HANDLE = 0xC000_0008;
    /// A parameter is invalid.
    STATUS_INVALID_PARAMETER = 0xC000_000D;
    /// The request is not valid for the device.
    STATUS_INVALID_DEVICE_REQUEST = 0xC000_0010;
    /// The name (or key) is already in use.
    STATUS_OBJECT_NAME_COLLISION = 0xC000_0035;
    /// Out of resources.
    STATUS_INSUFFICIENT_RESOURCES = 0xC000_009A;
    /// DriverProxy is not available.
    STATUS_NOT_SUPPORTED = 0xC000_00BB;
    /// Registration: an existing id with another `ParameterCount`.
    STATUS_INVALID_PARAMETER_3 = 0xC000_00F1;
    /// Lookup by endpoint: not an endpoint of the extension.
    STATUS_NOT_FOUND = 0xC000_0225;
    /// A load failed on a static import the kernel does not export.
    STATUS_DRIVER_ENTRYPOINT_NOT_FOUND = 0xC000_0263;
    /// Creation: the driver is excluded by policy.
    STATUS_DRIVER_BLOCKED = 0xC000_036C;
    /// Creation: the driver object already owns an extension.
    STATUS_RESOURCE_IN_USE = 0xC000_0708;
}

/// `STATUS_WAIT_0 + index`: a `WaitAny` wait satisfied by object `index`.
///
/// # Panics
/// For an `index` of 64 or more (`MAXIMUM_WAIT_OBJECTS`).
#[must_use]
pub const fn status_wait(index: u32) -> NTSTATUS {
    assert!(index < 64, "STATUS_WAIT_0 .. STATUS_WAIT_63");
    STATUS_WAIT_0 + index.cast_signed()
}
