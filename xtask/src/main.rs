//! `cargo xtask`: the project's automation. See `cargo xtask --help`.

mod disasm;
mod driver;
mod kmdf;
mod toolchain;
mod verify;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// The Windows targets every library build is checked for.
pub const WINDOWS_TARGETS: [&str; 2] = ["x86_64-pc-windows-msvc", "aarch64-pc-windows-msvc"];

#[derive(Parser)]
#[command(about = "driver-proxy project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks: toolchain, fmt, clippy (host and both Windows targets), tests,
    /// and the disassembly check of `Wrapped<F>` calls.
    Test,
    /// Only the disassembly check of `Wrapped<F>` calls.
    Disasm,
    /// Cross-links the WDM sample into v1 and v2 `.sys` images for x64 and ARM64
    /// (default: `target/drivers/<amd64|arm64>/hotswap_sample_{v1,v2}.sys`, plus install
    /// packages `target/drivers/<arch>/<v1|v2>/hotswap_sample_wdm.{sys,pdb,inf}`).
    BuildDriver {
        /// Write the images here instead of `target/drivers`.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Checks a driver image: PE32+, machine, NATIVE subsystem, entry point = DriverEntry,
    /// kernel-only imports, no exported run-time helpers, relocations, checksum.
    Verify {
        /// The `.sys` image.
        image: PathBuf,
        /// The image's linker map (default: the image path with extension `.map`).
        #[arg(long, conflicts_with = "no_map")]
        map: Option<PathBuf>,
        /// Skip the map: check the entry point structurally only.
        #[arg(long)]
        no_map: bool,
        /// Require this machine.
        #[arg(long, value_enum)]
        machine: Option<verify::MachineArg>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Test => test(),
        Task::Disasm => disasm::check(&workspace_root()),
        Task::BuildDriver { out_dir } => {
            let root = workspace_root();
            toolchain::ensure_targets(&WINDOWS_TARGETS)?;
            let out = out_dir.unwrap_or_else(|| driver::default_out_dir(&root));
            driver::build_all(&root, &out).map(|_| ())
        }
        Task::Verify {
            image,
            map,
            no_map,
            machine,
        } => verify::verify_file(
            &image,
            machine.map(verify::MachineArg::machine),
            map.as_deref(),
            no_map,
        )
        .map(|_| ()),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs `cargo` with `args` in the workspace root.
///
/// # Errors
/// When cargo cannot be started or exits unsuccessfully.
pub fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

/// Runs `cargo` with `args` and extra environment variables in the workspace root.
///
/// # Errors
/// When cargo cannot be started or exits unsuccessfully.
pub fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let root = workspace_root();
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v:?} ")).collect();
    println!("xtask: {}cargo {}", shown.concat(), args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&root)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test() -> Result<()> {
    let root = workspace_root();
    toolchain::ensure_targets(&WINDOWS_TARGETS)?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The sample's v2 build (feature `v2`) is a different build of the same code: lint it too.
    cargo(&[
        "clippy",
        "-p",
        "hotswap-sample-core",
        "--all-targets",
        "--features",
        "v2",
        "--",
        "-D",
        "warnings",
    ])?;
    // Everything that must build for Windows: the library, the codegen probe, the sample's
    // core and the client (whose device backend only exists on Windows).
    let windows_packages = [
        "driver-proxy",
        "wrapped-call-probe",
        "hotswap-sample-core",
        "hotswapctl",
    ];
    for target in WINDOWS_TARGETS {
        let mut args = vec!["clippy", "--target", target];
        for package in windows_packages {
            args.extend(["-p", package]);
        }
        args.extend(["--", "-D", "warnings"]);
        cargo(&args)?;
    }
    // The WDM sample (its own workspace): fmt, clippy for both Windows targets and both
    // versions, then the four images, each verified.
    let wdm_target_dir = driver::target_dir(&root);
    let wdm_target_dir = wdm_target_dir.to_str().context("non-UTF-8 path")?;
    cargo(&[
        "fmt",
        "--manifest-path",
        driver::MANIFEST,
        "--all",
        "--check",
    ])?;
    // The KMDF sample (its own workspace) builds only on Windows with the WDK. What Linux
    // can check: its formatting (cargo fmt resolves no dependency; without `--all` it stays
    // inside the crate) and its build configuration.
    cargo(&["fmt", "--manifest-path", kmdf::MANIFEST, "--check"])?;
    kmdf::check(&root)?;
    for target in WINDOWS_TARGETS {
        for features in [&[][..], &["--features", "v2"][..]] {
            let mut args = vec![
                "clippy",
                "--manifest-path",
                driver::MANIFEST,
                "--target",
                target,
                "--target-dir",
                wdm_target_dir,
            ];
            args.extend(features);
            args.extend(["--", "-D", "warnings"]);
            cargo(&args)?;
        }
    }
    for image in driver::build_all(&root, &driver::default_out_dir(&root))? {
        verify::verify_file(
            &image.path,
            Some(image.arch.machine),
            Some(&image.map),
            false,
        )?;
    }
    cargo(&["test", "--workspace"])?;
    cargo(&["test", "-p", "hotswap-sample-core", "--features", "v2"])?;
    // Loom models: every interleaving of the synchronisation behind each crate's `sync` seam.
    let loom_target = root.join("target").join("loom");
    let loom_target = loom_target.to_str().context("non-UTF-8 path")?;
    for (package, preemptions) in [
        // Export resolution: a tiny model, explored with 3 preemptions.
        ("driver-proxy", "3"),
        // The host kernel's drain/stall/repoint protocol: 2 preemptions (~10 s; 3 takes many minutes).
        ("driver-proxy-host", "2"),
    ] {
        cargo_with_env(
            &["test", "--release", "-p", package, "--lib", "loom"],
            &[
                ("RUSTFLAGS", "--cfg loom"),
                ("CARGO_TARGET_DIR", loom_target),
                ("LOOM_MAX_PREEMPTIONS", preemptions),
            ],
        )?;
    }
    disasm::check(&root)?;
    println!("xtask: all checks passed");
    Ok(())
}
