//! Names shared by the drivers, the INF files and the client.
//!
//! Both front ends create the same device and symbolic link, so `hotswapctl` talks to
//! whichever build is installed; install one of them at a time (`inf/README.md`).
//! The kernel-side names are also given as UTF-16 arrays ([`DEVICE_NAME_UTF16`], …) for
//! building `UNICODE_STRING`s without allocation; their lengths are in code units, without
//! a terminating NUL.

/// The device object's name (`IoCreateDevice` / `WdfDeviceInitAssignName`).
pub const DEVICE_NAME: &str = r"\Device\HotSwapSample";

/// The symbolic link the drivers create (`IoCreateSymbolicLink` /
/// `WdfDeviceCreateSymbolicLink`), in the global `\DosDevices` directory.
pub const DOS_DEVICE_NAME: &str = r"\DosDevices\HotSwapSample";

/// The path a user-mode client opens (`CreateFileW`): the Win32 form of
/// [`DOS_DEVICE_NAME`].
pub const WIN32_DEVICE_PATH: &str = r"\\.\HotSwapSample";

/// The hardware id of the root-enumerated device node of the KMDF build
/// (`inf/hotswap_sample.inx`; `devcon install … Root\HotSwapSample`).
pub const HARDWARE_ID: &str = r"Root\HotSwapSample";

/// Service name of the KMDF build.
pub const KMDF_SERVICE_NAME: &str = "HotSwapSample";

/// Image name of the KMDF build.
pub const KMDF_IMAGE_NAME: &str = "hotswap_sample.sys";

/// Service name of the WDM build (a legacy, non-PnP kernel service).
pub const WDM_SERVICE_NAME: &str = "HotSwapSampleWdm";

/// Image name of the WDM build.
pub const WDM_IMAGE_NAME: &str = "hotswap_sample_wdm.sys";

/// Pool tag of the sample's allocations, `'HSwp'` as the kernel displays it (the
/// little-endian integer of the bytes `H S w p`).
pub const POOL_TAG: u32 = u32::from_le_bytes(*b"HSwp");

/// [`DEVICE_NAME`] as UTF-16 code units.
pub const DEVICE_NAME_UTF16: [u16; DEVICE_NAME.len()] = ascii_to_utf16(DEVICE_NAME);

/// [`DOS_DEVICE_NAME`] as UTF-16 code units.
pub const DOS_DEVICE_NAME_UTF16: [u16; DOS_DEVICE_NAME.len()] = ascii_to_utf16(DOS_DEVICE_NAME);

/// Widens an ASCII string into UTF-16 code units at compile time; `N` must equal the
/// string's length.
///
/// # Panics
/// At compile time (the function is meant for constants) if `N` differs from the length or
/// the string is not ASCII.
#[must_use]
#[allow(
    clippy::indexing_slicing,
    clippy::panic,
    reason = "evaluated in constants only"
)]
pub const fn ascii_to_utf16<const N: usize>(text: &str) -> [u16; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() == N, "length mismatch");
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(bytes[i].is_ascii(), "ASCII only");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{string::String, vec::Vec};

    use super::*;

    #[test]
    fn utf16_names_decode_to_the_str_names() {
        assert_eq!(String::from_utf16(&DEVICE_NAME_UTF16).unwrap(), DEVICE_NAME);
        assert_eq!(
            String::from_utf16(&DOS_DEVICE_NAME_UTF16).unwrap(),
            DOS_DEVICE_NAME
        );
        let std_units: Vec<u16> = DEVICE_NAME.encode_utf16().collect();
        assert_eq!(DEVICE_NAME_UTF16.as_slice(), std_units.as_slice());
    }

    #[test]
    fn link_device_path_and_device_name_agree() {
        let leaf = DEVICE_NAME.rsplit('\\').next().unwrap();
        assert_eq!(DOS_DEVICE_NAME.rsplit('\\').next(), Some(leaf));
        assert_eq!(WIN32_DEVICE_PATH.rsplit('\\').next(), Some(leaf));
        assert!(WIN32_DEVICE_PATH.starts_with(r"\\.\"));
        assert!(DOS_DEVICE_NAME.starts_with(r"\DosDevices\"));
    }

    #[test]
    fn pool_tag_reads_hswp_in_memory_order() {
        assert_eq!(POOL_TAG.to_le_bytes(), *b"HSwp");
    }
}
