//! The malformed requests of the protocol's status table ([`crate::protocol`], "Errors and
//! their NTSTATUS"): [`MALFORMED_REQUESTS`], one or more requests per row, each built so
//! that only its own row's check fails, with the [`ProtocolError`] the driver finds and
//! therefore the NTSTATUS it completes the request with ([`MalformedRequest::status`]).
//!
//! One table for everything that checks the rows: the core's own tests (decoding and the
//! dispatch), and `hotswapctl malformed`, which sends every entry to a running driver and
//! checks the status it answers (`cargo xtask wine` runs it against the real image under
//! Wine).
//!
//! Rows 1–9 are checks of the input; their entries give an output buffer large enough for
//! any response ([`MAX_RESPONSE_SIZE`]), so that only the input is wrong. Row 10 is the
//! output buffer: its entries are valid requests with an output one byte (or more) too
//! short. The last row of the table (`BufferLengths`, the front end passing lengths larger
//! than the system buffer) cannot be produced by a client, so it has no entry.
//!
//! The inputs are written byte by byte here (not with [`crate::Request::encode`]), so the
//! table also checks the encoder's layout.

use crate::ioctl::{
    IOCTL_HOTSWAP_RESET, IOCTL_HOTSWAP_STATS, IOCTL_HOTSWAP_TRANSFORM, IOCTL_HOTSWAP_VERSION,
    RequestKind,
};
use crate::protocol::{MAX_RESPONSE_SIZE, ProtocolError};
use driver_proxy::NtStatus;

/// The longest input of the table, in bytes.
pub const MAX_MALFORMED_INPUT: usize = 18;

/// One malformed request: what to send, and how the driver must refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedRequest {
    /// The row of the protocol's status table this entry checks (1 to 10).
    pub row: u8,
    /// What is wrong with it, in a few words.
    pub what: &'static str,
    /// The control code to send it with.
    pub code: u32,
    input: [u8; MAX_MALFORMED_INPUT],
    input_length: usize,
    /// The length of the output buffer to give the driver.
    pub output_length: usize,
    /// What the driver finds wrong.
    pub error: ProtocolError,
}

impl MalformedRequest {
    /// The input buffer to send.
    #[must_use]
    pub fn input(&self) -> &[u8] {
        self.input.get(..self.input_length).unwrap_or_default()
    }

    /// The NTSTATUS the driver must complete the request with (the table's).
    #[must_use]
    pub const fn status(&self) -> NtStatus {
        self.error.status()
    }
}

/// `bytes` with `bytes[at..at + value.len()]` replaced by `value`.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated in constants only: an index out of range is a compile error"
)]
const fn patched<const N: usize>(
    mut bytes: [u8; MAX_MALFORMED_INPUT],
    at: usize,
    value: [u8; N],
) -> [u8; MAX_MALFORMED_INPUT] {
    let mut i = 0;
    while i < N {
        bytes[at + i] = value[i];
        i += 1;
    }
    bytes
}

/// A request header, field by field (little-endian), padded with zeros to the table's
/// width.
const fn header(
    magic: [u8; 4],
    version: u16,
    size: u16,
    request: u16,
    flags: u16,
    length: u32,
) -> [u8; MAX_MALFORMED_INPUT] {
    let bytes = patched([0; MAX_MALFORMED_INPUT], 0, magic);
    let bytes = patched(bytes, 4, version.to_le_bytes());
    let bytes = patched(bytes, 6, size.to_le_bytes());
    let bytes = patched(bytes, 8, request.to_le_bytes());
    let bytes = patched(bytes, 10, flags.to_le_bytes());
    patched(bytes, 12, length.to_le_bytes())
}

/// A valid `TRANSFORM` of `"hi"` (18 bytes): the base most entries break in one place.
const GOOD_TRANSFORM: [u8; MAX_MALFORMED_INPUT] = patched(
    header(*b"HSRQ", 1, 16, RequestKind::Transform.raw(), 0, 2),
    16,
    *b"hi",
);
/// Its length.
const GOOD_LENGTH: usize = 18;

/// An entry of rows 1–9 (the output has room for any response).
const fn input_row(
    row: u8,
    what: &'static str,
    code: u32,
    input: [u8; MAX_MALFORMED_INPUT],
    input_length: usize,
    error: ProtocolError,
) -> MalformedRequest {
    MalformedRequest {
        row,
        what,
        code,
        input,
        input_length,
        output_length: MAX_RESPONSE_SIZE,
        error,
    }
}

/// An entry of row 10: a valid request with `output_length` bytes of output, `needed`
/// being its response's size.
const fn output_row(
    what: &'static str,
    code: u32,
    input: [u8; MAX_MALFORMED_INPUT],
    input_length: usize,
    output_length: usize,
    needed: usize,
) -> MalformedRequest {
    MalformedRequest {
        row: 10,
        what,
        code,
        input,
        input_length,
        output_length,
        error: ProtocolError::OutputTooSmall {
            needed,
            actual: output_length,
        },
    }
}

/// Every malformed request, in the order of the table's rows.
pub const MALFORMED_REQUESTS: [MalformedRequest; 18] = [
    input_row(
        1,
        "control code of another device type",
        0x0022_2000,
        GOOD_TRANSFORM,
        GOOD_LENGTH,
        ProtocolError::UnknownControlCode(0x0022_2000),
    ),
    input_row(
        1,
        "control code with another transfer method",
        IOCTL_HOTSWAP_TRANSFORM | 3,
        GOOD_TRANSFORM,
        GOOD_LENGTH,
        ProtocolError::UnknownControlCode(IOCTL_HOTSWAP_TRANSFORM | 3),
    ),
    input_row(
        2,
        "input one byte shorter than the header",
        IOCTL_HOTSWAP_TRANSFORM,
        GOOD_TRANSFORM,
        15,
        ProtocolError::InputTooSmall {
            needed: 16,
            actual: 15,
        },
    ),
    input_row(
        2,
        "no input",
        IOCTL_HOTSWAP_TRANSFORM,
        GOOD_TRANSFORM,
        0,
        ProtocolError::InputTooSmall {
            needed: 16,
            actual: 0,
        },
    ),
    input_row(
        3,
        "bad magic",
        IOCTL_HOTSWAP_TRANSFORM,
        patched(GOOD_TRANSFORM, 0, *b"X"),
        GOOD_LENGTH,
        ProtocolError::BadMagic(u32::from_le_bytes(*b"XSRQ")),
    ),
    input_row(
        4,
        "protocol version 2",
        IOCTL_HOTSWAP_TRANSFORM,
        patched(GOOD_TRANSFORM, 4, [2]),
        GOOD_LENGTH,
        ProtocolError::VersionMismatch(2),
    ),
    input_row(
        5,
        "header size 24",
        IOCTL_HOTSWAP_TRANSFORM,
        patched(GOOD_TRANSFORM, 6, [24]),
        GOOD_LENGTH,
        ProtocolError::BadHeaderSize(24),
    ),
    input_row(
        6,
        "VERSION request sent with the STATS code",
        IOCTL_HOTSWAP_STATS,
        header(*b"HSRQ", 1, 16, RequestKind::Version.raw(), 0, 0),
        16,
        ProtocolError::RequestMismatch {
            expected: RequestKind::Stats,
            found: 1,
        },
    ),
    input_row(
        7,
        "non-zero flags",
        IOCTL_HOTSWAP_TRANSFORM,
        patched(GOOD_TRANSFORM, 11, [0x80]),
        GOOD_LENGTH,
        ProtocolError::NonZeroFlags(0x8000),
    ),
    input_row(
        8,
        "TRANSFORM payload of 4097 bytes declared",
        IOCTL_HOTSWAP_TRANSFORM,
        patched(GOOD_TRANSFORM, 12, 4097u32.to_le_bytes()),
        GOOD_LENGTH,
        ProtocolError::PayloadTooLarge {
            length: 4097,
            max: 4096,
        },
    ),
    input_row(
        8,
        "TRANSFORM payload of 4 GiB declared",
        IOCTL_HOTSWAP_TRANSFORM,
        patched(GOOD_TRANSFORM, 12, u32::MAX.to_le_bytes()),
        GOOD_LENGTH,
        ProtocolError::PayloadTooLarge {
            length: 0xFFFF_FFFF,
            max: 4096,
        },
    ),
    input_row(
        8,
        "VERSION with a payload declared",
        IOCTL_HOTSWAP_VERSION,
        header(*b"HSRQ", 1, 16, RequestKind::Version.raw(), 0, 1),
        16,
        ProtocolError::PayloadTooLarge { length: 1, max: 0 },
    ),
    input_row(
        9,
        "input shorter than the declared payload",
        IOCTL_HOTSWAP_TRANSFORM,
        patched(GOOD_TRANSFORM, 12, [3]),
        GOOD_LENGTH,
        ProtocolError::LengthMismatch {
            declared: 19,
            actual: 18,
        },
    ),
    input_row(
        9,
        "input longer than the declared payload",
        IOCTL_HOTSWAP_TRANSFORM,
        patched(GOOD_TRANSFORM, 12, [1]),
        GOOD_LENGTH,
        ProtocolError::LengthMismatch {
            declared: 17,
            actual: 18,
        },
    ),
    input_row(
        9,
        "RESET with a byte after the header",
        IOCTL_HOTSWAP_RESET,
        header(*b"HSRQ", 1, 16, RequestKind::Reset.raw(), 0, 0),
        17,
        ProtocolError::LengthMismatch {
            declared: 16,
            actual: 17,
        },
    ),
    output_row(
        "TRANSFORM answer one byte longer than the output",
        IOCTL_HOTSWAP_TRANSFORM,
        GOOD_TRANSFORM,
        GOOD_LENGTH,
        17,
        18,
    ),
    output_row(
        "VERSION answer one byte longer than the output",
        IOCTL_HOTSWAP_VERSION,
        header(*b"HSRQ", 1, 16, RequestKind::Version.raw(), 0, 0),
        16,
        47,
        48,
    ),
    output_row(
        "STATS with no output",
        IOCTL_HOTSWAP_STATS,
        header(*b"HSRQ", 1, 16, RequestKind::Stats.raw(), 0, 0),
        16,
        0,
        80,
    ),
];

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{collections::BTreeSet, vec};

    use super::*;
    use crate::{
        Completion, Request, State, dispatch_device_control,
        protocol::{DOCUMENTED_STATUSES, decode_request},
    };

    #[test]
    fn the_base_request_is_valid() {
        assert_eq!(
            decode_request(
                IOCTL_HOTSWAP_TRANSFORM,
                GOOD_TRANSFORM.get(..GOOD_LENGTH).unwrap()
            ),
            Ok(Request::Transform(b"hi"))
        );
        let mut encoded = [0u8; GOOD_LENGTH];
        assert_eq!(
            Request::Transform(b"hi").encode(&mut encoded),
            Ok(GOOD_LENGTH)
        );
        assert_eq!(encoded, GOOD_TRANSFORM);
    }

    #[test]
    fn every_row_has_an_entry_with_its_documented_status() {
        let rows: BTreeSet<u8> = MALFORMED_REQUESTS.iter().map(|m| m.row).collect();
        assert_eq!(rows, (1..=10).collect());
        for m in &MALFORMED_REQUESTS {
            assert!(DOCUMENTED_STATUSES.contains(&m.status()), "{m:?}");
        }
        assert!(
            MALFORMED_REQUESTS.windows(2).all(|w| w[0].row <= w[1].row),
            "in row order"
        );
    }

    #[test]
    fn the_input_rows_fail_decoding_with_their_error() {
        for (i, m) in MALFORMED_REQUESTS.iter().enumerate() {
            if m.row <= 9 {
                assert_eq!(decode_request(m.code, m.input()), Err(m.error), "entry {i}");
            } else {
                assert!(decode_request(m.code, m.input()).is_ok(), "entry {i}");
            }
        }
    }

    #[test]
    fn the_dispatch_refuses_each_with_its_status_and_counts_it() {
        let state = State::new();
        for (i, m) in MALFORMED_REQUESTS.iter().enumerate() {
            let mut output = vec![0xEE; m.output_length];
            let completion = dispatch_device_control(&state, m.code, m.input(), &mut output);
            assert_eq!(completion, Completion::failed(m.status()), "entry {i}");
            assert!(output.iter().all(|&b| b == 0xEE), "entry {i} wrote output");
        }
        let counters = state.stats();
        assert_eq!(counters.rejected, MALFORMED_REQUESTS.len() as u64);
        assert_eq!(counters.served, 0);
    }
}
