//! `cargo xtask wine`: the real x64 driver images and the Windows client under Wine, an
//! NT implementation we did not write.
//!
//! Wine loads kernel drivers in user mode, in `winedevice.exe`, against its own
//! `ntoskrnl.exe`, and runs Windows programs. It has no DriverProxy, so the driver takes
//! the library's fallback path, the one every Windows before 11 24H2 takes.
//!
//! # What the stage does
//!
//! 1. Installs what is missing where it can ([`install`]: apt as root, rustup); where it
//!    cannot, skips loudly, or fails under `CI=true`.
//! 2. Builds `hotswapctl.exe` for `x86_64-pc-windows-gnu` (linked by mingw-w64) and the x64
//!    images v1 and v2 (the `driver` module).
//! 3. Makes a fresh prefix `target/wine/prefix` ([`session`]), copies the client and the
//!    images to `C:\hotswap\`, adds the client's `ProcessPrng` shim if this Wine lacks it
//!    ([`shim`]), and registers the image under test (v1, or `--image`) as the kernel
//!    service `HotSwapSampleWdm` (`sc create … type= kernel`).
//! 4. Runs the client against the driver ([`checks`]): start, `reset`, `version`,
//!    `transform`, `stats`, every malformed request of the protocol's table, a stress of 2
//!    threads, a bounded `watch`, the worker's ticks; the HLK-style scenarios through the
//!    service lab (smoke and unload/reload run; swap-stress, worker-swap and
//!    disable/enable are skipped with the reason); a cold swap v1 → v2 → v1; stop.
//! 5. Stops the session (`wineserver -k`, then any process left, by id), reads Wine's log
//!    ([`log`]): the driver's `DbgPrint` lines (the fallback announced at each load, with a
//!    reason Wine's log explains; an unload for each), the routines Wine lacks, no fault.
//! 6. Prints the numbers and the wall time.
//!
//! Files: `target/wine/wine.log` (the system processes' log), `target/wine/outputs/`
//! (each command: `.cmd`, `.out`, `.err`), the prefix with `C:\hotswap\scenarios.xml`
//! (`JUnit`).

mod checks;
mod install;
mod log;
mod parse;
mod session;
mod shim;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use hotswap_sample_core::names::WDM_SERVICE_NAME;

use crate::driver::{self, Version};
use checks::{Checks, Images};
use session::Session;

/// Options of `cargo xtask wine`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Register this image as the service instead of the freshly built v1 (a v1 build, for
    /// instance a modified copy, to see the stage fail).
    pub image: Option<PathBuf>,
}

/// Where the stage keeps its files.
fn stage_dir(root: &Path) -> PathBuf {
    root.join("target").join("wine")
}

/// Copies `from` to `dir/name`; returns the Windows path `C:\hotswap\name`.
fn install_file(drive_c: &Path, from: &Path, name: &str) -> Result<String> {
    let dir = drive_c.join("hotswap");
    fs::create_dir_all(&dir)?;
    fs::copy(from, dir.join(name))
        .with_context(|| format!("copying {} into the prefix", from.display()))?;
    Ok(format!(r"C:\hotswap\{name}"))
}

/// The Wine stage (module docs): skipped loudly where Wine cannot be installed, except
/// under `CI=true`.
///
/// # Errors
/// When the stage fails: the first check that failed, with what was expected and what came.
pub fn run_stage(root: &Path, options: &Options) -> Result<()> {
    let started = Instant::now();
    println!("xtask: wine: the real x64 images and hotswapctl.exe under Wine");
    if let Err(missing) = install::ensure()? {
        return missing.verdict(install::in_ci());
    }
    let client = build_client(root)?;
    let out = driver::default_out_dir(root);
    let target_dir = driver::target_dir(root);
    let arch = driver::ARCHES[0];
    let v1 = driver::build_one(root, &target_dir, &out, arch, Version::V1)?;
    let v2 = driver::build_one(root, &target_dir, &out, arch, Version::V2)?;
    let under_test = options.image.clone().unwrap_or(v1.path);
    let built = started.elapsed();

    let dir = stage_dir(root);
    let mut session = Session::start(&dir)?;
    let (exe, images) = set_up(root, &mut session, &client, &under_test, &v2.path)?;
    let checked = Instant::now();
    let mut checks = Checks::new(&mut session, exe);
    let result = run_checks(&mut checks, &images);
    let tally = checks.tally;
    let log_path = session.log().to_path_buf();
    // Everything started is stopped before the verdict, and before the log is read.
    drop(session);
    let failed = || {
        format!(
            "the Wine stage FAILED (Wine's log: {}; each command's output: {})",
            log_path.display(),
            dir.join("outputs").display()
        )
    };
    result.with_context(failed)?;
    let log = fs::read_to_string(&log_path)?;
    let report = log::check(&log).with_context(failed)?;
    print_summary(&tally, &report);
    println!(
        "xtask: wine: wall time:           {:.1?} (builds {:.1?}, Wine {:.1?})",
        started.elapsed(),
        built,
        checked.elapsed()
    );
    println!("xtask: wine: PASS");
    Ok(())
}

/// Puts the client and the images into the prefix, the shim if this Wine needs it, and
/// registers the image under test as the kernel service. Returns the client's and the
/// images' Windows paths.
fn set_up(
    root: &Path,
    session: &mut Session,
    client: &Path,
    under_test: &Path,
    v2: &Path,
) -> Result<(String, Images)> {
    let drive_c = session.drive_c();
    let exe = install_file(&drive_c, client, "hotswapctl.exe")?;
    let name = under_test
        .file_name()
        .and_then(|name| name.to_str())
        .context("the image's file name")?;
    let images = Images {
        under_test: install_file(&drive_c, under_test, &format!("test_{name}"))?,
        v2: install_file(&drive_c, v2, "hotswap_sample_v2.sys")?,
    };
    if shim::needed(&drive_c)? {
        shim::build(root, &drive_c.join("hotswap"))?;
        session.set_client_overrides(shim::OVERRIDE);
        println!(
            "xtask: wine: this Wine lacks ProcessPrng (bcryptprimitives.dll, added in Wine 8.13): the client runs with the shim xtask/wine/bcryptprimitives.c"
        );
    } else {
        println!("xtask: wine: this Wine has ProcessPrng: no shim");
    }
    session
        .wine(
            "sc",
            &[
                "create",
                WDM_SERVICE_NAME,
                "type=",
                "kernel",
                "start=",
                "demand",
                "binPath=",
                &images.under_test,
            ],
            Duration::from_mins(1),
        )?
        .ok()?;
    println!(
        "xtask: wine: service {WDM_SERVICE_NAME} (kernel) -> {} ({})",
        images.under_test,
        under_test.display()
    );
    Ok((exe, images))
}

/// `items` joined with commas.
fn list<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    items
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The numbers of a passed stage.
fn print_summary(tally: &checks::Tally, report: &log::LogReport) {
    let mut said: Vec<&String> = report.driver_lines.iter().collect();
    said.sort();
    said.dedup();
    println!(
        "xtask: wine: the driver said (DbgPrint, {} lines; distinct):",
        report.driver_lines.len()
    );
    for line in said {
        println!("xtask: wine:     {line}");
    }
    println!(
        "xtask: wine: Wine's kernel lacks, so the library fell back: {}",
        list(&report.missing_routines)
    );
    println!(
        "xtask: wine: the fallback's reason, as the driver said: {}",
        list(&report.fallback_reasons)
    );
    let allocator = if report.missing_routines.contains("ExAllocatePool2") {
        "ExAllocatePoolWithTag, zeroed by the library (Wine lacks ExAllocatePool2)"
    } else {
        "ExAllocatePool2"
    };
    println!(
        "xtask: wine: worker thread:       the library's fallback thread, ticked {} times; its storage from {allocator}",
        tally.worker_ticks
    );
    println!(
        "xtask: wine: images loaded by winedevice.exe: {}",
        list(&report.images)
    );
    println!(
        "xtask: wine: requests sent:       {} (the scenarios' own not counted)",
        tally.requests
    );
    println!(
        "xtask: wine: statuses checked:    {} malformed requests, each its documented NTSTATUS",
        tally.statuses
    );
    println!(
        "xtask: wine: scenarios run:       {} ({})",
        tally.scenarios_run.len(),
        list(&tally.scenarios_run)
    );
    println!(
        "xtask: wine: scenarios skipped:   {} ({})",
        tally.scenarios_skipped.len(),
        list(tally.scenarios_skipped.iter().map(|(name, _)| name))
    );
    println!(
        "xtask: wine: cold swaps:          {}; driver loads {} (each announcing the fallback), unloads {}",
        tally.cold_swaps,
        report.loads.len(),
        report.unloads
    );
}

/// The client's checks, in order (module docs, step 4).
fn run_checks(checks: &mut Checks<'_>, images: &Images) -> Result<()> {
    checks.start()?;
    checks.requests()?;
    checks.scenarios(r"C:\hotswap\scenarios.xml")?;
    checks.cold_swaps(images)?;
    checks.stop()
}

/// Lints and builds `hotswapctl.exe` for the GNU target; returns its path.
fn build_client(root: &Path) -> Result<PathBuf> {
    let target = install::CLIENT_TARGET;
    crate::cargo(&[
        "clippy",
        "-p",
        "hotswapctl",
        "--target",
        target,
        "--",
        "-D",
        "warnings",
    ])?;
    crate::cargo(&["build", "--release", "-p", "hotswapctl", "--target", target])?;
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    Ok(base.join(target).join("release").join("hotswapctl.exe"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of `image` whose build tag `"hotswap v1"` reads `"hotswap v7"`: a v1 that
    /// answers VERSION wrongly, everything else intact (same length, same code).
    fn version_string_mutant(image: &Path, out: &Path) -> PathBuf {
        let mut bytes = fs::read(image).unwrap();
        let tag = b"hotswap v1";
        let at: Vec<usize> = bytes
            .windows(tag.len())
            .enumerate()
            .filter(|(_, window)| window == tag)
            .map(|(at, _)| at)
            .collect();
        assert_eq!(
            at.len(),
            1,
            "the build tag must occur once in {}",
            image.display()
        );
        bytes[at[0] + tag.len() - 1] = b'7';
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        fs::write(out, bytes).unwrap();
        out.to_path_buf()
    }

    /// The stage fails, with a message naming the wrong answer, when the driver answers
    /// wrongly. Runs Wine (about 30 s after the one-time install):
    /// `cargo test -p xtask -- --ignored a_mutant_image_fails_the_stage`.
    #[test]
    #[ignore = "runs Wine; by hand: cargo test -p xtask -- --ignored a_mutant_image_fails_the_stage"]
    fn a_mutant_image_fails_the_stage() {
        let root = crate::workspace_root();
        let out = driver::default_out_dir(&root);
        let v1 = driver::build_one(
            &root,
            &driver::target_dir(&root),
            &out,
            driver::ARCHES[0],
            Version::V1,
        )
        .unwrap();
        let mutant = version_string_mutant(
            &v1.path,
            &stage_dir(&root)
                .join("mutant")
                .join("hotswap_sample_v1_v7tag.sys"),
        );
        let error = run_stage(
            &root,
            &Options {
                image: Some(mutant),
            },
        )
        .expect_err("the stage must fail on a driver that answers wrongly");
        let message = format!("{error:#}");
        println!("{message}");
        assert!(message.contains("the Wine stage FAILED"), "{message}");
        assert!(
            message.contains("VERSION under Wine: expected `v1 answers: build \"hotswap v1\""),
            "{message}"
        );
        assert!(message.contains("build \"hotswap v7\""), "{message}");
    }
}
