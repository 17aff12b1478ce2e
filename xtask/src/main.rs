//! `cargo xtask`: the project's automation. See `cargo xtask --help`.

mod disasm;
mod driver;
mod kmdf;
mod toolchain;
mod verify;
mod wine;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// The Windows targets every library build is checked for.
pub const WINDOWS_TARGETS: [&str; 2] = ["x86_64-pc-windows-msvc", "aarch64-pc-windows-msvc"];

/// The other Linux the host kernel must keep building for (without the parts that run x64
/// code).
pub const AARCH64_LINUX: &str = "aarch64-unknown-linux-gnu";

#[derive(Parser)]
#[command(about = "driver-proxy project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks: toolchain, fmt, clippy (Linux x86-64 and aarch64, both Windows
    /// targets), the driver images and their verification, tests, loom models, and the
    /// disassembly check of `Wrapped<F>` calls.
    Test,
    /// The main job: builds the driver images if needed, loads v1.sys into the in-process
    /// host kernel, stresses it with hotswapctl while hot-swapping it to v2.sys, and prints
    /// what each build served and what the swap cost (x86-64 Linux).
    Demo {
        /// Client threads, each with its own handle.
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Requests per thread.
        #[arg(long, default_value_t = 1_000_000)]
        requests: u64,
    },
    /// Only the disassembly check of `Wrapped<F>` calls.
    Disasm,
    /// Cross-links a driver crate into `.sys` images. Without `--manifest-path`: the WDM
    /// sample, v1 and v2 for x64 and ARM64 (default:
    /// `target/drivers/<amd64|arm64>/hotswap_sample_{v1,v2}.sys`, plus install packages
    /// `target/drivers/<arch>/<v1|v2>/hotswap_sample_wdm.{sys,pdb,inf}`), and the x64 test
    /// image `target/drivers/amd64/hotswap_sample_v2_missing_unload.sys` (v2 that leaves the
    /// `DriverUnload` endpoint out of its swap; not packaged). With `--manifest-path`: that
    /// crate, into `<its target dir>/drivers/<arch>/<name>.sys` (and `.map`, `.pdb`), each
    /// image verified.
    BuildDriver {
        /// Write the images here instead of `target/drivers` (the sample's) or `<the
        /// crate's target dir>/drivers`.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Build this driver crate (its `Cargo.toml`) instead of the sample.
        #[arg(long)]
        manifest_path: Option<PathBuf>,
        /// Its binary target, when it has several.
        #[arg(long, requires = "manifest_path")]
        bin: Option<String>,
        /// Name the image `<NAME>.sys` (default: the binary's name).
        #[arg(long, requires = "manifest_path")]
        name: Option<String>,
        /// Features to enable (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', requires = "manifest_path")]
        features: Vec<String>,
        /// Do not enable the crate's default features.
        #[arg(long, requires = "manifest_path")]
        no_default_features: bool,
        /// Build for these architectures only (`amd64`, `arm64`; default both).
        #[arg(long, value_delimiter = ',', requires = "manifest_path", value_parser = parse_arch)]
        arch: Vec<driver::Arch>,
    },
    /// The real x64 images and the Windows client under Wine: loads v1.sys as a kernel
    /// service in Wine's winedevice.exe, runs hotswapctl.exe against it (requests, every
    /// malformed request, stress, watch, scenarios, cold swap v1 -> v2 -> v1) and checks
    /// Wine's log. Installs Wine and mingw-w64 when root with apt; otherwise skips loudly
    /// (fails under CI=true).
    Wine {
        /// Register this image (a v1 build) instead of the freshly built v1, e.g. a
        /// modified copy, to see the stage fail.
        #[arg(long)]
        image: Option<PathBuf>,
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
        Task::Demo { threads, requests } => demo(threads, requests),
        Task::Disasm => disasm::check(&workspace_root()),
        Task::Wine { image } => wine::run_stage(&workspace_root(), &wine::Options { image }),
        Task::BuildDriver {
            out_dir,
            manifest_path: Some(manifest),
            bin,
            name,
            features,
            no_default_features,
            arch,
        } => {
            let targets: Vec<&str> = if arch.is_empty() {
                WINDOWS_TARGETS.to_vec()
            } else {
                arch.iter().map(|a| a.target).collect()
            };
            toolchain::ensure_targets(&targets)?;
            driver::build_crate(&driver::CrateBuild {
                manifest,
                bin,
                name,
                features,
                no_default_features,
                arches: arch,
                out_dir,
            })
            .map(|_| ())
        }
        Task::BuildDriver {
            out_dir,
            manifest_path: None,
            ..
        } => {
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

/// `--arch` of `cargo xtask build-driver`.
fn parse_arch(name: &str) -> Result<driver::Arch, String> {
    driver_proxy_build::Arch::from_name(name)
        .ok_or_else(|| format!("unknown architecture {name:?} (amd64, arm64)"))
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

/// `cargo xtask demo`.
fn demo(threads: u32, requests: u64) -> Result<()> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        bail!(
            "the demo runs the x64 driver images in the host kernel, which needs x86-64 Linux (this is {} {})",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    }
    let root = workspace_root();
    toolchain::ensure_targets(&WINDOWS_TARGETS)?;
    let out = driver::default_out_dir(&root);
    println!("xtask: building the driver images (incremental)");
    driver::build_all(&root, &out)?;
    let images = out.join("amd64");
    let images = images.to_str().context("non-UTF-8 path")?;
    let (threads, requests) = (threads.to_string(), requests.to_string());
    cargo(&[
        "run",
        "--quiet",
        "--release",
        "-p",
        "hotswapctl",
        "--",
        "--backend",
        "host",
        "--images",
        images,
        "demo",
        "--threads",
        &threads,
        "--requests",
        &requests,
    ])
}

/// Clippy for the other targets: both Windows targets (what must build there) and aarch64
/// Linux.
fn lint_other_targets() -> Result<()> {
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
    // aarch64 Linux: the library, the host kernel (without its x64-only parts), the sample
    // core and the client must keep building (libraries and binaries; the benchmarks'
    // dependencies need a C cross-compiler, so no --all-targets).
    cargo(&[
        "clippy",
        "--target",
        AARCH64_LINUX,
        "-p",
        "driver-proxy",
        "-p",
        "driver-proxy-host",
        "-p",
        "hotswap-sample-core",
        "-p",
        "hotswapctl",
        "--",
        "-D",
        "warnings",
    ])?;
    Ok(())
}

/// The drivers' run-time crate (`driver-rt`, crate `driver-proxy-rt`: memcpy, memset,
/// __chkstk, … and the panic handler's bug check, which the sample, the example driver and
/// the README guide's driver link): a member of this workspace, so formatted, linted and
/// tested for the host with the rest; what it compiles differs on each Windows target (the
/// x64 routines under their C names, the ARM64 imports, the kernel-only items), so clippy and
/// its docs (warnings denied) for both.
fn lint_driver_rt() -> Result<()> {
    for target in WINDOWS_TARGETS {
        cargo(&[
            "clippy",
            "-p",
            "driver-proxy-rt",
            "--target",
            target,
            "--",
            "-D",
            "warnings",
        ])?;
        cargo_with_env(
            &[
                "doc",
                "-p",
                "driver-proxy-rt",
                "--no-deps",
                "--target",
                target,
            ],
            &[("RUSTDOCFLAGS", "-D warnings")],
        )?;
    }
    Ok(())
}

/// The library as a published crate: its docs build for both Windows targets (what docs.rs
/// builds, warnings denied), and `cargo publish --dry-run` packages and verifies it.
fn package_checks() -> Result<()> {
    for target in WINDOWS_TARGETS {
        cargo_with_env(
            &["doc", "-p", "driver-proxy", "--no-deps", "--target", target],
            &[("RUSTDOCFLAGS", "-D warnings")],
        )?;
    }
    cargo(&[
        "publish",
        "--dry-run",
        "--allow-dirty",
        "-p",
        "driver-proxy",
    ])
}

/// The example driver (`examples/scratchpad`, its own workspace): formatting, clippy for
/// both Windows targets (every feature) and for the Linux host (its tests), its images built
/// with the generic build command and verified (v1 and v2 for x64 and ARM64, the x64 image
/// of feature `test-leak-pool`), and its tests through the harness, which must find every
/// image.
fn example_checks(root: &Path) -> Result<()> {
    const MANIFEST: &str = "examples/scratchpad/Cargo.toml";
    cargo(&["fmt", "--manifest-path", MANIFEST, "--check"])?;
    for target in WINDOWS_TARGETS {
        for features in ["", "v2", "test-leak-pool"] {
            let mut args = vec!["clippy", "--manifest-path", MANIFEST, "--target", target];
            if !features.is_empty() {
                args.extend(["--features", features]);
            }
            args.extend(["--", "-D", "warnings"]);
            cargo(&args)?;
        }
    }
    cargo(&[
        "clippy",
        "--manifest-path",
        MANIFEST,
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    let manifest = root.join(MANIFEST);
    let amd64 = driver_proxy_build::AMD64;
    for (name, features, arches) in [
        ("scratchpad_v1", vec![], vec![]),
        ("scratchpad_v2", vec!["v2".to_owned()], vec![]),
        (
            "scratchpad_leak",
            vec!["test-leak-pool".to_owned()],
            vec![amd64],
        ),
    ] {
        driver::build_crate(&driver::CrateBuild {
            manifest: manifest.clone(),
            name: Some(name.to_owned()),
            features,
            arches,
            ..driver::CrateBuild::default()
        })?;
    }
    cargo_with_env(
        &["test", "--manifest-path", MANIFEST],
        &[("DRIVER_PROXY_REQUIRE_IMAGES", "1")],
    )
}

fn test() -> Result<()> {
    let root = workspace_root();
    toolchain::ensure_targets(&[WINDOWS_TARGETS[0], WINDOWS_TARGETS[1], AARCH64_LINUX])?;
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
    lint_other_targets()?;
    lint_driver_rt()?;
    // The WDM sample (its own workspace): fmt, clippy for both Windows targets and both
    // versions (and the x64 test image's feature), then the four images and the test image,
    // each verified.
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
    // Every image's build (both versions for both targets, the test images for x64), linted
    // with its target and features.
    for (arch, version) in driver::builds() {
        let mut args = vec![
            "clippy",
            "--manifest-path",
            driver::MANIFEST,
            "--target",
            arch.target,
            "--target-dir",
            wdm_target_dir,
        ];
        args.extend(version.features());
        args.extend(["--", "-D", "warnings"]);
        cargo(&args)?;
    }
    for image in driver::build_all(&root, &driver::default_out_dir(&root))? {
        verify::verify_file(
            &image.path,
            Some(image.arch.machine),
            Some(&image.map),
            false,
        )?;
    }
    // The x64 images and the Windows client under Wine (skipped loudly where Wine cannot be
    // installed; required under CI=true).
    wine::run_stage(&root, &wine::Options::default())?;
    // The images were built above: the end-to-end tests must run, not skip.
    cargo_with_env(
        &["test", "--workspace"],
        &[("DRIVER_PROXY_REQUIRE_IMAGES", "1")],
    )?;
    cargo(&["test", "-p", "hotswap-sample-core", "--features", "v2"])?;
    // The example driver, built, verified and tested like any driver author's.
    example_checks(&root)?;
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
    package_checks()?;
    println!("xtask: all checks passed");
    Ok(())
}
