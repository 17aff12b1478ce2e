//! [`NtStatus`]: a typed `NTSTATUS` whose `Display` shows the symbolic name.

use core::fmt;

use crate::sys;

/// An `NTSTATUS` value.
///
/// `Display` shows the symbolic name of every code this crate knows
/// (`STATUS_NOT_FOUND (0xC0000225)`), and the bare hexadecimal value otherwise; wait results
/// `STATUS_WAIT_0..=STATUS_WAIT_63` are shown as such.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NtStatus(pub sys::NTSTATUS);

macro_rules! named {
    ($($name:ident => $raw:ident),* $(,)?) => {
        impl NtStatus {
            $(
                #[doc = concat!("`", stringify!($raw), "`.")]
                pub const $name: Self = Self(sys::$raw);
            )*
        }
    };
}

named! {
    SUCCESS => STATUS_SUCCESS,
    WAIT_0 => STATUS_WAIT_0,
    ABANDONED_WAIT_0 => STATUS_ABANDONED_WAIT_0,
    USER_APC => STATUS_USER_APC,
    ALERTED => STATUS_ALERTED,
    TIMEOUT => STATUS_TIMEOUT,
    PENDING => STATUS_PENDING,
    DEVICE_BUSY => STATUS_DEVICE_BUSY,
    OBJECT_TYPE_MISMATCH => STATUS_OBJECT_TYPE_MISMATCH,
    UNSUCCESSFUL => STATUS_UNSUCCESSFUL,
    NOT_IMPLEMENTED => STATUS_NOT_IMPLEMENTED,
    INVALID_PARAMETER => STATUS_INVALID_PARAMETER,
    INVALID_DEVICE_REQUEST => STATUS_INVALID_DEVICE_REQUEST,
    NO_MEMORY => STATUS_NO_MEMORY,
    BUFFER_TOO_SMALL => STATUS_BUFFER_TOO_SMALL,
    OBJECT_NAME_COLLISION => STATUS_OBJECT_NAME_COLLISION,
    REVISION_MISMATCH => STATUS_REVISION_MISMATCH,
    INSUFFICIENT_RESOURCES => STATUS_INSUFFICIENT_RESOURCES,
    NOT_SUPPORTED => STATUS_NOT_SUPPORTED,
    INVALID_PARAMETER_1 => STATUS_INVALID_PARAMETER_1,
    INVALID_PARAMETER_2 => STATUS_INVALID_PARAMETER_2,
    INVALID_PARAMETER_3 => STATUS_INVALID_PARAMETER_3,
    INVALID_DEVICE_STATE => STATUS_INVALID_DEVICE_STATE,
    INVALID_BUFFER_SIZE => STATUS_INVALID_BUFFER_SIZE,
    NOT_FOUND => STATUS_NOT_FOUND,
    DRIVER_ENTRYPOINT_NOT_FOUND => STATUS_DRIVER_ENTRYPOINT_NOT_FOUND,
    DRIVER_BLOCKED => STATUS_DRIVER_BLOCKED,
    RESOURCE_IN_USE => STATUS_RESOURCE_IN_USE,
}

/// Severity of an [`NtStatus`], from its top two bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `NT_SUCCESS` and not informational (top bits 00).
    Success,
    /// `NT_INFORMATION` (top bits 01).
    Informational,
    /// `NT_WARNING` (top bits 10).
    Warning,
    /// `NT_ERROR` (top bits 11).
    Error,
}

impl NtStatus {
    /// The raw value.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn raw(self) -> sys::NTSTATUS {
        self.0
    }

    /// `NT_SUCCESS`: success or informational (the value is non-negative).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// `NT_ERROR`: the top two bits are set.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn is_error(self) -> bool {
        matches!(self.severity(), Severity::Error)
    }

    /// The severity field.
    ///
    /// IRQL: any.
    #[must_use]
    #[allow(clippy::cast_sign_loss)]
    pub const fn severity(self) -> Severity {
        match (self.0 as u32) >> 30 {
            0 => Severity::Success,
            1 => Severity::Informational,
            2 => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// `Ok(())` for a success code, `Err(self)` otherwise.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// `self`, when it is a warning or an error (`!NT_SUCCESS`).
    pub const fn ok(self) -> Result<(), NtStatus> {
        if self.is_success() { Ok(()) } else { Err(self) }
    }

    /// For a `WaitAny` wait result `STATUS_WAIT_0 + n` (n < 64), `Some(n)`.
    ///
    /// IRQL: any.
    #[must_use]
    #[allow(clippy::cast_sign_loss)]
    pub const fn wait_index(self) -> Option<u32> {
        if self.0 >= 0 && self.0 < sys::MAXIMUM_WAIT_OBJECTS.cast_signed() {
            Some(self.0 as u32)
        } else {
            None
        }
    }

    /// The symbolic name (`"STATUS_NOT_FOUND"`), if this crate knows the code.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        sys::status_name(self.0)
    }
}

impl From<sys::NTSTATUS> for NtStatus {
    fn from(raw: sys::NTSTATUS) -> Self {
        Self(raw)
    }
}

impl From<NtStatus> for sys::NTSTATUS {
    fn from(status: NtStatus) -> Self {
        status.0
    }
}

impl fmt::Display for NtStatus {
    #[allow(clippy::cast_sign_loss)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.0 as u32;
        match (self.name(), self.wait_index()) {
            (Some(name), _) => write!(f, "{name} (0x{hex:08X})"),
            (None, Some(index)) => write!(f, "STATUS_WAIT_{index} (0x{hex:08X})"),
            (None, None) => write!(f, "NTSTATUS 0x{hex:08X}"),
        }
    }
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl core::error::Error for NtStatus {}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;

    use super::*;

    #[test]
    fn every_known_code_displays_its_symbolic_name() {
        for &(raw, name) in sys::KNOWN_STATUS_CODES {
            let shown = format!("{}", NtStatus(raw));
            assert!(shown.starts_with(name), "{shown} should start with {name}");
            #[allow(clippy::cast_sign_loss)]
            let hex = format!("0x{:08X}", raw as u32);
            assert!(shown.ends_with(&format!("({hex})")), "{shown}");
        }
    }

    #[test]
    fn known_codes_have_unique_values_and_names() {
        for (i, &(a, an)) in sys::KNOWN_STATUS_CODES.iter().enumerate() {
            for &(b, bn) in &sys::KNOWN_STATUS_CODES[i + 1..] {
                assert_ne!(a, b, "{an} and {bn} share a value");
                assert_ne!(an, bn);
            }
        }
    }

    #[test]
    fn documented_values_match_ntstatus_h() {
        assert_eq!(NtStatus::NOT_FOUND.raw(), 0xC000_0225_u32.cast_signed());
        assert_eq!(
            NtStatus::INVALID_PARAMETER_3.raw(),
            0xC000_00F1_u32.cast_signed()
        );
        assert_eq!(
            NtStatus::DRIVER_BLOCKED.raw(),
            0xC000_036C_u32.cast_signed()
        );
        assert_eq!(
            NtStatus::RESOURCE_IN_USE.raw(),
            0xC000_0708_u32.cast_signed()
        );
        assert_eq!(NtStatus::NOT_SUPPORTED.raw(), 0xC000_00BB_u32.cast_signed());
        assert_eq!(
            NtStatus::INSUFFICIENT_RESOURCES.raw(),
            0xC000_009A_u32.cast_signed()
        );
        assert_eq!(NtStatus::UNSUCCESSFUL.raw(), 0xC000_0001_u32.cast_signed());
        assert_eq!(NtStatus::TIMEOUT.raw(), 0x102);
        assert_eq!(NtStatus::ALERTED.raw(), 0x101);
        assert_eq!(NtStatus::USER_APC.raw(), 0xC0);
    }

    #[test]
    fn unknown_codes_display_hex_and_wait_results_their_index() {
        assert_eq!(format!("{}", NtStatus(0x1234_5678)), "NTSTATUS 0x12345678");
        assert_eq!(format!("{}", NtStatus(5)), "STATUS_WAIT_5 (0x00000005)");
        assert_eq!(format!("{}", NtStatus(2)), "STATUS_WAIT_2 (0x00000002)");
        assert_eq!(NtStatus(64).wait_index(), None);
    }

    #[test]
    fn severity_follows_the_top_two_bits() {
        assert_eq!(NtStatus::SUCCESS.severity(), Severity::Success);
        assert_eq!(NtStatus(0x4000_0000).severity(), Severity::Informational);
        assert_eq!(
            NtStatus(0x8000_0005_u32.cast_signed()).severity(),
            Severity::Warning
        );
        assert_eq!(NtStatus::NOT_FOUND.severity(), Severity::Error);
        assert!(NtStatus::TIMEOUT.is_success());
        assert!(!NtStatus(0x8000_0005_u32.cast_signed()).is_success());
        assert_eq!(NtStatus::NOT_FOUND.ok(), Err(NtStatus::NOT_FOUND));
        assert_eq!(NtStatus::SUCCESS.ok(), Ok(()));
    }
}
