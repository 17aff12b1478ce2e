//! Checks of the KMDF sample (`sample/kmdf`) that Linux can make: nothing of it compiles
//! without Windows and the WDK, but its build configuration is plain text. `cargo xtask test`
//! runs [`check`] (and `cargo fmt` on the crate, which needs no dependency).
//!
//! The manifest is read with a small reader of TOML tables and `key = value` lines (the
//! xtask has no TOML parser): enough for the flat keys checked here, and strict about what
//! it does not understand in those keys' values.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The KMDF sample's manifest, relative to the workspace root.
pub const MANIFEST: &str = "sample/kmdf/Cargo.toml";

/// A TOML document as `table name -> key -> raw value text` (comments and blank lines
/// dropped; the root table is `""`).
type Tables = BTreeMap<String, BTreeMap<String, String>>;

fn tables(text: &str) -> Result<Tables> {
    let mut tables = Tables::new();
    let mut current = String::new();
    tables.insert(current.clone(), BTreeMap::new());
    let mut lines = text.lines().enumerate();
    while let Some((number, raw)) = lines.next() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            name.trim().clone_into(&mut current);
            tables.entry(current.clone()).or_default();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            // Continuation of a multi-line value (an array, a literal string): not a key.
            continue;
        };
        let mut value = value.trim().to_owned();
        // A multi-line literal string (`'''`) or array: keep its first line only, and skip
        // its remaining lines so that they are not read as keys.
        let opens_block = value.starts_with("'''") && value.matches("'''").count() == 1;
        let opens_array = value.starts_with('[') && !value.ends_with(']');
        if opens_block || opens_array {
            let close = if opens_block { "'''" } else { "]" };
            for (_, rest) in lines.by_ref() {
                if rest.trim_end().ends_with(close) {
                    break;
                }
            }
            value.push_str(" ...");
        }
        let table = tables.get_mut(&current).context("current table")?;
        if table.insert(key.trim().to_owned(), value).is_some() {
            bail!(
                "line {}: key {} appears twice in [{current}]",
                number + 1,
                key.trim()
            );
        }
    }
    Ok(tables)
}

/// `line` without a `#` comment (a `#` inside a basic string is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

fn value<'a>(tables: &'a Tables, table: &str, key: &str) -> Result<&'a str> {
    tables
        .get(table)
        .with_context(|| format!("no [{table}] table"))?
        .get(key)
        .map(String::as_str)
        .with_context(|| format!("no `{key}` in [{table}]"))
}

fn expect(tables: &Tables, table: &str, key: &str, expected: &str) -> Result<()> {
    let found = value(tables, table, key)?;
    if found != expected {
        bail!("[{table}] {key} = {found}, expected {expected}");
    }
    Ok(())
}

/// Checks the manifest text: the KMDF 1.33 metadata wdk-build reads, a `cdylib`,
/// `panic = "abort"` in both profiles, its own `[workspace]`, the wdk dependencies.
///
/// # Errors
/// The first requirement not met.
pub fn check_manifest(text: &str) -> Result<()> {
    let tables = tables(text)?;
    let model = "package.metadata.wdk.driver-model";
    expect(&tables, model, "driver-type", "\"KMDF\"")?;
    expect(&tables, model, "kmdf-version-major", "1")?;
    expect(&tables, model, "target-kmdf-version-minor", "33")?;
    expect(&tables, "lib", "crate-type", "[\"cdylib\"]")?;
    for profile in ["profile.dev", "profile.release"] {
        expect(&tables, profile, "panic", "\"abort\"")?;
    }
    if !tables.contains_key("workspace") {
        bail!("no [workspace] table: the crate must be its own workspace");
    }
    for crate_name in ["wdk", "wdk-sys", "wdk-alloc", "wdk-panic", "driver-proxy"] {
        value(&tables, "dependencies", crate_name)?;
    }
    value(&tables, "build-dependencies", "wdk-build")?;
    Ok(())
}

/// The framework calls that make `sample/kmdf` a `PnP` function driver, each in the file that
/// must make it, and the calls of the non-PnP driver it replaced, which no file may make.
const PNP_STRUCTURE: [(&str, &str); 8] = [
    ("sample/kmdf/src/driver.rs", "EvtDriverDeviceAdd: callback("),
    ("sample/kmdf/src/driver.rs", "EvtDriverUnload: callback("),
    ("sample/kmdf/src/device.rs", "WdfDeviceCreate,"),
    (
        "sample/kmdf/src/device.rs",
        "WdfDeviceCreateDeviceInterface,",
    ),
    ("sample/kmdf/src/device.rs", "EvtDeviceD0Entry: callback("),
    ("sample/kmdf/src/device.rs", "EvtDeviceD0Exit: callback("),
    ("sample/kmdf/src/queue.rs", "EvtIoDeviceControl: callback("),
    ("sample/kmdf/src/endpoints.rs", "same_type::<"),
];
const NON_PNP: [&str; 3] = [
    "WdfDriverInitNonPnpDriver",
    "WdfControlDeviceInitAllocate",
    "WdfControlFinishInitializing",
];

/// Checks `sample/kmdf` under `root`: the manifest ([`check_manifest`]), `build.rs`,
/// `.cargo/config.toml`, the entry point and allocator, the structure of a `PnP` function
/// driver ([`PNP_STRUCTURE`], none of [`NON_PNP`]), the INX copy, and the root workspace's
/// `exclude`.
///
/// # Errors
/// The first requirement not met, naming the file.
pub fn check(root: &Path) -> Result<()> {
    let read =
        |path: &str| fs::read_to_string(root.join(path)).with_context(|| format!("reading {path}"));
    check_manifest(&read(MANIFEST)?).context(MANIFEST)?;
    let contains = |path: &str, needle: &str| -> Result<()> {
        if read(path)?.contains(needle) {
            Ok(())
        } else {
            bail!("{path} does not contain `{needle}`")
        }
    };
    contains(
        "sample/kmdf/build.rs",
        "wdk_build::configure_wdk_binary_build()",
    )?;
    contains(
        "sample/kmdf/.cargo/config.toml",
        "\"target-feature=+crt-static\"",
    )?;
    contains(
        "sample/kmdf/src/driver.rs",
        "#[unsafe(export_name = \"DriverEntry\")]",
    )?;
    contains("sample/kmdf/src/lib.rs", "extern crate wdk_panic;")?;
    contains("sample/kmdf/src/lib.rs", "#[global_allocator]")?;
    for (path, needle) in PNP_STRUCTURE {
        contains(path, needle).context("not the structure of a PnP function driver")?;
    }
    let sources = root.join("sample/kmdf/src");
    for entry in fs::read_dir(&sources).with_context(|| format!("reading {}", sources.display()))? {
        let path = entry?.path();
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(call) = NON_PNP.iter().find(|call| text.contains(**call)) {
            bail!(
                "{} calls {call}: the KMDF sample is a PnP function driver",
                path.display()
            );
        }
    }
    if read("sample/kmdf/hotswap_sample.inx")? != read("inf/hotswap_sample.inx")? {
        bail!(
            "sample/kmdf/hotswap_sample.inx differs from inf/hotswap_sample.inx: copy the \
             one in inf/ (packaging reads the copy beside the manifest)"
        );
    }
    let root_tables = tables(&read("Cargo.toml")?).context("Cargo.toml")?;
    if !value(&root_tables, "workspace", "exclude")?.contains("\"sample/kmdf\"") {
        bail!("the root workspace does not exclude sample/kmdf");
    }
    println!(
        "xtask: sample/kmdf: KMDF 1.33 manifest, cdylib, panic=abort, +crt-static, PnP function driver: ok"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[package]
name = "hotswap-sample"

[package.metadata.wdk.driver-model]
driver-type = "KMDF" # the framework
kmdf-version-major = 1
target-kmdf-version-minor = 33

[lib]
crate-type = ["cdylib"]

[dependencies]
driver-proxy = { path = "../.." }
wdk = "0.5.0"
wdk-alloc = "0.4.2"
wdk-panic = "0.5.0"
wdk-sys = "0.5.2"

[build-dependencies]
wdk-build = "0.6.0"

[workspace]

[profile.dev]
panic = "abort"

[profile.release]
panic = "abort"
lto = true
"#;

    #[test]
    fn the_expected_manifest_passes() {
        check_manifest(GOOD).unwrap();
    }

    #[test]
    fn each_requirement_is_enforced() {
        let broken = [
            (
                "driver-type = \"KMDF\"",
                "driver-type = \"WDM\"",
                "driver-type",
            ),
            ("minor = 33", "minor = 31", "target-kmdf-version-minor"),
            ("[\"cdylib\"]", "[\"rlib\"]", "crate-type"),
            (
                "[profile.release]\npanic = \"abort\"",
                "[profile.release]\npanic = \"unwind\"",
                "[profile.release] panic",
            ),
            (
                "[profile.dev]\npanic = \"abort\"\n",
                "[profile.dev]\n",
                "[profile.dev]",
            ),
            ("\n[workspace]\n", "\n", "[workspace]"),
            ("wdk-panic = \"0.5.0\"\n", "", "wdk-panic"),
            ("wdk-build = \"0.6.0\"", "cc = \"1\"", "wdk-build"),
        ];
        for (from, to, named) in broken {
            assert!(GOOD.contains(from), "{from}");
            let error = check_manifest(&GOOD.replacen(from, to, 1)).unwrap_err();
            assert!(error.to_string().contains(named), "{named}: {error}");
        }
    }

    #[test]
    fn comments_and_multi_line_values_are_not_keys() {
        let text = "[config]\nload_script = '''\npanic = \"unwind\"\n'''\n[a]\nlist = [\n  \"x\",\n]\nk = \"v # not a comment\" # comment\n";
        let tables = tables(text).unwrap();
        assert_eq!(tables["config"].len(), 1);
        assert_eq!(tables["a"]["k"], "\"v # not a comment\"");
        assert!(tables["a"]["list"].starts_with('['));
    }

    #[test]
    fn a_non_pnp_driver_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-kmdf-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let real = crate::workspace_root();
        for path in [
            MANIFEST,
            "sample/kmdf/build.rs",
            "sample/kmdf/.cargo/config.toml",
            "sample/kmdf/hotswap_sample.inx",
            "inf/hotswap_sample.inx",
            "Cargo.toml",
        ]
        .into_iter()
        .chain(PNP_STRUCTURE.iter().map(|(path, _)| *path))
        .chain(["sample/kmdf/src/lib.rs"])
        {
            let to = dir.join(path);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(real.join(path), &to).unwrap();
        }
        check(&dir).unwrap();
        // The old structure: a control device of a non-PnP driver.
        let driver = dir.join("sample/kmdf/src/driver.rs");
        let text = fs::read_to_string(&driver).unwrap();
        fs::write(
            &driver,
            text.replace(
                "DriverInitFlags: 0",
                "DriverInitFlags: WdfDriverInitNonPnpDriver",
            ),
        )
        .unwrap();
        let error = check(&dir).unwrap_err();
        assert!(
            format!("{error:#}").contains("WdfDriverInitNonPnpDriver"),
            "{error:#}"
        );
        // No EvtDriverDeviceAdd.
        fs::write(
            &driver,
            text.replace(
                "EvtDriverDeviceAdd: callback(",
                "EvtDriverDeviceAdd: None, //",
            ),
        )
        .unwrap();
        let error = check(&dir).unwrap_err();
        assert!(
            format!("{error:#}").contains("PnP function driver"),
            "{error:#}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_repository_sample_passes() {
        check(&crate::workspace_root()).unwrap();
    }
}
