//! The VM scripts (`tests/vm/*.ps1`) cannot run here, but they must not drift from what
//! they drive: the flags `run-scenarios.ps1` passes must be flags `hotswapctl scenarios`
//! accepts, the `swap.ps1` parameters the swap command uses must exist, and the INF, image,
//! service and hardware-id names must be those of `inf/` and the sample core.

use std::{collections::BTreeSet, fs, path::PathBuf, process::Command};

use hotswap_sample_core::names;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(name: &str) -> String {
    fs::read_to_string(repo().join("tests/vm").join(name)).unwrap()
}

/// Every `--long-flag` in `text`.
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let tail = &rest[at + 2..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
            flags.insert(format!("--{name}"));
        }
        rest = tail;
    }
    flags
}

/// Every `-Parameter` (PowerShell style) in `text`.
fn dash_parameters(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() > 2 && w.starts_with('-') && !w.starts_with("--"))
        .filter(|w| w.chars().nth(1).is_some_and(|c| c.is_ascii_uppercase()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn run_scenarios_passes_only_flags_hotswapctl_accepts() {
    let help = Command::new(env!("CARGO_BIN_EXE_hotswapctl"))
        .args(["scenarios", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let accepted = long_flags(&String::from_utf8(help.stdout).unwrap());
    let used = long_flags(&script("run-scenarios.ps1"));
    for flag in [
        "--junit",
        "--swap-command",
        "--unload-command",
        "--reload-command",
        "--instance-id",
        "--quick",
        "--only",
    ] {
        assert!(
            used.contains(flag),
            "run-scenarios.ps1 no longer passes {flag}"
        );
    }
    let unknown: Vec<_> = used.difference(&accepted).collect();
    assert!(
        unknown.is_empty(),
        "run-scenarios.ps1 passes {unknown:?}, which `hotswapctl scenarios` does not accept ({accepted:?})"
    );
    // And the subcommand itself.
    assert!(script("run-scenarios.ps1").contains("@('scenarios',"));
}

#[test]
fn the_swap_command_uses_parameters_swap_ps1_declares() {
    let run = script("run-scenarios.ps1");
    let line = run
        .lines()
        .find(|l| l.trim_start().starts_with("$swap = "))
        .expect("the swap command line");
    assert!(line.contains("swap.ps1") || line.contains("$swapScript"));
    assert!(line.contains("-Version {version}"), "{line}");
    let declared = dash_parameters(&script("swap.ps1").replace('$', "-"));
    for parameter in dash_parameters(line) {
        if ["-NoProfile", "-ExecutionPolicy", "-File"].contains(&parameter.as_str()) {
            continue; // powershell.exe's own
        }
        assert!(
            declared.contains(&parameter),
            "swap.ps1 has no parameter {parameter} ({declared:?})"
        );
    }
    // The versions it is given are the ones hotswapctl substitutes.
    assert!(script("swap.ps1").contains("ValidateSet('v1', 'v2')"));
    assert_eq!(hotswap_sample_core::DriverVersion::V2.to_string(), "v2");
}

/// The `Key = 'value'` entries of `common.ps1` (whitespace around `=` free).
fn ps_entries(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter_map(|(key, value)| {
            let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

#[test]
fn the_scripts_use_the_names_of_inf_and_the_sample_core() {
    let common = script("common.ps1");
    let entries = ps_entries(&common);
    let has = |key: &str, value: &str| entries.contains(&(key.to_owned(), value.to_owned()));
    for (key, value) in [
        ("Service", names::WDM_SERVICE_NAME),
        ("Image", names::WDM_IMAGE_NAME),
        ("Service", names::KMDF_SERVICE_NAME),
        ("Image", names::KMDF_IMAGE_NAME),
        ("HardwareId", names::HARDWARE_ID),
        ("InterfaceGuid", names::DEVICE_INTERFACE_GUID_STR),
        ("Inf", "hotswap_sample_wdm.inf"),
        ("Catalog", "hotswap_sample_wdm.cat"),
        ("Inf", "hotswap_sample.inf"),
        ("Catalog", "hotswap_sample.cat"),
    ] {
        assert!(has(key, value), "common.ps1 lacks {key} = '{value}'");
    }
    let wdm_inf = fs::read_to_string(repo().join("inf/hotswap_sample_wdm.inf")).unwrap();
    assert!(wdm_inf.contains("CatalogFile = hotswap_sample_wdm.cat"));
    let inx = fs::read_to_string(repo().join("inf/hotswap_sample.inx")).unwrap();
    assert!(inx.contains("CatalogFile = hotswap_sample.cat"));
    assert!(inx.contains(names::HARDWARE_ID));
}

/// The KMDF install follows `inf/README.md`: devcon creates the node and installs the
/// package (or devgen creates a root node and pnputil installs), devcon removes it, and the
/// scenarios unload and reload the `PnP` driver by disabling and enabling its node.
#[test]
fn the_kmdf_scripts_follow_the_devcon_flow_of_inf_readme() {
    let readme = fs::read_to_string(repo().join("inf/README.md")).unwrap();
    let install = script("install.ps1");
    assert!(install.contains("Invoke-Native devcon @('install', $inf, $names.HardwareId)"));
    assert!(readme.contains(&format!(
        "devcon install hotswap_sample.inf {}",
        names::HARDWARE_ID
    )));
    assert!(install.contains(
        "Invoke-Native devgen @('/add', '/bus', 'ROOT', '/hardwareid', $names.HardwareId)"
    ));
    assert!(readme.contains(&format!(
        "devgen /add /bus ROOT /hardwareid {}",
        names::HARDWARE_ID
    )));
    assert!(install.contains("Invoke-Native pnputil @('/add-driver', $inf, '/install')"));
    assert!(readme.contains("pnputil /add-driver hotswap_sample.inf /install"));
    let remove = script("remove.ps1");
    assert!(remove.contains("Invoke-Native devcon @('remove', $names.HardwareId)"));
    assert!(readme.contains(&format!("devcon remove {}", names::HARDWARE_ID)));
    let run = script("run-scenarios.ps1");
    assert!(run.contains("'--unload-command', \"pnputil /disable-device $id\""));
    assert!(run.contains("'--reload-command', \"pnputil /enable-device $id\""));
    for stale in ["/scan-devices", "non-PnP KMDF"] {
        assert!(!run.contains(stale) && !install.contains(stale), "{stale}");
    }
}

#[test]
fn every_script_the_readme_lists_exists_and_loads_common() {
    let readme = script("README.md");
    for name in [
        "package.ps1",
        "install.ps1",
        "run-scenarios.ps1",
        "swap.ps1",
        "collect-logs.ps1",
        "remove.ps1",
    ] {
        assert!(readme.contains(&format!("`{name}`")), "README lacks {name}");
        assert!(
            script(name).contains(". (Join-Path $PSScriptRoot 'common.ps1')"),
            "{name} does not load common.ps1"
        );
    }
}
