//! What the stage needs from the machine, and installing it where possible.
//!
//! | need | how the stage gets it |
//! |---|---|
//! | `wine`, `wineserver` (64-bit Wine) | apt: `wine`, `wine64` |
//! | `x86_64-w64-mingw32-gcc` (links `hotswapctl.exe`, builds the shim) | apt: `gcc-mingw-w64-x86-64` |
//! | the Rust target `x86_64-pc-windows-gnu` | rustup |
//!
//! apt is used only as root (no sudo prompt in the middle of a build) and only with
//! `--no-install-recommends`; nothing is installed anywhere else (the prefix and every file
//! of the stage live under `target/wine/`). Where the tools are missing and cannot be
//! installed, the stage is skipped with a loud line saying how to install them, except
//! under `CI=true`, where a skip is a failure ([`Missing::verdict`]).

use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use super::shim;

/// The Debian packages of the stage.
pub const PACKAGES: [&str; 3] = ["wine", "wine64", "gcc-mingw-w64-x86-64"];

/// The Rust target of `hotswapctl.exe`.
pub const CLIENT_TARGET: &str = "x86_64-pc-windows-gnu";

/// The programs the stage runs.
const PROGRAMS: [&str; 3] = ["wine", "wineserver", shim::COMPILER];

/// Why the stage cannot run here.
#[derive(Debug, PartialEq, Eq)]
pub struct Missing(pub String);

impl Missing {
    /// Skip (`Ok`) or, under `CI=true` (`ci`), fail: both with the reason and how to
    /// install.
    ///
    /// # Errors
    /// Under CI.
    pub fn verdict(&self, ci: bool) -> Result<()> {
        let how = format!(
            "install with `sudo apt-get install --no-install-recommends {}` (Debian/Ubuntu; other systems: 64-bit Wine and mingw-w64's x86_64 gcc), then rerun `cargo xtask wine`",
            PACKAGES.join(" ")
        );
        if ci {
            bail!(
                "the Wine stage is required in CI (CI=true) but cannot run: {}; {how}",
                self.0
            );
        }
        let rule = "*".repeat(78);
        println!("xtask: {rule}");
        println!(
            "xtask: SKIPPED: the Wine stage (real images under Wine) did not run: {}",
            self.0
        );
        println!("xtask: {how}");
        println!("xtask: (under CI=true this is a failure)");
        println!("xtask: {rule}");
        Ok(())
    }
}

/// Whether `CI=true` (case-insensitive), as CI services set it.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true"))
}

/// Whether `program` can be run (it answers `--version`).
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The programs missing from `PATH`.
fn missing_programs() -> Vec<&'static str> {
    PROGRAMS.into_iter().filter(|p| !runs(p)).collect()
}

/// Whether this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Makes sure the programs and the Rust target are there, installing what is missing when
/// it can (module docs).
///
/// # Errors
/// `Ok(Err(Missing))` when the stage cannot run here; `Err` when an install was tried and
/// failed.
pub fn ensure() -> Result<Result<(), Missing>> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Ok(Err(Missing(format!(
            "it runs x64 images under 64-bit Wine on x86-64 Linux (this is {} {})",
            std::env::consts::OS,
            std::env::consts::ARCH
        ))));
    }
    let missing = missing_programs();
    if !missing.is_empty() {
        if !(is_root() && runs("apt-get")) {
            return Ok(Err(Missing(format!(
                "{} not found, and installing needs root and apt-get",
                missing.join(", ")
            ))));
        }
        apt_install()?;
        let still = missing_programs();
        if !still.is_empty() {
            bail!(
                "{} still missing after apt-get install {}",
                still.join(", "),
                PACKAGES.join(" ")
            );
        }
    }
    crate::toolchain::ensure_targets(&[CLIENT_TARGET])?;
    Ok(Ok(()))
}

/// `apt-get update` and `apt-get install` of [`PACKAGES`].
fn apt_install() -> Result<()> {
    println!(
        "xtask: wine: installing {} with apt-get (one time)",
        PACKAGES.join(" ")
    );
    let apt = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(PACKAGES);
    apt(&install)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_passes_outside_ci_and_fails_in_ci() {
        let missing = Missing("wine not found".to_owned());
        assert!(missing.verdict(false).is_ok());
        let error = missing.verdict(true).unwrap_err().to_string();
        assert!(error.contains("required in CI"), "{error}");
        assert!(error.contains("wine not found"), "{error}");
        assert!(
            error.contains(
                "apt-get install --no-install-recommends wine wine64 gcc-mingw-w64-x86-64"
            ),
            "{error}"
        );
    }
}
