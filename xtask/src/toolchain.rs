//! Makes sure the pinned toolchain has the targets the checks build for.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Adds each of `targets` that rustup does not list as installed for the active toolchain.
///
/// # Errors
/// When rustup cannot be run or fails to add a target.
pub fn ensure_targets(targets: &[&str]) -> Result<()> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the project needs rustup to add the Windows targets)")?;
    let installed = String::from_utf8_lossy(&output.stdout);
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|line| line.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: rustup target add {}", missing.join(" "));
    let status = Command::new("rustup")
        .arg("target")
        .arg("add")
        .args(&missing)
        .status()?;
    if !status.success() {
        bail!("rustup target add {} failed", missing.join(" "));
    }
    Ok(())
}
