//! Reading Wine's log of the session (`target/wine/wine.log`): what the driver printed,
//! what Wine's kernel lacked, which images were loaded, and any sign of a fault.
//!
//! | in the log | means | rule |
//! |---|---|---|
//! | `warn:debugstr:vDbgPrintExWithPrefix … HotSwapSample vN: <message>` | the driver's `DbgPrint` | every message must be `DriverEntry: hot swap unavailable, running without it` (the library's fallback, announced) or `unload`; the loads and unloads must balance |
//! | `fixme:ntoskrnl:MmGetSystemRoutineAddress L"<name>" not found` | a routine the driver looked up that Wine lacks | `IoRegisterDriverProxyEndpoints` must be among them (why there is no hot swap) |
//! | `trace:loaddll:… Loaded L"C:\…\x.sys" at …: native` | an image loaded from the prefix (not a Wine builtin) | listed |
//! | [`FAULTS`] | an exception, a page fault, a bug check, a failed module or kernel call | none may appear |

use std::collections::BTreeSet;

use anyhow::{Result, bail};

/// Log fragments that mean something went wrong in the kernel, the driver or its loading.
pub const FAULTS: [&str; 8] = [
    "err:seh",
    "err:ntoskrnl",
    "err:module",
    "err:virtual",
    "Unhandled exception",
    "page fault",
    "KeBugCheck",
    "wine: Unhandled",
];

/// The driver's messages the stage accepts (see the module table).
pub const ACCEPTED: [&str; 2] = [
    "DriverEntry: hot swap unavailable, running without it",
    "unload",
];

/// The fallback's announcement.
pub const FALLBACK: &str = "DriverEntry: hot swap unavailable, running without it";

/// What the log says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogReport {
    /// Every `DbgPrint` line of the driver (`HotSwapSample v1: unload`).
    pub driver_lines: Vec<String>,
    /// Loads announced with the fallback, per build (`v1`, `v2`).
    pub loads: Vec<String>,
    /// `unload` messages.
    pub unloads: usize,
    /// Routines Wine's kernel does not export that the driver asked for.
    pub missing_routines: BTreeSet<String>,
    /// Driver images loaded (Windows paths).
    pub images: BTreeSet<String>,
}

/// Reads the log `text` and applies the module's rules.
///
/// # Errors
/// The first broken rule, with the lines concerned.
pub fn check(text: &str) -> Result<LogReport> {
    let mut report = LogReport::default();
    let mut faults = Vec::new();
    let mut unexpected = Vec::new();
    for line in text.lines() {
        if FAULTS.iter().any(|fault| line.contains(fault)) {
            faults.push(line);
        }
        if line.contains("debugstr")
            && let Some(at) = line.find("HotSwapSample v")
        {
            let message = line[at..].trim_end().to_owned();
            let (build, said) = message
                .strip_prefix("HotSwapSample ")
                .and_then(|rest| rest.split_once(": "))
                .unwrap_or(("?", ""));
            match said {
                FALLBACK => report.loads.push(build.to_owned()),
                "unload" => report.unloads += 1,
                _ => unexpected.push(message.clone()),
            }
            report.driver_lines.push(message);
        }
        if let Some(rest) = line.split("MmGetSystemRoutineAddress L\"").nth(1)
            && let Some((name, _)) = rest.split_once("\" not found")
        {
            report.missing_routines.insert(name.to_owned());
        }
        if line.contains(":loaddll:")
            && line.ends_with(": native")
            && let Some(rest) = line.split("Loaded L\"").nth(1)
            && let Some((path, _)) = rest.split_once('"')
            && path.to_ascii_lowercase().ends_with(".sys")
        {
            report.images.insert(path.replace("\\\\", "\\"));
        }
    }
    if !faults.is_empty() {
        bail!(
            "Wine's log shows {} fault line(s) (exception, page fault, kernel or loader error); first: {}",
            faults.len(),
            faults.first().copied().unwrap_or_default()
        );
    }
    if !unexpected.is_empty() {
        bail!(
            "the driver printed what a healthy run does not (accepted: {ACCEPTED:?}): {}",
            unexpected.join(" | ")
        );
    }
    if report.loads.is_empty() {
        bail!(
            "the driver never announced its fallback (\"{FALLBACK}\"): it did not load, or printed nothing"
        );
    }
    if report.loads.len() != report.unloads {
        bail!(
            "the driver loaded {} times but unloaded {} times",
            report.loads.len(),
            report.unloads
        );
    }
    if !report
        .missing_routines
        .contains("IoRegisterDriverProxyEndpoints")
    {
        bail!(
            "Wine's kernel was never asked for IoRegisterDriverProxyEndpoints: the library did not probe DriverProxy (asked for: {:?})",
            report.missing_routines
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTHY: &str = r#"00e0:trace:loaddll:build_module Loaded L"C:\\hotswap\\hotswap_sample_v1.sys" at 00000000021A0000: native
00e0:fixme:ntoskrnl:MmGetSystemRoutineAddress L"IoRegisterDriverProxyEndpoints" not found
00e0:fixme:ntoskrnl:MmGetSystemRoutineAddress L"ExAllocatePool2" not found
00e0:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: HotSwapSample v1: DriverEntry: hot swap unavailable, running without it
0050:err:winediag:nodrv_CreateWindow Application tried to create a window, but no driver could be loaded.
00e0:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: HotSwapSample v1: unload
"#;

    #[test]
    fn a_healthy_log_passes_and_is_summarised() {
        let report = check(HEALTHY).unwrap();
        assert_eq!(report.loads, ["v1"]);
        assert_eq!(report.unloads, 1);
        assert_eq!(
            report.images.iter().collect::<Vec<_>>(),
            [r"C:\hotswap\hotswap_sample_v1.sys"]
        );
        assert!(report.missing_routines.contains("ExAllocatePool2"));
        assert_eq!(report.driver_lines.len(), 2);
    }

    #[test]
    fn faults_and_unexpected_messages_fail() {
        let fault =
            format!("{HEALTHY}0100:err:seh:NtRaiseException Unhandled exception code c0000005\n");
        assert!(
            check(&fault)
                .unwrap_err()
                .to_string()
                .contains("fault line")
        );
        let failed = format!(
            "{HEALTHY}00e0:warn:debugstr:vDbgPrintExWithPrefix 0:1: HotSwapSample v1: DriverEntry failed: 0xC0000001\n"
        );
        assert!(
            check(&failed)
                .unwrap_err()
                .to_string()
                .contains("DriverEntry failed")
        );
        let unbalanced = HEALTHY.replace("HotSwapSample v1: unload", "nothing");
        assert!(check(&unbalanced).is_err());
        assert!(check("").is_err());
    }
}
