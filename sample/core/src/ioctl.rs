//! The sample's I/O control codes, built with `CTL_CODE` semantics.
//!
//! A control code packs four fields into 32 bits (`devioctl.h`):
//!
//! ```text
//!  31              16 15  14 13                 2 1    0
//! +------------------+------+--------------------+------+
//! |   DeviceType     |Access|      Function      |Method|
//! +------------------+------+--------------------+------+
//! ```
//!
//! `CTL_CODE(DeviceType, Function, Method, Access) =
//! (DeviceType << 16) | (Access << 14) | (Function << 2) | Method`.
//! Device types below `0x8000` and function numbers below `0x800` are reserved for
//! Microsoft; the sample uses [`DEVICE_TYPE`] `0x8D57` and functions `0x900..=0x903`.
//!
//! Every code is `METHOD_BUFFERED` (the I/O manager copies the caller's input into one
//! system buffer and copies the driver's output back from it) and `FILE_ANY_ACCESS`:
//!
//! | request | function | code |
//! |---|---|---|
//! | [`IOCTL_HOTSWAP_VERSION`] | `0x900` | `0x8D57_2400` |
//! | [`IOCTL_HOTSWAP_TRANSFORM`] | `0x901` | `0x8D57_2404` |
//! | [`IOCTL_HOTSWAP_STATS`] | `0x902` | `0x8D57_2408` |
//! | [`IOCTL_HOTSWAP_RESET`] | `0x903` | `0x8D57_240C` |

/// The sample's device type (`FILE_DEVICE_*` value), in the vendor range `0x8000..=0xFFFF`.
/// Also the `DeviceType` the front ends pass to `IoCreateDevice` / `WdfDeviceInitSetDeviceType`.
pub const DEVICE_TYPE: u16 = 0x8D57;

/// First function number of the sample (the vendor range starts at `0x800`).
pub const FUNCTION_BASE: u16 = 0x900;

/// The largest function number the 12-bit field holds.
pub const FUNCTION_MAX: u16 = 0xFFF;

/// How the I/O manager passes buffers (the two low bits of a control code).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `METHOD_BUFFERED` (0): one system buffer for input and output.
    Buffered = 0,
    /// `METHOD_IN_DIRECT` (1).
    InDirect = 1,
    /// `METHOD_OUT_DIRECT` (2).
    OutDirect = 2,
    /// `METHOD_NEITHER` (3): raw user addresses.
    Neither = 3,
}

/// The access the caller's handle needs (bits 14–15 of a control code).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `FILE_ANY_ACCESS` (0).
    Any = 0,
    /// `FILE_READ_ACCESS` (1).
    Read = 1,
    /// `FILE_WRITE_ACCESS` (2).
    Write = 2,
    /// `FILE_READ_ACCESS | FILE_WRITE_ACCESS` (3).
    ReadWrite = 3,
}

/// `CTL_CODE(device_type, function, method, access)`.
///
/// For a `function` of at most [`FUNCTION_MAX`] this is exactly the C macro. The C macro lets
/// a larger function number bleed into the access bits; this function masks it to its 12
/// bits instead, so the result always decodes back into the fields given (check with
/// [`ControlCode::new`] when the function number is not a constant).
#[must_use]
pub const fn ctl_code(device_type: u16, function: u16, method: Method, access: Access) -> u32 {
    ((device_type as u32) << 16)
        | ((access as u32) << 14)
        | (((function & FUNCTION_MAX) as u32) << 2)
        | method as u32
}

/// A control code split into its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlCode {
    /// `DeviceType` (bits 16–31).
    pub device_type: u16,
    /// `Access` (bits 14–15).
    pub access: Access,
    /// `Function` (bits 2–13).
    pub function: u16,
    /// `Method` (bits 0–1).
    pub method: Method,
}

impl ControlCode {
    /// The fields, if `function` fits its 12 bits.
    #[must_use]
    pub const fn new(
        device_type: u16,
        function: u16,
        method: Method,
        access: Access,
    ) -> Option<Self> {
        if function > FUNCTION_MAX {
            None
        } else {
            Some(Self {
                device_type,
                access,
                function,
                method,
            })
        }
    }

    /// Splits any 32-bit value into its fields (every value decodes).
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "each field is masked to its width first"
    )]
    pub const fn decode(code: u32) -> Self {
        let method = match code & 3 {
            0 => Method::Buffered,
            1 => Method::InDirect,
            2 => Method::OutDirect,
            _ => Method::Neither,
        };
        let access = match (code >> 14) & 3 {
            0 => Access::Any,
            1 => Access::Read,
            2 => Access::Write,
            _ => Access::ReadWrite,
        };
        Self {
            device_type: (code >> 16) as u16,
            access,
            function: ((code >> 2) & FUNCTION_MAX as u32) as u16,
            method,
        }
    }

    /// The 32-bit code ([`ctl_code`] of the fields).
    #[must_use]
    pub const fn encode(self) -> u32 {
        ctl_code(self.device_type, self.function, self.method, self.access)
    }

    /// Whether bit 31 (`DeviceType >= 0x8000`, the "common" bit) marks a vendor device type.
    #[must_use]
    pub const fn is_vendor_device_type(self) -> bool {
        self.device_type >= 0x8000
    }

    /// Whether the function number is in the vendor range (`>= 0x800`).
    #[must_use]
    pub const fn is_vendor_function(self) -> bool {
        self.function >= 0x800
    }
}

/// The requests of the sample's protocol; the wire value goes in the request header's
/// `request` field and must agree with the control code the request is sent with.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// Which build answers (`VERSION`): response payload [`VersionInfo`](crate::VersionInfo).
    Version = 1,
    /// Transform the payload bytes (`TRANSFORM`): v1 and v2 answer differently.
    Transform = 2,
    /// Read the counters (`STATS`): response payload [`StatsInfo`](crate::StatsInfo).
    Stats = 3,
    /// Read and zero the request counters (`RESET`): response payload the counters before.
    Reset = 4,
}

impl RequestKind {
    /// Every request, in wire-value order.
    pub const ALL: [Self; 4] = [Self::Version, Self::Transform, Self::Stats, Self::Reset];

    /// The wire value.
    #[must_use]
    pub const fn raw(self) -> u16 {
        self as u16
    }

    /// The request with wire value `raw`, if there is one.
    #[must_use]
    pub const fn from_raw(raw: u16) -> Option<Self> {
        match raw {
            1 => Some(Self::Version),
            2 => Some(Self::Transform),
            3 => Some(Self::Stats),
            4 => Some(Self::Reset),
            _ => None,
        }
    }

    /// The function number of this request's control code.
    #[must_use]
    pub const fn function(self) -> u16 {
        FUNCTION_BASE + self.raw() - 1
    }

    /// The control code this request is sent with.
    #[must_use]
    pub const fn control_code(self) -> u32 {
        ctl_code(DEVICE_TYPE, self.function(), Method::Buffered, Access::Any)
    }

    /// The request a control code stands for: only the exact codes of [`Self::control_code`]
    /// match (same device type, function, `METHOD_BUFFERED`, `FILE_ANY_ACCESS`).
    #[must_use]
    pub const fn from_control_code(code: u32) -> Option<Self> {
        match code {
            IOCTL_HOTSWAP_VERSION => Some(Self::Version),
            IOCTL_HOTSWAP_TRANSFORM => Some(Self::Transform),
            IOCTL_HOTSWAP_STATS => Some(Self::Stats),
            IOCTL_HOTSWAP_RESET => Some(Self::Reset),
            _ => None,
        }
    }

    /// The request's name as the protocol documents it (`"VERSION"`, …).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Version => "VERSION",
            Self::Transform => "TRANSFORM",
            Self::Stats => "STATS",
            Self::Reset => "RESET",
        }
    }
}

/// `VERSION`: which build answers, its protocol version and build tag.
pub const IOCTL_HOTSWAP_VERSION: u32 =
    ctl_code(DEVICE_TYPE, FUNCTION_BASE, Method::Buffered, Access::Any);
/// `TRANSFORM`: the payload transformed by the answering build.
pub const IOCTL_HOTSWAP_TRANSFORM: u32 = ctl_code(
    DEVICE_TYPE,
    FUNCTION_BASE + 1,
    Method::Buffered,
    Access::Any,
);
/// `STATS`: served-request, rejected-request and worker-tick counters.
pub const IOCTL_HOTSWAP_STATS: u32 = ctl_code(
    DEVICE_TYPE,
    FUNCTION_BASE + 2,
    Method::Buffered,
    Access::Any,
);
/// `RESET`: the counters as `STATS` reports them, then zeroed.
pub const IOCTL_HOTSWAP_RESET: u32 = ctl_code(
    DEVICE_TYPE,
    FUNCTION_BASE + 3,
    Method::Buffered,
    Access::Any,
);

const _: () = {
    assert!(DEVICE_TYPE >= 0x8000, "vendor device types start at 0x8000");
    assert!(
        FUNCTION_BASE >= 0x800,
        "vendor function numbers start at 0x800"
    );
    assert!(RequestKind::Reset.function() <= FUNCTION_MAX);
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The C macro, written out independently.
    const fn c_ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
        (device_type << 16) | (access << 14) | (function << 2) | method
    }

    #[test]
    fn codes_match_the_c_macro_and_the_documented_values() {
        assert_eq!(IOCTL_HOTSWAP_VERSION, c_ctl_code(0x8D57, 0x900, 0, 0));
        assert_eq!(IOCTL_HOTSWAP_VERSION, 0x8D57_2400);
        assert_eq!(IOCTL_HOTSWAP_TRANSFORM, 0x8D57_2404);
        assert_eq!(IOCTL_HOTSWAP_STATS, 0x8D57_2408);
        assert_eq!(IOCTL_HOTSWAP_RESET, 0x8D57_240C);
        // A well-known in-box code, to check the macro itself: IOCTL_DISK_GET_DRIVE_GEOMETRY
        // = CTL_CODE(FILE_DEVICE_DISK = 7, 0, METHOD_BUFFERED, FILE_ANY_ACCESS) = 0x70000.
        assert_eq!(ctl_code(7, 0, Method::Buffered, Access::Any), 0x0007_0000);
        // FSCTL_GET_RETRIEVAL_POINTERS = CTL_CODE(9, 28, METHOD_NEITHER, FILE_ANY_ACCESS).
        assert_eq!(ctl_code(9, 28, Method::Neither, Access::Any), 0x0009_0073);
        // IOCTL_STORAGE_EJECT_MEDIA = CTL_CODE(0x2D, 0x202, METHOD_BUFFERED, FILE_READ_ACCESS).
        assert_eq!(
            ctl_code(0x2D, 0x202, Method::Buffered, Access::Read),
            0x002D_4808
        );
    }

    #[test]
    fn every_code_decodes_into_its_fields() {
        for kind in RequestKind::ALL {
            let fields = ControlCode::decode(kind.control_code());
            assert_eq!(fields.device_type, DEVICE_TYPE);
            assert_eq!(fields.function, kind.function());
            assert_eq!(fields.method, Method::Buffered);
            assert_eq!(fields.access, Access::Any);
            assert!(fields.is_vendor_device_type() && fields.is_vendor_function());
            assert_eq!(fields.encode(), kind.control_code());
            assert_eq!(
                RequestKind::from_control_code(kind.control_code()),
                Some(kind)
            );
            assert_eq!(RequestKind::from_raw(kind.raw()), Some(kind));
        }
    }

    #[test]
    fn decode_then_encode_is_the_identity_on_all_fields() {
        let methods = [
            Method::Buffered,
            Method::InDirect,
            Method::OutDirect,
            Method::Neither,
        ];
        let accesses = [Access::Any, Access::Read, Access::Write, Access::ReadWrite];
        for device_type in [0, 1, 0x7FFF, 0x8000, DEVICE_TYPE, 0xFFFF] {
            for function in [0, 1, 0x7FF, 0x800, 0xABC, FUNCTION_MAX] {
                for method in methods {
                    for access in accesses {
                        let fields =
                            ControlCode::new(device_type, function, method, access).unwrap();
                        let code = fields.encode();
                        assert_eq!(
                            code,
                            c_ctl_code(
                                device_type.into(),
                                function.into(),
                                method as u32,
                                access as u32
                            )
                        );
                        assert_eq!(ControlCode::decode(code), fields);
                    }
                }
            }
        }
    }

    #[test]
    fn oversized_function_numbers_are_refused_or_masked() {
        assert_eq!(
            ControlCode::new(DEVICE_TYPE, 0x1000, Method::Buffered, Access::Any),
            None
        );
        let masked = ctl_code(DEVICE_TYPE, 0x1900, Method::Buffered, Access::Any);
        assert_eq!(
            masked, IOCTL_HOTSWAP_VERSION,
            "function is masked to 12 bits, access stays ANY"
        );
    }

    #[test]
    fn near_miss_codes_are_not_requests() {
        for kind in RequestKind::ALL {
            let code = ControlCode::decode(kind.control_code());
            let wrong_method = ControlCode {
                method: Method::Neither,
                ..code
            }
            .encode();
            let wrong_access = ControlCode {
                access: Access::ReadWrite,
                ..code
            }
            .encode();
            let wrong_type = ControlCode {
                device_type: 0x22,
                ..code
            }
            .encode();
            for near in [wrong_method, wrong_access, wrong_type] {
                assert_eq!(RequestKind::from_control_code(near), None, "{near:#010x}");
            }
        }
        assert_eq!(RequestKind::from_control_code(0), None);
        assert_eq!(RequestKind::from_raw(0), None);
        assert_eq!(RequestKind::from_raw(5), None);
    }
}
