//! Reading Wine's log of the session (`target/wine/wine.log`): what the driver printed,
//! what Wine's kernel lacked, which images were loaded, and any sign of a fault.
//!
//! | in the log | means | rule |
//! |---|---|---|
//! | `warn:debugstr:vDbgPrintExWithPrefix … HotSwapSample vN: <message>` | the driver's `DbgPrint` | every message must be `DriverEntry: hot swap unavailable, running without it: <why>` (the library's fallback, announced with its reason) or `unload`; the loads and unloads must balance |
//! | `fixme:ntoskrnl:MmGetSystemRoutineAddress L"<name>" not found` | a routine the driver looked up that Wine lacks | `IoRegisterDriverProxyEndpoints` must be among them (why there is no hot swap) |
//! | `trace:loaddll:… Loaded L"C:\…\x.sys" at …: native` | an image loaded from the prefix (not a Wine builtin) | listed |
//! | [`FAULTS`] | an exception, a page fault, a bug check, a failed module or kernel call | none may appear |
//!
//! The fallback's reason (`<why>`, the library's `Unavailable` as the WDM
//! sample prints it) must be one Wine explains: `the kernel does not export <routine>`, a
//! DriverProxy routine that Wine's log says it lacks (the library checks those first, so this
//! is what Wine 8 gives), or `the kernel refused the storage of the endpoint record: 0x…` (a
//! Wine with the DriverProxy routines but Wine 8's stub of `IoAllocateDriverObjectExtension`,
//! which answers `STATUS_NOT_IMPLEMENTED`). Anything else (another reason, `no worker
//! thread`, a failure) fails the stage.

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
    "DriverEntry: hot swap unavailable, running without it: <why>",
    "unload",
];

/// The fallback's announcement, followed by `: <why>`.
pub const FALLBACK: &str = "DriverEntry: hot swap unavailable, running without it";

/// A fallback reason naming a routine the kernel lacks (the WDM sample's wording of
/// `Unavailable::ExportMissing`).
const EXPORT_MISSING: &str = "the kernel does not export ";

/// A fallback reason for a kernel that refused the endpoint record's storage (the WDM
/// sample's wording of `Unavailable::RecordRefused`), followed by the status.
const RECORD_REFUSED: &str = "the kernel refused the storage of the endpoint record: 0x";

/// The DriverProxy routines: the only ones whose absence may be the fallback's reason here.
const DRIVER_PROXY_ROUTINES: [&str; 7] = [
    "IoGetDriverProxyFeatures",
    "IoCreateDriverProxyExtension",
    "IoGetDriverProxyExtensionFromDriverObject",
    "IoRegisterDriverProxyEndpoints",
    "IoGetDriverProxyEndpointWrapper",
    "IofGetDriverProxyWrapperFromEndpoint",
    "IoDriverProxyCreateHotSwappableWorkerThread",
];

/// A fallback reason the stage accepts.
enum Reason<'a> {
    /// The kernel lacks this DriverProxy routine (Wine's log must then say so).
    Missing(&'a str),
    /// The kernel refused the endpoint record's storage.
    RecordRefused,
}

/// `why` as a fallback reason the stage accepts, or `None`.
fn accepted_reason(why: &str) -> Option<Reason<'_>> {
    if let Some(routine) = why.strip_prefix(EXPORT_MISSING) {
        return DRIVER_PROXY_ROUTINES
            .contains(&routine)
            .then_some(Reason::Missing(routine));
    }
    let status = why.strip_prefix(RECORD_REFUSED)?;
    (status.len() == 8 && status.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(Reason::RecordRefused)
}

/// What the log says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogReport {
    /// Every `DbgPrint` line of the driver (`HotSwapSample v1: unload`).
    pub driver_lines: Vec<String>,
    /// Loads announced with the fallback, per build (`v1`, `v2`).
    pub loads: Vec<String>,
    /// The reasons the fallback was announced with (`the kernel does not export …`).
    pub fallback_reasons: BTreeSet<String>,
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
    let mut named = BTreeSet::new();
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
            let why = said
                .strip_prefix(FALLBACK)
                .and_then(|rest| rest.strip_prefix(": "));
            match (said, why.map(|why| (why, accepted_reason(why)))) {
                (_, Some((why, Some(reason)))) => {
                    report.loads.push(build.to_owned());
                    report.fallback_reasons.insert(why.to_owned());
                    if let Reason::Missing(routine) = reason {
                        named.insert(routine.to_owned());
                    }
                }
                ("unload", _) => report.unloads += 1,
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
    if let Some(routine) = named
        .iter()
        .find(|routine| !report.missing_routines.contains(*routine))
    {
        bail!(
            "the driver fell back because the kernel does not export {routine}, but Wine's log does not say it lacks it (it lacks: {:?})",
            report.missing_routines
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
00e0:fixme:ntoskrnl:MmGetSystemRoutineAddress L"IoGetDriverProxyFeatures" not found
00e0:fixme:ntoskrnl:MmGetSystemRoutineAddress L"IoRegisterDriverProxyEndpoints" not found
00e0:fixme:ntoskrnl:MmGetSystemRoutineAddress L"ExAllocatePool2" not found
00e0:warn:debugstr:vDbgPrintExWithPrefix 00000000:00000001: HotSwapSample v1: DriverEntry: hot swap unavailable, running without it: the kernel does not export IoGetDriverProxyFeatures
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
        assert_eq!(
            report.fallback_reasons.iter().collect::<Vec<_>>(),
            ["the kernel does not export IoGetDriverProxyFeatures"]
        );
    }

    /// A Wine with the DriverProxy routines but Wine 8's stub of
    /// `IoAllocateDriverObjectExtension`: the fallback's reason is the refusal.
    #[test]
    fn a_refused_endpoint_record_is_an_accepted_reason() {
        let refused = HEALTHY.replace(
            "the kernel does not export IoGetDriverProxyFeatures",
            "the kernel refused the storage of the endpoint record: 0xC0000002",
        );
        let report = check(&refused).unwrap();
        assert_eq!(report.loads, ["v1"]);
        assert_eq!(
            report.fallback_reasons.iter().collect::<Vec<_>>(),
            ["the kernel refused the storage of the endpoint record: 0xC0000002"]
        );
    }

    #[test]
    fn a_fallback_without_a_reason_wine_explains_fails() {
        for (why, error) in [
            // A routine Wine's log does not say it lacks.
            (
                "the kernel does not export IoCreateDriverProxyExtension",
                "does not say it lacks it",
            ),
            // A routine whose absence would not be why hot swap is unavailable.
            ("the kernel does not export ExAllocatePool2", "printed what"),
            ("DriverProxy is not enabled for this driver", "printed what"),
            (
                "the kernel refused the storage of the endpoint record: 0x",
                "printed what",
            ),
        ] {
            let log = HEALTHY.replace("the kernel does not export IoGetDriverProxyFeatures", why);
            let message = check(&log).unwrap_err().to_string();
            assert!(message.contains(error), "{why}: {message}");
        }
        let bare = HEALTHY.replace(": the kernel does not export IoGetDriverProxyFeatures", "");
        assert!(check(&bare).is_err(), "no reason given");
        let no_worker = format!(
            "{HEALTHY}00e0:warn:debugstr:vDbgPrintExWithPrefix 0:1: HotSwapSample v1: DriverEntry: no worker thread, running without it: the kernel does not export ExAllocatePoolWithTag\n"
        );
        assert!(check(&no_worker).is_err(), "the worker must run under Wine");
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
