//! Names shared by the drivers, the INF files and the client.
//!
//! Both front ends create the same symbolic link, so `hotswapctl` talks to whichever build
//! is installed; install one of them at a time (`inf/README.md`). The KMDF build, a `PnP`
//! function driver, also registers the device interface [`DEVICE_INTERFACE_GUID`], through
//! which the client finds it first. The kernel-side names are also given as UTF-16 arrays
//! ([`DEVICE_NAME_UTF16`], …) for building `UNICODE_STRING`s without allocation; their
//! lengths are in code units, without a terminating NUL.

use core::fmt;

/// The WDM build's device object name (`IoCreateDevice`). The KMDF build's device is
/// unnamed, as `PnP` function devices are: its symbolic link leads to the name of the device
/// node's physical device object.
pub const DEVICE_NAME: &str = r"\Device\HotSwapSample";

/// The symbolic link the drivers create (`IoCreateSymbolicLink` /
/// `WdfDeviceCreateSymbolicLink`), in the global `\DosDevices` directory.
pub const DOS_DEVICE_NAME: &str = r"\DosDevices\HotSwapSample";

/// The path a user-mode client opens (`CreateFileW`): the Win32 form of
/// [`DOS_DEVICE_NAME`]. `hotswapctl` falls back to it when no device interface
/// [`DEVICE_INTERFACE_GUID`] is present (the WDM build registers none).
pub const WIN32_DEVICE_PATH: &str = r"\\.\HotSwapSample";

/// A GUID as Windows lays it out (`GUID` of `guiddef.h`), without depending on a binding
/// crate: the front ends and the client convert it to theirs (`wdk_sys::GUID`,
/// `windows_sys::core::GUID`) field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Guid {
    /// `Data1`.
    pub data1: u32,
    /// `Data2`.
    pub data2: u16,
    /// `Data3`.
    pub data3: u16,
    /// `Data4`.
    pub data4: [u8; 8],
}

impl Guid {
    /// The GUID whose canonical text is the 32 hex digits of `value` in order
    /// (`0x33d918d7_4bfa_46db_8221_ba6fb13aee7a` is `{33D918D7-4BFA-46DB-8221-BA6FB13AEE7A}`).
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "each field takes its own bits of the value"
    )]
    pub const fn from_u128(value: u128) -> Self {
        Self {
            data1: (value >> 96) as u32,
            data2: (value >> 80) as u16,
            data3: (value >> 64) as u16,
            data4: (value as u64).to_be_bytes(),
        }
    }
}

/// The registry form: braces, upper-case hex digits, `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`.
impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{{:08X}-{:04X}-{:04X}-",
            self.data1, self.data2, self.data3
        )?;
        for (i, byte) in self.data4.iter().enumerate() {
            if i == 2 {
                f.write_str("-")?;
            }
            write!(f, "{byte:02X}")?;
        }
        f.write_str("}")
    }
}

/// The device interface class of the sample (`GUID_DEVINTERFACE_HOTSWAP_SAMPLE`), a GUID of
/// this project's own: the KMDF build registers an interface of this class on its device
/// (`WdfDeviceCreateDeviceInterface`), and `hotswapctl` finds the device through it
/// (`CM_Get_Device_Interface_ListW`), before falling back to [`WIN32_DEVICE_PATH`].
pub const DEVICE_INTERFACE_GUID: Guid = Guid::from_u128(0x33d9_18d7_4bfa_46db_8221_ba6f_b13a_ee7a);

/// [`DEVICE_INTERFACE_GUID`] in its registry form, as `inf/README.md` and Device Manager
/// show it.
pub const DEVICE_INTERFACE_GUID_STR: &str = "{33D918D7-4BFA-46DB-8221-BA6FB13AEE7A}";

/// The security descriptor of the sample's device, `SDDL_DEVOBJ_SYS_ALL_ADM_ALL` of
/// `wdmsec.h`: protected DACL (`P`), generic all (`GA`) for the local system (`SY`) and the
/// built-in administrators (`BA`), nobody else. `hotswapctl` must run elevated. The KMDF
/// build's INF sets it as the device's `Security` property (`PnP` applies it to every device
/// object of the node's stack).
pub const DEVICE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// The hardware id of the root-enumerated device node of the KMDF build
/// (`inf/hotswap_sample.inx`; `devcon install … Root\HotSwapSample`).
pub const HARDWARE_ID: &str = r"Root\HotSwapSample";

/// Service name of the KMDF build.
pub const KMDF_SERVICE_NAME: &str = "HotSwapSample";

/// Image name of the KMDF build.
pub const KMDF_IMAGE_NAME: &str = "hotswap_sample.sys";

/// Service name of the WDM build (a legacy, non-`PnP` kernel service).
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
    fn the_interface_guid_reads_as_its_registry_form() {
        use std::{format, string::ToString};
        assert_eq!(DEVICE_INTERFACE_GUID.to_string(), DEVICE_INTERFACE_GUID_STR);
        assert_eq!(DEVICE_INTERFACE_GUID.data1, 0x33D9_18D7);
        assert_eq!(DEVICE_INTERFACE_GUID.data2, 0x4BFA);
        assert_eq!(DEVICE_INTERFACE_GUID.data3, 0x46DB);
        assert_eq!(
            DEVICE_INTERFACE_GUID.data4,
            [0x82, 0x21, 0xBA, 0x6F, 0xB1, 0x3A, 0xEE, 0x7A]
        );
        // Leading zeros are kept in every field.
        let small = Guid::from_u128(0x0000_0001_0002_0003_0004_0000_0000_0005);
        assert_eq!(format!("{small}"), "{00000001-0002-0003-0004-000000000005}");
    }

    #[test]
    fn the_sddl_is_system_and_administrators_only() {
        assert!(DEVICE_SDDL.starts_with("D:P"));
        let aces: Vec<&str> = DEVICE_SDDL[3..]
            .split(')')
            .filter(|ace| !ace.is_empty())
            .collect();
        assert_eq!(aces, ["(A;;GA;;;SY", "(A;;GA;;;BA"]);
    }

    #[test]
    fn pool_tag_reads_hswp_in_memory_order() {
        assert_eq!(POOL_TAG.to_le_bytes(), *b"HSwp");
    }
}
