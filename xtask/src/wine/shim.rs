//! The client's `ProcessPrng` shim, for Wine releases that lack it.
//!
//! Rust's standard library (1.78 and later) imports `ProcessPrng` from
//! `bcryptprimitives.dll` for its random seeds, so every Rust program for Windows needs it
//! to start. Wine added the DLL in 8.13; **Wine 8.0** (Debian 12) lacks it, and
//! `hotswapctl.exe` fails to start there (`err:module:import_dll Library
//! bcryptprimitives.dll … not found`, status `c0000135`).
//!
//! [`needed`] asks the prefix, not a version number: after `wineboot --init` a prefix's
//! `C:\windows\system32` holds Wine's own DLLs as PE files, so the shim is needed exactly
//! when `system32\bcryptprimitives.dll` is missing or does not export `ProcessPrng`. With a
//! newer Wine it is then simply not used (the stage says which). By hand:
//!
//! ```text
//! x86_64-w64-mingw32-objdump -p target/wine/prefix/drive_c/windows/system32/bcryptprimitives.dll | grep ProcessPrng
//! ```
//!
//! [`build`] compiles `xtask/wine/bcryptprimitives.c` (one function, documented there) with
//! mingw-w64 into a `bcryptprimitives.dll` next to `hotswapctl.exe`, and the session tells
//! the client's processes, and only them, to load it (`bcryptprimitives=n`). The driver
//! never sees it: nothing the driver needs is shimmed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use object::{Object, read::pe::PeFile64};

/// The shim's C source and module definition, relative to the repository root.
const SOURCE: &str = "xtask/wine/bcryptprimitives.c";
const DEFINITION: &str = "xtask/wine/bcryptprimitives.def";

/// The `WINEDLLOVERRIDES` entry that makes the client load the shim.
pub const OVERRIDE: &str = "bcryptprimitives=n";

/// The mingw-w64 C compiler for x64.
pub const COMPILER: &str = "x86_64-w64-mingw32-gcc";

/// Whether the Wine behind the prefix whose `C:` drive is `drive_c` lacks `ProcessPrng`.
///
/// # Errors
/// When Wine's DLL exists but cannot be read or parsed.
pub fn needed(drive_c: &Path) -> Result<bool> {
    let dll = drive_c
        .join("windows")
        .join("system32")
        .join("bcryptprimitives.dll");
    if !dll.exists() {
        return Ok(true);
    }
    let data = fs::read(&dll).with_context(|| format!("reading {}", dll.display()))?;
    Ok(!exports(&data, "ProcessPrng")
        .with_context(|| format!("reading the exports of {}", dll.display()))?)
}

/// Whether the PE32+ image `data` exports `name`.
fn exports(data: &[u8], name: &str) -> Result<bool> {
    let file = PeFile64::parse(data)?;
    Ok(file.exports()?.iter().any(|e| e.name() == name.as_bytes()))
}

/// Compiles the shim into `dir/bcryptprimitives.dll` and checks that it exports
/// `ProcessPrng`.
///
/// # Errors
/// When the compiler fails or the DLL lacks the export.
pub fn build(root: &Path, dir: &Path) -> Result<PathBuf> {
    let dll = dir.join("bcryptprimitives.dll");
    let status = Command::new(COMPILER)
        .args(["-O2", "-s", "-shared", "-o"])
        .arg(&dll)
        .arg(root.join(SOURCE))
        .arg(root.join(DEFINITION))
        .arg("-lbcrypt")
        .status()
        .with_context(|| format!("running {COMPILER}"))?;
    if !status.success() {
        bail!("{COMPILER} could not build the ProcessPrng shim ({status})");
    }
    if !exports(&fs::read(&dll)?, "ProcessPrng")? {
        bail!("{} does not export ProcessPrng", dll.display());
    }
    Ok(dll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_source_defines_and_exports_process_prng_only() {
        let root = crate::workspace_root();
        let source = fs::read_to_string(root.join(SOURCE)).unwrap();
        assert!(source.contains("BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)"));
        let definition = fs::read_to_string(root.join(DEFINITION)).unwrap();
        let exported: Vec<&str> = definition
            .lines()
            .skip_while(|line| line.trim() != "EXPORTS")
            .skip(1)
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        assert_eq!(exported, ["ProcessPrng"]);
    }

    #[test]
    fn a_missing_dll_means_the_shim_is_needed() {
        let nowhere = std::env::temp_dir().join("xtask-wine-no-prefix");
        assert!(needed(&nowhere).unwrap());
    }
}
