//! Which path the device backend opens: the sample's **device interface** when one is
//! present, else the **symbolic link**, unless a path was given with `--device`.
//!
//! The KMDF build, a `PnP` function driver, registers an interface of the class
//! [`DEVICE_INTERFACE_GUID`] on its device (`WdfDeviceCreateDeviceInterface`); the client
//! asks the configuration manager for the present interfaces of that class
//! (`CM_Get_Device_Interface_List_SizeW`, `CM_Get_Device_Interface_ListW`, Windows only) and
//! opens the first. The WDM build, a legacy service, registers none: the client then opens
//! its symbolic link [`WIN32_DEVICE_PATH`], which both builds create. [`Located`]'s
//! `Display` says which it used, and why, for the client to print on its standard error:
//!
//! ```text
//! device: \\?\ROOT#SAMPLE#0000#{33d918d7-4bfa-46db-8221-ba6fb13aee7a} (device interface {33D918D7-4BFA-46DB-8221-BA6FB13AEE7A})
//! device: \\.\HotSwapSample (the symbolic link: no device interface {33D918D7-4BFA-46DB-8221-BA6FB13AEE7A} is present)
//! ```
//!
//! The choice ([`choose`]) and the configuration manager's list format ([`parse_multi_sz`])
//! are plain code, tested on every platform; only the query itself ([`present_interfaces`])
//! needs Windows.

use std::fmt;

use hotswap_sample_core::names::{DEVICE_INTERFACE_GUID, WIN32_DEVICE_PATH};

/// How the path was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Given on the command line (`--device`).
    Given,
    /// The first present interface of the sample's class; `present` interfaces were listed
    /// (more than one: several devices of the sample).
    Interface {
        /// How many interfaces of the class are present.
        present: usize,
    },
    /// The symbolic link, because no interface could be used: why.
    SymbolicLink {
        /// No interface present, or the query failed (and how).
        why: String,
    },
}

/// The path the device backend opens, and how it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The path given to `CreateFileW`.
    pub path: String,
    /// How it was found.
    pub source: Source,
}

impl Located {
    /// Whether the path was given rather than found (a lab then keeps it; otherwise it looks
    /// again for each connection, since a device node that comes back may have another
    /// interface path).
    #[must_use]
    pub fn is_given(&self) -> bool {
        self.source == Source::Given
    }
}

/// `device: <path> (<how>)`.
impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device: {} (", self.path)?;
        match &self.source {
            Source::Given => f.write_str("given with --device")?,
            Source::Interface { present: 1 } => {
                write!(f, "device interface {DEVICE_INTERFACE_GUID}")?;
            }
            Source::Interface { present } => write!(
                f,
                "device interface {DEVICE_INTERFACE_GUID}, the first of {present} present"
            )?,
            Source::SymbolicLink { why } => write!(f, "the symbolic link: {why}")?,
        }
        f.write_str(")")
    }
}

/// The strings of a `REG_MULTI_SZ`-style list, as `CM_Get_Device_Interface_ListW` fills its
/// buffer: UTF-16 strings, each ending with a NUL, the list ending with an empty string. Stops
/// at the first empty string (or the end of the buffer); unpaired surrogates become U+FFFD.
#[must_use]
pub fn parse_multi_sz(units: &[u16]) -> Vec<String> {
    units
        .split(|&unit| unit == 0)
        .take_while(|string| !string.is_empty())
        .map(String::from_utf16_lossy)
        .collect()
}

/// `CONFIGRET n (CR_NAME)` for the configuration manager's answers the client may see
/// (`cfgmgr32.h`), `CONFIGRET n` for the others.
#[must_use]
pub fn configret(status: u32) -> String {
    let name = match status {
        0 => "CR_SUCCESS",
        2 => "CR_OUT_OF_MEMORY",
        3 => "CR_INVALID_POINTER",
        4 => "CR_INVALID_FLAG",
        13 => "CR_NO_SUCH_DEVNODE",
        19 => "CR_FAILURE",
        26 => "CR_BUFFER_SMALL",
        30 => "CR_INVALID_DEVICE_ID",
        31 => "CR_INVALID_DATA",
        51 => "CR_ACCESS_DENIED",
        52 => "CR_CALL_NOT_IMPLEMENTED",
        55 => "CR_NO_SUCH_DEVICE_INTERFACE",
        _ => return format!("CONFIGRET {status}"),
    };
    format!("CONFIGRET {status} ({name})")
}

/// The path to open: `explicit` when given; else the first of the present `interfaces`
/// (the configuration manager's answer, or why there is none); else the symbolic link.
#[must_use]
pub fn choose(explicit: Option<&str>, interfaces: Result<Vec<String>, String>) -> Located {
    if let Some(path) = explicit {
        return Located {
            path: path.to_owned(),
            source: Source::Given,
        };
    }
    let why = match interfaces {
        Ok(list) => match list.first() {
            Some(first) => {
                return Located {
                    path: first.clone(),
                    source: Source::Interface {
                        present: list.len(),
                    },
                };
            }
            None => format!("no device interface {DEVICE_INTERFACE_GUID} is present"),
        },
        Err(error) => {
            format!("the device interfaces {DEVICE_INTERFACE_GUID} could not be listed: {error}")
        }
    };
    Located {
        path: WIN32_DEVICE_PATH.to_owned(),
        source: Source::SymbolicLink { why },
    }
}

/// [`choose`] with the interfaces present on this system ([`present_interfaces`]).
#[must_use]
pub fn locate(explicit: Option<&str>) -> Located {
    if explicit.is_some() {
        return choose(explicit, Ok(Vec::new()));
    }
    choose(None, present_interfaces())
}

/// The present device interfaces of the sample's class.
///
/// # Errors
/// The configuration manager's `CONFIGRET` when a call fails, or the list kept growing
/// between the size query and the listing.
#[cfg(windows)]
pub fn present_interfaces() -> Result<Vec<String>, String> {
    windows::present_interfaces()
}

/// Without Windows there is no configuration manager.
///
/// # Errors
/// Always: device interfaces exist on Windows only.
#[cfg(not(windows))]
pub fn present_interfaces() -> Result<Vec<String>, String> {
    Err("device interfaces are listed on Windows only".to_owned())
}

#[cfg(windows)]
mod windows {
    use std::ptr;

    use hotswap_sample_core::names::DEVICE_INTERFACE_GUID;
    use windows_sys::{
        Win32::Devices::DeviceAndDriverInstallation::{
            CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_Get_Device_Interface_List_SizeW,
            CM_Get_Device_Interface_ListW, CR_BUFFER_SMALL, CR_SUCCESS,
        },
        core::GUID,
    };

    use super::{configret, parse_multi_sz};

    /// The class as `windows-sys` spells a GUID.
    static CLASS: GUID = GUID {
        data1: DEVICE_INTERFACE_GUID.data1,
        data2: DEVICE_INTERFACE_GUID.data2,
        data3: DEVICE_INTERFACE_GUID.data3,
        data4: DEVICE_INTERFACE_GUID.data4,
    };

    /// Size, then list; again when an interface arrived in between (`CR_BUFFER_SMALL`), a
    /// few times at most.
    pub fn present_interfaces() -> Result<Vec<String>, String> {
        for _ in 0..4 {
            let mut length: u32 = 0;
            // SAFETY: `length` and `CLASS` outlive the call; no device instance filter (null).
            let status = unsafe {
                CM_Get_Device_Interface_List_SizeW(
                    &raw mut length,
                    &raw const CLASS,
                    ptr::null(),
                    CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
                )
            };
            if status != CR_SUCCESS {
                return Err(format!(
                    "CM_Get_Device_Interface_List_SizeW answered {}",
                    configret(status)
                ));
            }
            let mut buffer = vec![0u16; usize::try_from(length).unwrap_or(0).max(1)];
            let capacity = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
            // SAFETY: `buffer` holds `capacity` UTF-16 units and outlives the call.
            let status = unsafe {
                CM_Get_Device_Interface_ListW(
                    &raw const CLASS,
                    ptr::null(),
                    buffer.as_mut_ptr(),
                    capacity,
                    CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
                )
            };
            match status {
                CR_SUCCESS => return Ok(parse_multi_sz(&buffer)),
                CR_BUFFER_SMALL => {}
                other => {
                    return Err(format!(
                        "CM_Get_Device_Interface_ListW answered {}",
                        configret(other)
                    ));
                }
            }
        }
        Err("the list of interfaces kept growing while it was read".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use hotswap_sample_core::names::DEVICE_INTERFACE_GUID_STR;

    use super::*;

    fn wide(text: &str) -> Vec<u16> {
        text.encode_utf16().collect()
    }

    const INTERFACE: &str = r"\\?\ROOT#SAMPLE#0000#{33d918d7-4bfa-46db-8221-ba6fb13aee7a}";

    #[test]
    fn a_multi_sz_list_reads_as_its_strings() {
        let mut units = wide(INTERFACE);
        units.push(0);
        units.extend(wide(r"\\?\ROOT#SAMPLE#0001#{x}"));
        units.extend([0, 0]);
        assert_eq!(
            parse_multi_sz(&units),
            [INTERFACE, r"\\?\ROOT#SAMPLE#0001#{x}"]
        );
        // The empty list is one NUL; a list cut short still yields what it has.
        assert!(parse_multi_sz(&[0]).is_empty());
        assert!(parse_multi_sz(&[]).is_empty());
        assert_eq!(parse_multi_sz(&wide("abc")), ["abc"]);
        // Nothing after the terminating empty string is read.
        assert!(parse_multi_sz(&[0, 0x41, 0]).is_empty());
    }

    #[test]
    fn the_first_present_interface_is_used_and_said() {
        let located = choose(None, Ok(vec![INTERFACE.to_owned()]));
        assert_eq!(located.path, INTERFACE);
        assert!(!located.is_given());
        assert_eq!(
            located.to_string(),
            format!("device: {INTERFACE} (device interface {DEVICE_INTERFACE_GUID_STR})")
        );
        let two = choose(None, Ok(vec![INTERFACE.to_owned(), "other".to_owned()]));
        assert_eq!(two.path, INTERFACE);
        assert!(
            two.to_string().ends_with("the first of 2 present)"),
            "{two}"
        );
    }

    #[test]
    fn without_an_interface_the_symbolic_link_is_used_and_said() {
        let none = choose(None, Ok(Vec::new()));
        assert_eq!(none.path, WIN32_DEVICE_PATH);
        assert_eq!(
            none.to_string(),
            format!(
                r"device: \\.\HotSwapSample (the symbolic link: no device interface {DEVICE_INTERFACE_GUID_STR} is present)"
            )
        );
        let failed = choose(None, Err("CONFIGRET 13".to_owned()));
        assert_eq!(failed.path, WIN32_DEVICE_PATH);
        assert!(
            failed
                .to_string()
                .ends_with("could not be listed: CONFIGRET 13)"),
            "{failed}"
        );
    }

    #[test]
    fn configuration_manager_answers_are_named() {
        assert_eq!(configret(19), "CONFIGRET 19 (CR_FAILURE)");
        assert_eq!(configret(26), "CONFIGRET 26 (CR_BUFFER_SMALL)");
        assert_eq!(configret(99), "CONFIGRET 99");
    }

    #[test]
    fn a_given_path_wins_and_is_said() {
        let given = choose(Some(r"\\.\Other"), Ok(vec![INTERFACE.to_owned()]));
        assert_eq!(given.path, r"\\.\Other");
        assert!(given.is_given());
        assert_eq!(
            given.to_string(),
            r"device: \\.\Other (given with --device)"
        );
        assert_eq!(locate(Some(r"\\.\Other")), given);
    }

    #[cfg(not(windows))]
    #[test]
    fn elsewhere_the_symbolic_link_is_used_because_there_are_no_interfaces() {
        let located = locate(None);
        assert_eq!(located.path, WIN32_DEVICE_PATH);
        assert!(located.to_string().contains("on Windows only"), "{located}");
    }
}
