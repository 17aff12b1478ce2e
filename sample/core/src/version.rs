//! The two builds of the sample and what makes them differ.

use core::fmt;

/// Which build of the sample driver is running: the answer of the `VERSION` request and the
/// tag on every response.
///
/// | | v1 | v2 |
/// |---|---|---|
/// | wire value (`driver_version`) | 1 | 2 |
/// | `TRANSFORM`, per byte | [`transform_byte_v1`]: ASCII `a`–`z` → `A`–`Z` | [`transform_byte_v2`]: ROT13 of ASCII letters |
/// | build tag | `"hotswap v1"` | `"hotswap v2"` |
///
/// Both transforms leave every byte outside the ASCII letters unchanged, so UTF-8 input stays
/// UTF-8 and the output is always as long as the input.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DriverVersion {
    /// The first build (default features).
    V1 = 1,
    /// The second build (feature `v2`).
    V2 = 2,
}

/// The build this crate was compiled as: [`DriverVersion::V2`] with the cargo feature `v2`,
/// [`DriverVersion::V1`] otherwise.
pub const THIS_BUILD: DriverVersion = if cfg!(feature = "v2") {
    DriverVersion::V2
} else {
    DriverVersion::V1
};

impl DriverVersion {
    /// Both versions, in wire-value order.
    pub const ALL: [Self; 2] = [Self::V1, Self::V2];

    /// The wire value (1 or 2).
    #[must_use]
    pub const fn raw(self) -> u16 {
        self as u16
    }

    /// The version with wire value `raw`, if there is one.
    #[must_use]
    pub const fn from_raw(raw: u16) -> Option<Self> {
        match raw {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// Index of this version in per-version arrays (v1 → 0, v2 → 1).
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::V1 => 0,
            Self::V2 => 1,
        }
    }

    /// The other version: where a swap from this one goes.
    #[must_use]
    pub const fn other(self) -> Self {
        match self {
            Self::V1 => Self::V2,
            Self::V2 => Self::V1,
        }
    }

    /// The 16-byte, NUL-padded ASCII build tag reported by `VERSION`.
    #[must_use]
    pub const fn build_tag(self) -> [u8; 16] {
        match self {
            Self::V1 => *b"hotswap v1\0\0\0\0\0\0",
            Self::V2 => *b"hotswap v2\0\0\0\0\0\0",
        }
    }

    /// This version's `TRANSFORM` of one byte.
    #[must_use]
    pub const fn transform_byte(self, byte: u8) -> u8 {
        match self {
            Self::V1 => transform_byte_v1(byte),
            Self::V2 => transform_byte_v2(byte),
        }
    }

    /// Transforms `bytes` in place with this version's `TRANSFORM`.
    pub fn transform_in_place(self, bytes: &mut [u8]) {
        for byte in bytes {
            *byte = self.transform_byte(*byte);
        }
    }
}

impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.raw())
    }
}

/// v1's `TRANSFORM` of one byte: ASCII lower-case letters become upper-case; every other
/// byte is unchanged.
#[must_use]
pub const fn transform_byte_v1(byte: u8) -> u8 {
    byte.to_ascii_uppercase()
}

/// v2's `TRANSFORM` of one byte: ROT13. ASCII letters move 13 places along the alphabet,
/// wrapping and keeping their case (`a`→`n`, `N`→`A`); every other byte is unchanged. ROT13
/// is its own inverse.
#[must_use]
pub const fn transform_byte_v2(byte: u8) -> u8 {
    match byte {
        b'a'..=b'm' | b'A'..=b'M' => byte + 13,
        b'n'..=b'z' | b'N'..=b'Z' => byte - 13,
        _ => byte,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{string::String, vec::Vec};

    use super::*;

    /// An independent model of ROT13 over `char`s, to check the byte table against.
    fn rot13_model(text: &str) -> String {
        text.chars()
            .map(|c| {
                let base = if c.is_ascii_lowercase() {
                    'a'
                } else if c.is_ascii_uppercase() {
                    'A'
                } else {
                    return c;
                };
                let offset = (c as u32 - base as u32 + 13) % 26;
                char::from_u32(base as u32 + offset).unwrap()
            })
            .collect()
    }

    #[test]
    fn v1_upper_cases_ascii_letters_only() {
        let mut bytes = *b"hello, World! 123 \xC3\xA9";
        DriverVersion::V1.transform_in_place(&mut bytes);
        assert_eq!(&bytes, b"HELLO, WORLD! 123 \xC3\xA9");
    }

    #[test]
    fn v2_is_rot13_on_every_byte() {
        let all: Vec<u8> = (0..=u8::MAX).collect();
        for &byte in &all {
            let got = transform_byte_v2(byte);
            if byte.is_ascii() {
                let expected = rot13_model(&String::from(char::from(byte)));
                assert_eq!(String::from(char::from(got)), expected, "byte {byte:#04x}");
            } else {
                assert_eq!(got, byte, "non-ASCII byte {byte:#04x} must be unchanged");
            }
            assert_eq!(transform_byte_v2(got), byte, "ROT13 is an involution");
        }
    }

    #[test]
    fn versions_answer_differently_for_letters() {
        let mut v1 = *b"hello";
        let mut v2 = *b"hello";
        DriverVersion::V1.transform_in_place(&mut v1);
        DriverVersion::V2.transform_in_place(&mut v2);
        assert_eq!(&v1, b"HELLO");
        assert_eq!(&v2, b"uryyb");
    }

    #[test]
    fn raw_values_round_trip_and_reject_others() {
        for version in DriverVersion::ALL {
            assert_eq!(DriverVersion::from_raw(version.raw()), Some(version));
            assert_eq!(version.other().other(), version);
            assert_ne!(version.other(), version);
        }
        assert_eq!(DriverVersion::from_raw(0), None);
        assert_eq!(DriverVersion::from_raw(3), None);
        assert_eq!(DriverVersion::V1.index(), 0);
        assert_eq!(DriverVersion::V2.index(), 1);
    }

    #[test]
    fn this_build_follows_the_v2_feature() {
        let expected = if cfg!(feature = "v2") { 2 } else { 1 };
        assert_eq!(THIS_BUILD.raw(), expected);
        assert_eq!(std::format!("{THIS_BUILD}"), std::format!("v{expected}"));
    }
}
