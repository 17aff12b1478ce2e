//! The sample's request/response protocol: versioned `#[repr(C)]` structures, their
//! little-endian byte encodings, and the validation of every length and field.
//!
//! # Wire format
//!
//! All integers are little-endian. The structures below are `#[repr(C)]` with no padding
//! (asserted at compile time); their field offsets *are* the wire format, but bytes are
//! never reinterpreted as a structure: every field is read and checked one by one.
//!
//! A request (the input buffer) is a [`RequestHeader`] followed by `payload_length` bytes:
//!
//! | offset | field | value |
//! |---|---|---|
//! | 0 | `magic: u32` | [`REQUEST_MAGIC`] (`"HSRQ"`) |
//! | 4 | `protocol_version: u16` | [`PROTOCOL_VERSION`] (1) |
//! | 6 | `header_size: u16` | 16 |
//! | 8 | `request: u16` | the [`RequestKind`] of the control code |
//! | 10 | `flags: u16` | 0 |
//! | 12 | `payload_length: u32` | bytes after the header |
//!
//! A response (the output buffer) is a [`ResponseHeader`] followed by its payload:
//!
//! | offset | field | value |
//! |---|---|---|
//! | 0 | `magic: u32` | [`RESPONSE_MAGIC`] (`"HSRS"`) |
//! | 4 | `protocol_version: u16` | 1 |
//! | 6 | `header_size: u16` | 16 |
//! | 8 | `request: u16` | the request answered |
//! | 10 | `driver_version: u16` | the build that answered: 1 or 2 |
//! | 12 | `payload_length: u32` | bytes after the header |
//!
//! | request | request payload | response payload | response size |
//! |---|---|---|---|
//! | `VERSION` | none | [`VersionInfo`] (32 bytes) | 48 |
//! | `TRANSFORM` | 0 to [`MAX_TRANSFORM_PAYLOAD`] (4096) bytes | the payload transformed by the answering build, same length | 16 + n |
//! | `STATS` | none | [`StatsInfo`] (64 bytes) | 80 |
//! | `RESET` | none | [`StatsInfo`]: the counters just before they were zeroed | 80 |
//!
//! Both builds speak protocol version 1; they differ in `driver_version` and in what
//! `TRANSFORM` does ([`DriverVersion`]).
//!
//! # Errors and their NTSTATUS
//!
//! The driver checks a request in this order and fails it with the first NTSTATUS that
//! applies. A failed request writes nothing (`Information` = 0) and is counted as rejected.
//!
//! | # | condition | [`ProtocolError`] | NTSTATUS |
//! |---|---|---|---|
//! | 1 | the control code is not one of the four sample codes (other device type, function, method or access) | `UnknownControlCode` | `STATUS_INVALID_DEVICE_REQUEST` (0xC0000010) |
//! | 2 | input shorter than the 16-byte header | `InputTooSmall` | `STATUS_BUFFER_TOO_SMALL` (0xC0000023) |
//! | 3 | `magic` is not [`REQUEST_MAGIC`] | `BadMagic` | `STATUS_INVALID_PARAMETER` (0xC000000D) |
//! | 4 | `protocol_version` is not [`PROTOCOL_VERSION`] | `VersionMismatch` | `STATUS_REVISION_MISMATCH` (0xC0000059) |
//! | 5 | `header_size` is not 16 | `BadHeaderSize` | `STATUS_INVALID_PARAMETER` |
//! | 6 | `request` does not match the control code | `RequestMismatch` | `STATUS_INVALID_PARAMETER` |
//! | 7 | `flags` is not 0 | `NonZeroFlags` | `STATUS_INVALID_PARAMETER` |
//! | 8 | `payload_length` above the request's maximum (4096 for `TRANSFORM`, 0 otherwise) | `PayloadTooLarge` | `STATUS_INVALID_BUFFER_SIZE` (0xC0000206) |
//! | 9 | input length is not exactly 16 + `payload_length` | `LengthMismatch` | `STATUS_INVALID_PARAMETER` |
//! | 10 | output buffer shorter than the response (table above) | `OutputTooSmall` | `STATUS_BUFFER_TOO_SMALL` |
//! | – | (front-end error) the declared input or output length exceeds the system buffer | `BufferLengths` | `STATUS_INVALID_PARAMETER` |
//!
//! [`crate::malformed::MALFORMED_REQUESTS`] holds requests that fail each row (1–10), for
//! the tests and for `hotswapctl malformed`, which sends them to a running driver.
//!
//! Decoding a *response* (client side) reuses the same errors: a short response is
//! `InputTooSmall`, a wrong magic `BadMagic`, a response to another request
//! `RequestMismatch`, a field out of range (unknown `driver_version`, `served` not the sum
//! of its parts, …) `BadField`. [`DOCUMENTED_STATUSES`] lists every status this module can
//! produce.

use core::{
    fmt,
    mem::{offset_of, size_of},
};

use driver_proxy::NtStatus;

use crate::{
    ioctl::RequestKind,
    version::DriverVersion,
    wire::{
        read_array, read_u16, read_u32, read_u64, write_array, write_u16, write_u32, write_u64,
    },
};

/// `magic` of every request: the bytes `"HSRQ"`.
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"HSRQ");
/// `magic` of every response: the bytes `"HSRS"`.
pub const RESPONSE_MAGIC: u32 = u32::from_le_bytes(*b"HSRS");
/// The protocol version both builds speak.
pub const PROTOCOL_VERSION: u16 = 1;
/// The largest `TRANSFORM` payload, in bytes.
pub const MAX_TRANSFORM_PAYLOAD: u32 = 4096;

/// Size of [`RequestHeader`] on the wire.
pub const REQUEST_HEADER_SIZE: usize = size_of::<RequestHeader>();
/// Size of [`ResponseHeader`] on the wire.
pub const RESPONSE_HEADER_SIZE: usize = size_of::<ResponseHeader>();
/// Size of [`VersionInfo`] on the wire.
pub const VERSION_INFO_SIZE: usize = size_of::<VersionInfo>();
/// Size of [`StatsInfo`] on the wire.
pub const STATS_INFO_SIZE: usize = size_of::<StatsInfo>();
/// The longest request: a `TRANSFORM` of [`MAX_TRANSFORM_PAYLOAD`] bytes.
pub const MAX_REQUEST_SIZE: usize = REQUEST_HEADER_SIZE + MAX_TRANSFORM_PAYLOAD as usize;
/// The longest response: the answer to the longest `TRANSFORM`.
pub const MAX_RESPONSE_SIZE: usize = RESPONSE_HEADER_SIZE + MAX_TRANSFORM_PAYLOAD as usize;

/// The `header_size` field of requests and responses.
const HEADER_SIZE_FIELD: u16 = 16;

/// Every NTSTATUS the protocol documents for a failed request (see the module table).
pub const DOCUMENTED_STATUSES: [NtStatus; 5] = [
    NtStatus::INVALID_DEVICE_REQUEST,
    NtStatus::BUFFER_TOO_SMALL,
    NtStatus::INVALID_PARAMETER,
    NtStatus::REVISION_MISMATCH,
    NtStatus::INVALID_BUFFER_SIZE,
];

/// The version of this crate packed as `major << 16 | minor << 8 | patch`, as `VERSION`
/// reports it in [`VersionInfo::core_version`].
pub const CORE_VERSION: u32 = (parse_u8(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
    | (parse_u8(env!("CARGO_PKG_VERSION_MINOR")) << 8)
    | parse_u8(env!("CARGO_PKG_VERSION_PATCH"));

/// A decimal number below 256, at compile time.
#[allow(
    clippy::indexing_slicing,
    clippy::panic,
    reason = "evaluated in a constant only"
)]
const fn parse_u8(text: &str) -> u32 {
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "empty version component");
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i].is_ascii_digit(),
            "version component is not a number"
        );
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    assert!(value <= 0xFF, "version component above 255");
    value
}

/// The request header (16 bytes), first in every input buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// [`REQUEST_MAGIC`].
    pub magic: u32,
    /// [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// `size_of::<RequestHeader>()` = 16.
    pub header_size: u16,
    /// The [`RequestKind`] wire value; must match the control code.
    pub request: u16,
    /// Reserved, 0.
    pub flags: u16,
    /// Bytes following the header.
    pub payload_length: u32,
}

/// The response header (16 bytes), first in every output buffer of a successful request.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    /// [`RESPONSE_MAGIC`].
    pub magic: u32,
    /// [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// `size_of::<ResponseHeader>()` = 16.
    pub header_size: u16,
    /// The [`RequestKind`] answered.
    pub request: u16,
    /// The [`DriverVersion`] that answered (1 or 2).
    pub driver_version: u16,
    /// Bytes following the header.
    pub payload_length: u32,
}

/// `VERSION`'s response payload (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// The answering build: 1 or 2 (equal to the header's `driver_version`).
    pub driver_version: u32,
    /// [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// [`CORE_VERSION`] of the core the driver was built with.
    pub core_version: u32,
    /// [`MAX_TRANSFORM_PAYLOAD`] of the answering build.
    pub max_transform_payload: u32,
    /// NUL-padded ASCII build tag ([`DriverVersion::build_tag`]).
    pub build_tag: [u8; 16],
}

/// `STATS` and `RESET` response payload (64 bytes): the counters of [`State`](crate::State).
///
/// `served` is always `served_v1 + served_v2` and `worker_ticks` always
/// `worker_ticks_v1 + worker_ticks_v2` (wrapping at 2^64); a response where they differ is
/// rejected as malformed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsInfo {
    /// Requests served successfully, by any build, since load or the last `RESET`
    /// (inherited across swaps). Includes the request that reads it.
    pub served: u64,
    /// … of which served by v1.
    pub served_v1: u64,
    /// … of which served by v2.
    pub served_v2: u64,
    /// Requests failed by validation (any documented error status).
    pub rejected: u64,
    /// Worker-thread ticks (periodic wake-ups and kicks), by any build.
    pub worker_ticks: u64,
    /// … of which run by v1's worker routine.
    pub worker_ticks_v1: u64,
    /// … of which run by v2's worker routine.
    pub worker_ticks_v2: u64,
    /// Hand-overs this state has been through (0 before the first swap).
    pub swaps: u32,
    /// The build whose worker routine ticked last (0: none yet).
    pub last_worker_version: u32,
}

const _: () = {
    assert!(size_of::<RequestHeader>() == 16);
    assert!(offset_of!(RequestHeader, magic) == 0);
    assert!(offset_of!(RequestHeader, protocol_version) == 4);
    assert!(offset_of!(RequestHeader, header_size) == 6);
    assert!(offset_of!(RequestHeader, request) == 8);
    assert!(offset_of!(RequestHeader, flags) == 10);
    assert!(offset_of!(RequestHeader, payload_length) == 12);

    assert!(size_of::<ResponseHeader>() == 16);
    assert!(offset_of!(ResponseHeader, magic) == 0);
    assert!(offset_of!(ResponseHeader, protocol_version) == 4);
    assert!(offset_of!(ResponseHeader, header_size) == 6);
    assert!(offset_of!(ResponseHeader, request) == 8);
    assert!(offset_of!(ResponseHeader, driver_version) == 10);
    assert!(offset_of!(ResponseHeader, payload_length) == 12);

    assert!(size_of::<VersionInfo>() == 32);
    assert!(offset_of!(VersionInfo, driver_version) == 0);
    assert!(offset_of!(VersionInfo, protocol_version) == 4);
    assert!(offset_of!(VersionInfo, core_version) == 8);
    assert!(offset_of!(VersionInfo, max_transform_payload) == 12);
    assert!(offset_of!(VersionInfo, build_tag) == 16);

    assert!(size_of::<StatsInfo>() == 64);
    assert!(offset_of!(StatsInfo, served) == 0);
    assert!(offset_of!(StatsInfo, served_v1) == 8);
    assert!(offset_of!(StatsInfo, served_v2) == 16);
    assert!(offset_of!(StatsInfo, rejected) == 24);
    assert!(offset_of!(StatsInfo, worker_ticks) == 32);
    assert!(offset_of!(StatsInfo, worker_ticks_v1) == 40);
    assert!(offset_of!(StatsInfo, worker_ticks_v2) == 48);
    assert!(offset_of!(StatsInfo, swaps) == 56);
    assert!(offset_of!(StatsInfo, last_worker_version) == 60);

    // The request and response headers have the same size, so a TRANSFORM payload sits at
    // the same offset in both: the in-place `METHOD_BUFFERED` dispatch relies on it.
    assert!(REQUEST_HEADER_SIZE == RESPONSE_HEADER_SIZE);
    assert!(HEADER_SIZE_FIELD as usize == REQUEST_HEADER_SIZE);
    assert!(MAX_REQUEST_SIZE <= u32::MAX as usize);
};

/// A malformed request or response; [`Self::status`] is the NTSTATUS the driver completes a
/// request with (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not one of the sample's control codes.
    UnknownControlCode(u32),
    /// The input (or, client side, the response) is shorter than its header or structure.
    InputTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        actual: usize,
    },
    /// `magic` is wrong.
    BadMagic(u32),
    /// `protocol_version` is not [`PROTOCOL_VERSION`].
    VersionMismatch(u16),
    /// `header_size` is not 16.
    BadHeaderSize(u16),
    /// The header's `request` field does not name the request expected (the control code's,
    /// or client side, the one sent).
    RequestMismatch {
        /// The request expected.
        expected: RequestKind,
        /// The `request` field found.
        found: u16,
    },
    /// `flags` is not zero.
    NonZeroFlags(u16),
    /// `payload_length` is above the request's maximum.
    PayloadTooLarge {
        /// Declared payload length.
        length: u64,
        /// The maximum for this request.
        max: u32,
    },
    /// The buffer length is not header + `payload_length` (or, client side, a fixed-size
    /// response declares another length).
    LengthMismatch {
        /// Length the header declares (header + payload).
        declared: u64,
        /// Length of the buffer.
        actual: usize,
    },
    /// The output buffer cannot hold the response.
    OutputTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        actual: usize,
    },
    /// A field of a response or payload is out of range.
    BadField(&'static str),
    /// The front end passed input/output lengths larger than the system buffer.
    BufferLengths,
}

impl ProtocolError {
    /// The NTSTATUS the driver completes a request failing this way with.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::UnknownControlCode(_) => NtStatus::INVALID_DEVICE_REQUEST,
            Self::InputTooSmall { .. } | Self::OutputTooSmall { .. } => NtStatus::BUFFER_TOO_SMALL,
            Self::VersionMismatch(_) => NtStatus::REVISION_MISMATCH,
            Self::PayloadTooLarge { .. } => NtStatus::INVALID_BUFFER_SIZE,
            Self::BadMagic(_)
            | Self::BadHeaderSize(_)
            | Self::RequestMismatch { .. }
            | Self::NonZeroFlags(_)
            | Self::LengthMismatch { .. }
            | Self::BadField(_)
            | Self::BufferLengths => NtStatus::INVALID_PARAMETER,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownControlCode(code) => write!(f, "unknown control code {code:#010X}"),
            Self::InputTooSmall { needed, actual } => {
                write!(
                    f,
                    "buffer of {actual} bytes is shorter than the {needed} bytes needed"
                )
            }
            Self::BadMagic(magic) => write!(f, "bad magic {magic:#010X}"),
            Self::VersionMismatch(version) => {
                write!(f, "protocol version {version}, expected {PROTOCOL_VERSION}")
            }
            Self::BadHeaderSize(size) => write!(f, "header size {size}, expected 16"),
            Self::RequestMismatch { expected, found } => {
                write!(
                    f,
                    "request field {found} does not match {}",
                    expected.name()
                )
            }
            Self::NonZeroFlags(flags) => write!(f, "reserved flags {flags:#06X} are not zero"),
            Self::PayloadTooLarge { length, max } => {
                write!(f, "payload of {length} bytes exceeds the maximum of {max}")
            }
            Self::LengthMismatch { declared, actual } => {
                write!(
                    f,
                    "header declares {declared} bytes but the buffer has {actual}"
                )
            }
            Self::OutputTooSmall { needed, actual } => {
                write!(
                    f,
                    "output buffer of {actual} bytes cannot hold the {needed}-byte response"
                )
            }
            Self::BadField(field) => write!(f, "field {field} is out of range"),
            Self::BufferLengths => f.write_str("input/output lengths exceed the system buffer"),
        }?;
        write!(f, " ({})", self.status())
    }
}

impl core::error::Error for ProtocolError {}

/// The largest request payload `kind` accepts.
#[must_use]
pub const fn max_request_payload(kind: RequestKind) -> u32 {
    match kind {
        RequestKind::Transform => MAX_TRANSFORM_PAYLOAD,
        RequestKind::Version | RequestKind::Stats | RequestKind::Reset => 0,
    }
}

/// The size of the response to `kind` with a request payload of `payload_length` bytes (only
/// `TRANSFORM`'s depends on it).
#[must_use]
pub const fn response_size(kind: RequestKind, payload_length: usize) -> usize {
    RESPONSE_HEADER_SIZE
        + match kind {
            RequestKind::Version => VERSION_INFO_SIZE,
            RequestKind::Transform => payload_length,
            RequestKind::Stats | RequestKind::Reset => STATS_INFO_SIZE,
        }
}

/// A decoded, valid request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `VERSION`.
    Version,
    /// `TRANSFORM` of these bytes.
    Transform(&'a [u8]),
    /// `STATS`.
    Stats,
    /// `RESET`.
    Reset,
}

impl Request<'_> {
    /// The request's kind.
    #[must_use]
    pub const fn kind(&self) -> RequestKind {
        match self {
            Self::Version => RequestKind::Version,
            Self::Transform(_) => RequestKind::Transform,
            Self::Stats => RequestKind::Stats,
            Self::Reset => RequestKind::Reset,
        }
    }

    /// The control code to send it with.
    #[must_use]
    pub const fn control_code(&self) -> u32 {
        self.kind().control_code()
    }

    /// The payload (empty except for `TRANSFORM`).
    #[must_use]
    pub const fn payload(&self) -> &[u8] {
        match self {
            Self::Transform(bytes) => bytes,
            Self::Version | Self::Stats | Self::Reset => &[],
        }
    }

    /// Bytes [`Self::encode`] writes.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        REQUEST_HEADER_SIZE + self.payload().len()
    }

    /// The size of the output buffer the response needs.
    #[must_use]
    pub const fn response_size(&self) -> usize {
        response_size(self.kind(), self.payload().len())
    }

    /// Writes the request (header and payload) to the start of `out`; returns the bytes
    /// written ([`Self::encoded_len`]).
    ///
    /// # Errors
    /// [`ProtocolError::PayloadTooLarge`] for a `TRANSFORM` payload above
    /// [`MAX_TRANSFORM_PAYLOAD`]; [`ProtocolError::OutputTooSmall`] when `out` is shorter
    /// than [`Self::encoded_len`].
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
        let payload = self.payload();
        let max = max_request_payload(self.kind());
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|&length| length <= max)
            .ok_or(ProtocolError::PayloadTooLarge {
                length: payload.len() as u64,
                max,
            })?;
        let needed = self.encoded_len();
        let too_small = ProtocolError::OutputTooSmall {
            needed,
            actual: out.len(),
        };
        let header = RequestHeader {
            magic: REQUEST_MAGIC,
            protocol_version: PROTOCOL_VERSION,
            header_size: HEADER_SIZE_FIELD,
            request: self.kind().raw(),
            flags: 0,
            payload_length: length,
        };
        let out = out.get_mut(..needed).ok_or(too_small)?;
        header.write(out).ok_or(too_small)?;
        out.get_mut(REQUEST_HEADER_SIZE..)
            .ok_or(too_small)?
            .copy_from_slice(payload);
        Ok(needed)
    }
}

/// `read` and `write` of a 16-byte header. The request and response headers share one
/// layout (asserted above); only the name of the fifth field differs (`flags` of a request,
/// `driver_version` of a response).
macro_rules! header_codec {
    ($header:ty, $size:expr, $fifth:ident) => {
        impl $header {
            /// Reads the header fields from the first 16 bytes (`None` if `bytes` is shorter).
            #[must_use]
            pub fn read(bytes: &[u8]) -> Option<Self> {
                Some(Self {
                    magic: read_u32(bytes, offset_of!(Self, magic))?,
                    protocol_version: read_u16(bytes, offset_of!(Self, protocol_version))?,
                    header_size: read_u16(bytes, offset_of!(Self, header_size))?,
                    request: read_u16(bytes, offset_of!(Self, request))?,
                    $fifth: read_u16(bytes, offset_of!(Self, $fifth))?,
                    payload_length: read_u32(bytes, offset_of!(Self, payload_length))?,
                })
            }

            /// Writes the header fields to the first 16 bytes (`None`, writing nothing, if
            /// `out` is shorter).
            pub fn write(&self, out: &mut [u8]) -> Option<()> {
                let out = out.get_mut(..$size)?;
                write_u32(out, offset_of!(Self, magic), self.magic)?;
                write_u16(
                    out,
                    offset_of!(Self, protocol_version),
                    self.protocol_version,
                )?;
                write_u16(out, offset_of!(Self, header_size), self.header_size)?;
                write_u16(out, offset_of!(Self, request), self.request)?;
                write_u16(out, offset_of!(Self, $fifth), self.$fifth)?;
                write_u32(out, offset_of!(Self, payload_length), self.payload_length)
            }
        }
    };
}

header_codec!(RequestHeader, REQUEST_HEADER_SIZE, flags);
header_codec!(ResponseHeader, RESPONSE_HEADER_SIZE, driver_version);

impl ResponseHeader {
    /// The header of `version`'s response to `kind` carrying `payload_length` bytes.
    #[must_use]
    pub const fn new(kind: RequestKind, version: DriverVersion, payload_length: u32) -> Self {
        Self {
            magic: RESPONSE_MAGIC,
            protocol_version: PROTOCOL_VERSION,
            header_size: HEADER_SIZE_FIELD,
            request: kind.raw(),
            driver_version: version.raw(),
            payload_length,
        }
    }
}

impl VersionInfo {
    /// What `version`'s driver answers to `VERSION`.
    #[must_use]
    pub const fn of(version: DriverVersion) -> Self {
        Self {
            driver_version: version.raw() as u32,
            protocol_version: PROTOCOL_VERSION as u32,
            core_version: CORE_VERSION,
            max_transform_payload: MAX_TRANSFORM_PAYLOAD,
            build_tag: version.build_tag(),
        }
    }

    /// Reads the fields from the first 32 bytes (`None` if `bytes` is shorter).
    #[must_use]
    pub fn read(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            driver_version: read_u32(bytes, offset_of!(Self, driver_version))?,
            protocol_version: read_u32(bytes, offset_of!(Self, protocol_version))?,
            core_version: read_u32(bytes, offset_of!(Self, core_version))?,
            max_transform_payload: read_u32(bytes, offset_of!(Self, max_transform_payload))?,
            build_tag: read_array(bytes, offset_of!(Self, build_tag))?,
        })
    }

    /// Writes the fields to the first 32 bytes (`None`, writing nothing, if `out` is
    /// shorter).
    pub fn write(&self, out: &mut [u8]) -> Option<()> {
        let out = out.get_mut(..VERSION_INFO_SIZE)?;
        write_u32(out, offset_of!(Self, driver_version), self.driver_version)?;
        write_u32(
            out,
            offset_of!(Self, protocol_version),
            self.protocol_version,
        )?;
        write_u32(out, offset_of!(Self, core_version), self.core_version)?;
        write_u32(
            out,
            offset_of!(Self, max_transform_payload),
            self.max_transform_payload,
        )?;
        write_array(out, offset_of!(Self, build_tag), self.build_tag)
    }

    /// The build tag without its NUL padding (`None` if it is not ASCII).
    #[must_use]
    pub fn build_tag_str(&self) -> Option<&str> {
        let end = self
            .build_tag
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.build_tag.len());
        let tag = self.build_tag.get(..end)?;
        if tag.is_ascii() {
            core::str::from_utf8(tag).ok()
        } else {
            None
        }
    }

    /// The answering build.
    #[must_use]
    pub fn driver_version(&self) -> Option<DriverVersion> {
        u16::try_from(self.driver_version)
            .ok()
            .and_then(DriverVersion::from_raw)
    }

    fn validate(&self, header_version: DriverVersion) -> Result<(), ProtocolError> {
        if self.driver_version() != Some(header_version) {
            return Err(ProtocolError::BadField("VersionInfo.driver_version"));
        }
        if self.protocol_version != u32::from(PROTOCOL_VERSION) {
            return Err(ProtocolError::BadField("VersionInfo.protocol_version"));
        }
        if self.build_tag_str().is_none() {
            return Err(ProtocolError::BadField("VersionInfo.build_tag"));
        }
        Ok(())
    }
}

impl StatsInfo {
    /// Reads the fields from the first 64 bytes (`None` if `bytes` is shorter).
    #[must_use]
    pub fn read(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            served: read_u64(bytes, offset_of!(Self, served))?,
            served_v1: read_u64(bytes, offset_of!(Self, served_v1))?,
            served_v2: read_u64(bytes, offset_of!(Self, served_v2))?,
            rejected: read_u64(bytes, offset_of!(Self, rejected))?,
            worker_ticks: read_u64(bytes, offset_of!(Self, worker_ticks))?,
            worker_ticks_v1: read_u64(bytes, offset_of!(Self, worker_ticks_v1))?,
            worker_ticks_v2: read_u64(bytes, offset_of!(Self, worker_ticks_v2))?,
            swaps: read_u32(bytes, offset_of!(Self, swaps))?,
            last_worker_version: read_u32(bytes, offset_of!(Self, last_worker_version))?,
        })
    }

    /// Writes the fields to the first 64 bytes (`None`, writing nothing, if `out` is
    /// shorter).
    pub fn write(&self, out: &mut [u8]) -> Option<()> {
        let out = out.get_mut(..STATS_INFO_SIZE)?;
        write_u64(out, offset_of!(Self, served), self.served)?;
        write_u64(out, offset_of!(Self, served_v1), self.served_v1)?;
        write_u64(out, offset_of!(Self, served_v2), self.served_v2)?;
        write_u64(out, offset_of!(Self, rejected), self.rejected)?;
        write_u64(out, offset_of!(Self, worker_ticks), self.worker_ticks)?;
        write_u64(out, offset_of!(Self, worker_ticks_v1), self.worker_ticks_v1)?;
        write_u64(out, offset_of!(Self, worker_ticks_v2), self.worker_ticks_v2)?;
        write_u32(out, offset_of!(Self, swaps), self.swaps)?;
        write_u32(
            out,
            offset_of!(Self, last_worker_version),
            self.last_worker_version,
        )
    }

    /// Requests served by `version`.
    #[must_use]
    pub const fn served_by(&self, version: DriverVersion) -> u64 {
        match version {
            DriverVersion::V1 => self.served_v1,
            DriverVersion::V2 => self.served_v2,
        }
    }

    /// Worker ticks run by `version`.
    #[must_use]
    pub const fn worker_ticks_by(&self, version: DriverVersion) -> u64 {
        match version {
            DriverVersion::V1 => self.worker_ticks_v1,
            DriverVersion::V2 => self.worker_ticks_v2,
        }
    }

    /// The build whose worker ticked last, if any has.
    #[must_use]
    pub fn last_worker_version(&self) -> Option<DriverVersion> {
        u16::try_from(self.last_worker_version)
            .ok()
            .and_then(DriverVersion::from_raw)
    }

    /// Checks the totals against their parts and the version field.
    ///
    /// # Errors
    /// [`ProtocolError::BadField`] naming the first inconsistent field.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.served_v1.wrapping_add(self.served_v2) != self.served {
            return Err(ProtocolError::BadField("StatsInfo.served"));
        }
        if self.worker_ticks_v1.wrapping_add(self.worker_ticks_v2) != self.worker_ticks {
            return Err(ProtocolError::BadField("StatsInfo.worker_ticks"));
        }
        if self.last_worker_version != 0 && self.last_worker_version().is_none() {
            return Err(ProtocolError::BadField("StatsInfo.last_worker_version"));
        }
        Ok(())
    }
}

/// A request that passed validation, without borrowing its buffer: the kind and the payload
/// length (the payload is at [`REQUEST_HEADER_SIZE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Validated {
    pub(crate) kind: RequestKind,
    pub(crate) payload_length: usize,
}

/// Checks `input` as a request sent with `code`, in the order of the module table (rows 1–9).
pub(crate) fn validate_request(code: u32, input: &[u8]) -> Result<Validated, ProtocolError> {
    let kind =
        RequestKind::from_control_code(code).ok_or(ProtocolError::UnknownControlCode(code))?;
    let header = RequestHeader::read(input).ok_or(ProtocolError::InputTooSmall {
        needed: REQUEST_HEADER_SIZE,
        actual: input.len(),
    })?;
    if header.magic != REQUEST_MAGIC {
        return Err(ProtocolError::BadMagic(header.magic));
    }
    if header.protocol_version != PROTOCOL_VERSION {
        return Err(ProtocolError::VersionMismatch(header.protocol_version));
    }
    if usize::from(header.header_size) != REQUEST_HEADER_SIZE {
        return Err(ProtocolError::BadHeaderSize(header.header_size));
    }
    if header.request != kind.raw() {
        return Err(ProtocolError::RequestMismatch {
            expected: kind,
            found: header.request,
        });
    }
    if header.flags != 0 {
        return Err(ProtocolError::NonZeroFlags(header.flags));
    }
    let max = max_request_payload(kind);
    if header.payload_length > max {
        return Err(ProtocolError::PayloadTooLarge {
            length: header.payload_length.into(),
            max,
        });
    }
    // payload_length <= 4096 here, so neither conversion nor sum can overflow.
    let payload_length = header.payload_length as usize;
    if input.len() != REQUEST_HEADER_SIZE + payload_length {
        return Err(ProtocolError::LengthMismatch {
            declared: (REQUEST_HEADER_SIZE + payload_length) as u64,
            actual: input.len(),
        });
    }
    Ok(Validated {
        kind,
        payload_length,
    })
}

/// Decodes and validates `input` as a request sent with control code `code`.
///
/// A request that decodes re-encodes to exactly `input` ([`Request::encode`]).
///
/// # Errors
/// The first failed check of rows 1–9 of the module table.
pub fn decode_request(code: u32, input: &[u8]) -> Result<Request<'_>, ProtocolError> {
    let Validated {
        kind,
        payload_length,
    } = validate_request(code, input)?;
    Ok(match kind {
        RequestKind::Version => Request::Version,
        RequestKind::Transform => Request::Transform(
            input
                .get(REQUEST_HEADER_SIZE..REQUEST_HEADER_SIZE + payload_length)
                .ok_or(ProtocolError::BufferLengths)?,
        ),
        RequestKind::Stats => Request::Stats,
        RequestKind::Reset => Request::Reset,
    })
}

/// The payload of a decoded response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody<'a> {
    /// `VERSION`'s answer.
    Version(VersionInfo),
    /// `TRANSFORM`'s answer: the transformed bytes.
    Transform(&'a [u8]),
    /// `STATS`'s answer.
    Stats(StatsInfo),
    /// `RESET`'s answer: the counters just before they were zeroed.
    Reset(StatsInfo),
}

/// A decoded, valid response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// The build that answered.
    pub driver_version: DriverVersion,
    /// What it answered.
    pub body: ResponseBody<'a>,
}

impl Response<'_> {
    /// The request this answers.
    #[must_use]
    pub const fn kind(&self) -> RequestKind {
        match self.body {
            ResponseBody::Version(_) => RequestKind::Version,
            ResponseBody::Transform(_) => RequestKind::Transform,
            ResponseBody::Stats(_) => RequestKind::Stats,
            ResponseBody::Reset(_) => RequestKind::Reset,
        }
    }

    /// Bytes [`Self::encode`] writes.
    #[must_use]
    pub const fn encoded_len(&self) -> usize {
        let payload = match self.body {
            ResponseBody::Transform(bytes) => bytes.len(),
            ResponseBody::Version(_) | ResponseBody::Stats(_) | ResponseBody::Reset(_) => 0,
        };
        response_size(self.kind(), payload)
    }

    /// Writes the response to the start of `out`; returns the bytes written.
    ///
    /// The driver builds its responses in place ([`crate::dispatch`]); this is the same
    /// encoding for tests and fakes.
    ///
    /// # Errors
    /// [`ProtocolError::PayloadTooLarge`] for a `TRANSFORM` answer above
    /// [`MAX_TRANSFORM_PAYLOAD`]; [`ProtocolError::OutputTooSmall`] when `out` is shorter
    /// than [`Self::encoded_len`].
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtocolError> {
        let needed = self.encoded_len();
        let payload_length = needed - RESPONSE_HEADER_SIZE;
        let length = u32::try_from(payload_length)
            .ok()
            .filter(|&length| {
                self.kind() != RequestKind::Transform || length <= MAX_TRANSFORM_PAYLOAD
            })
            .ok_or(ProtocolError::PayloadTooLarge {
                length: payload_length as u64,
                max: MAX_TRANSFORM_PAYLOAD,
            })?;
        let too_small = ProtocolError::OutputTooSmall {
            needed,
            actual: out.len(),
        };
        let out = out.get_mut(..needed).ok_or(too_small)?;
        let (header, payload) = out
            .split_at_mut_checked(RESPONSE_HEADER_SIZE)
            .ok_or(too_small)?;
        ResponseHeader::new(self.kind(), self.driver_version, length)
            .write(header)
            .ok_or(too_small)?;
        match self.body {
            ResponseBody::Version(info) => info.write(payload),
            ResponseBody::Transform(bytes) => {
                payload.copy_from_slice(bytes);
                Some(())
            }
            ResponseBody::Stats(stats) | ResponseBody::Reset(stats) => stats.write(payload),
        }
        .ok_or(too_small)?;
        Ok(needed)
    }
}

/// Decodes and validates `bytes` (the output buffer, cut to the bytes the driver wrote) as
/// the response to a `kind` request.
///
/// # Errors
/// [`ProtocolError::InputTooSmall`] for a response shorter than its header;
/// `BadMagic`, `VersionMismatch`, `BadHeaderSize` for a bad header; `RequestMismatch` when
/// it answers another request; `BadField` for an unknown `driver_version` or an
/// inconsistent payload; `PayloadTooLarge` / `LengthMismatch` for a payload length that is
/// out of range or disagrees with `bytes`.
pub fn decode_response(kind: RequestKind, bytes: &[u8]) -> Result<Response<'_>, ProtocolError> {
    let header = ResponseHeader::read(bytes).ok_or(ProtocolError::InputTooSmall {
        needed: RESPONSE_HEADER_SIZE,
        actual: bytes.len(),
    })?;
    if header.magic != RESPONSE_MAGIC {
        return Err(ProtocolError::BadMagic(header.magic));
    }
    if header.protocol_version != PROTOCOL_VERSION {
        return Err(ProtocolError::VersionMismatch(header.protocol_version));
    }
    if usize::from(header.header_size) != RESPONSE_HEADER_SIZE {
        return Err(ProtocolError::BadHeaderSize(header.header_size));
    }
    if header.request != kind.raw() {
        return Err(ProtocolError::RequestMismatch {
            expected: kind,
            found: header.request,
        });
    }
    let driver_version = DriverVersion::from_raw(header.driver_version)
        .ok_or(ProtocolError::BadField("ResponseHeader.driver_version"))?;
    if kind == RequestKind::Transform && header.payload_length > MAX_TRANSFORM_PAYLOAD {
        return Err(ProtocolError::PayloadTooLarge {
            length: header.payload_length.into(),
            max: MAX_TRANSFORM_PAYLOAD,
        });
    }
    let declared = RESPONSE_HEADER_SIZE as u64 + u64::from(header.payload_length);
    let expected_fixed = match kind {
        RequestKind::Transform => None,
        RequestKind::Version | RequestKind::Stats | RequestKind::Reset => {
            Some(response_size(kind, 0))
        }
    };
    let length_ok = declared == bytes.len() as u64
        && expected_fixed.is_none_or(|fixed| fixed as u64 == declared);
    if !length_ok {
        return Err(ProtocolError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    let payload = bytes.get(RESPONSE_HEADER_SIZE..).unwrap_or_default();
    let needed = usize::try_from(declared).unwrap_or(usize::MAX);
    let short = ProtocolError::InputTooSmall {
        needed,
        actual: bytes.len(),
    };
    let body = match kind {
        RequestKind::Version => {
            let info = VersionInfo::read(payload).ok_or(short)?;
            info.validate(driver_version)?;
            ResponseBody::Version(info)
        }
        RequestKind::Transform => ResponseBody::Transform(payload),
        RequestKind::Stats | RequestKind::Reset => {
            let stats = StatsInfo::read(payload).ok_or(short)?;
            stats.validate()?;
            if kind == RequestKind::Stats {
                ResponseBody::Stats(stats)
            } else {
                ResponseBody::Reset(stats)
            }
        }
    };
    Ok(Response {
        driver_version,
        body,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;
    use crate::ioctl::IOCTL_HOTSWAP_TRANSFORM;

    fn encoded(request: &Request<'_>) -> Vec<u8> {
        let mut out = vec![0u8; request.encoded_len()];
        assert_eq!(request.encode(&mut out), Ok(out.len()));
        out
    }

    /// A request header written byte by byte, independently of `RequestHeader::write`.
    fn raw_header(
        magic: [u8; 4],
        version: u16,
        size: u16,
        request: u16,
        flags: u16,
        len: u32,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&magic);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&request.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out
    }

    #[test]
    fn encoding_matches_the_documented_byte_layout() {
        let bytes = encoded(&Request::Transform(b"abc"));
        let mut expected = raw_header(*b"HSRQ", 1, 16, 2, 0, 3);
        expected.extend_from_slice(b"abc");
        assert_eq!(bytes, expected);
        assert_eq!(
            encoded(&Request::Stats),
            raw_header(*b"HSRQ", 1, 16, 3, 0, 0)
        );
    }

    #[test]
    fn every_request_round_trips() {
        let payload: Vec<u8> = (0..=255).collect();
        let max = vec![0x61; MAX_TRANSFORM_PAYLOAD as usize];
        let requests = [
            Request::Version,
            Request::Stats,
            Request::Reset,
            Request::Transform(b""),
            Request::Transform(&payload),
            Request::Transform(&max),
        ];
        for request in requests {
            let bytes = encoded(&request);
            assert_eq!(decode_request(request.control_code(), &bytes), Ok(request));
        }
    }

    #[test]
    fn encode_refuses_oversized_payloads_and_short_buffers() {
        let big = vec![0u8; MAX_TRANSFORM_PAYLOAD as usize + 1];
        let mut out = vec![0u8; 8192];
        assert_eq!(
            Request::Transform(&big).encode(&mut out),
            Err(ProtocolError::PayloadTooLarge {
                length: 4097,
                max: MAX_TRANSFORM_PAYLOAD
            })
        );
        let mut short = [0xEEu8; 18];
        assert_eq!(
            Request::Transform(b"abc").encode(&mut short),
            Err(ProtocolError::OutputTooSmall {
                needed: 19,
                actual: 18
            })
        );
        assert_eq!(short, [0xEE; 18], "a refused encode writes nothing");
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        // Bad magic *and* bad version: the magic (row 3) wins over the version (row 4).
        let both = raw_header(*b"NOPE", 9, 16, 2, 0, 0);
        assert!(matches!(
            decode_request(IOCTL_HOTSWAP_TRANSFORM, &both),
            Err(ProtocolError::BadMagic(_))
        ));
        // Bad version and bad header size: the version (row 4) wins.
        let both = raw_header(*b"HSRQ", 9, 99, 2, 0, 0);
        assert_eq!(
            decode_request(IOCTL_HOTSWAP_TRANSFORM, &both),
            Err(ProtocolError::VersionMismatch(9))
        );
        // Unknown code with a short buffer: the code (row 1) wins.
        assert_eq!(
            decode_request(7, &[]),
            Err(ProtocolError::UnknownControlCode(7))
        );
        // Oversized payload and a length mismatch: the size limit (row 8) wins.
        let both = raw_header(*b"HSRQ", 1, 16, 2, 0, 5000);
        assert!(matches!(
            decode_request(IOCTL_HOTSWAP_TRANSFORM, &both),
            Err(ProtocolError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn every_response_round_trips() {
        let stats = StatsInfo {
            served: 7,
            served_v1: 5,
            served_v2: 2,
            rejected: 3,
            worker_ticks: 11,
            worker_ticks_v1: 10,
            worker_ticks_v2: 1,
            swaps: 1,
            last_worker_version: 2,
        };
        for version in DriverVersion::ALL {
            let bodies = [
                ResponseBody::Version(VersionInfo::of(version)),
                ResponseBody::Transform(b"HELLO"),
                ResponseBody::Transform(b""),
                ResponseBody::Stats(stats),
                ResponseBody::Reset(stats),
            ];
            for body in bodies {
                let response = Response {
                    driver_version: version,
                    body,
                };
                let mut out = vec![0u8; response.encoded_len()];
                assert_eq!(response.encode(&mut out), Ok(out.len()));
                assert_eq!(decode_response(response.kind(), &out), Ok(response));
            }
        }
    }

    #[test]
    fn malformed_response_headers_are_rejected() {
        let response = Response {
            driver_version: DriverVersion::V1,
            body: ResponseBody::Version(VersionInfo::of(DriverVersion::V1)),
        };
        let mut good = vec![0u8; response.encoded_len()];
        response.encode(&mut good).unwrap();
        let patched = |at: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[at] = value;
            bytes
        };
        let kind = RequestKind::Version;
        assert_eq!(
            decode_response(kind, &good[..10]),
            Err(ProtocolError::InputTooSmall {
                needed: 16,
                actual: 10
            })
        );
        assert!(matches!(
            decode_response(kind, &patched(3, 0)),
            Err(ProtocolError::BadMagic(_))
        ));
        assert_eq!(
            decode_response(kind, &patched(4, 7)),
            Err(ProtocolError::VersionMismatch(7))
        );
        assert_eq!(
            decode_response(kind, &patched(6, 8)),
            Err(ProtocolError::BadHeaderSize(8))
        );
        assert_eq!(
            decode_response(RequestKind::Stats, &good),
            Err(ProtocolError::RequestMismatch {
                expected: RequestKind::Stats,
                found: 1
            })
        );
        assert_eq!(
            decode_response(kind, &patched(10, 3)),
            Err(ProtocolError::BadField("ResponseHeader.driver_version"))
        );
        // The header says v2 but the payload says v1.
        assert_eq!(
            decode_response(kind, &patched(10, 2)),
            Err(ProtocolError::BadField("VersionInfo.driver_version"))
        );
        assert_eq!(
            decode_response(kind, &good[..40]),
            Err(ProtocolError::LengthMismatch {
                declared: 48,
                actual: 40
            })
        );
        assert_eq!(
            decode_response(kind, &patched(12, 31)),
            Err(ProtocolError::LengthMismatch {
                declared: 47,
                actual: 48
            })
        );
        assert_eq!(
            decode_response(kind, &patched(16 + 16, 0xFF)),
            Err(ProtocolError::BadField("VersionInfo.build_tag"))
        );
    }

    #[test]
    fn inconsistent_response_payloads_are_rejected() {
        let mut stats = StatsInfo {
            served: 3,
            served_v1: 1,
            served_v2: 1,
            ..StatsInfo::default()
        };
        let mut out = vec![0u8; 80];
        Response {
            driver_version: DriverVersion::V2,
            body: ResponseBody::Stats(stats),
        }
        .encode(&mut out)
        .unwrap();
        assert_eq!(
            decode_response(RequestKind::Stats, &out),
            Err(ProtocolError::BadField("StatsInfo.served"))
        );
        stats = StatsInfo {
            worker_ticks: 1,
            ..StatsInfo::default()
        };
        Response {
            driver_version: DriverVersion::V2,
            body: ResponseBody::Stats(stats),
        }
        .encode(&mut out)
        .unwrap();
        assert_eq!(
            decode_response(RequestKind::Stats, &out),
            Err(ProtocolError::BadField("StatsInfo.worker_ticks"))
        );
        stats = StatsInfo {
            last_worker_version: 3,
            ..StatsInfo::default()
        };
        Response {
            driver_version: DriverVersion::V2,
            body: ResponseBody::Stats(stats),
        }
        .encode(&mut out)
        .unwrap();
        assert_eq!(
            decode_response(RequestKind::Stats, &out),
            Err(ProtocolError::BadField("StatsInfo.last_worker_version"))
        );

        let mut transform = raw_header(*b"HSRS", 1, 16, 2, 1, 4097);
        transform.resize(16 + 4097, 0);
        assert!(matches!(
            decode_response(RequestKind::Transform, &transform),
            Err(ProtocolError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn version_info_reports_the_build() {
        for version in DriverVersion::ALL {
            let info = VersionInfo::of(version);
            assert_eq!(info.driver_version(), Some(version));
            assert_eq!(
                info.build_tag_str(),
                Some(if version == DriverVersion::V1 {
                    "hotswap v1"
                } else {
                    "hotswap v2"
                })
            );
            assert_eq!(info.max_transform_payload, MAX_TRANSFORM_PAYLOAD);
        }
        let [major, minor, patch] = [
            env!("CARGO_PKG_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MINOR"),
            env!("CARGO_PKG_VERSION_PATCH"),
        ]
        .map(|part| part.parse::<u32>().unwrap());
        assert_eq!(CORE_VERSION, (major << 16) | (minor << 8) | patch);
    }

    #[test]
    fn errors_display_their_status() {
        let shown = std::format!("{}", ProtocolError::VersionMismatch(3));
        assert!(shown.contains("protocol version 3"), "{shown}");
        assert!(shown.contains("STATUS_REVISION_MISMATCH"), "{shown}");
    }
}
