//! `cargo xtask build-driver`: cross-links the WDM sample (`sample/wdm`) into kernel driver
//! images, v1 and v2 for x64 and ARM64, on any host, with rustup's stable toolchain only.
//!
//! # Where the images go
//!
//! `target/drivers/` under the repository root (or `--out-dir`), whatever `CARGO_TARGET_DIR`
//! says, so that tests, the demo and people find them in one place:
//!
//! ```text
//! target/drivers/<arch>/hotswap_sample_v1.sys   v1 image   (<arch>: amd64, arm64)
//! target/drivers/<arch>/hotswap_sample_v1.map   its linker map (for `verify`)
//! target/drivers/<arch>/hotswap_sample_v2.sys   v2 image
//! target/drivers/<arch>/hotswap_sample_v2.map
//! target/drivers/<arch>/v1/                     install package of v1:
//!     hotswap_sample_wdm.sys                    the same image under the name the INF
//!     hotswap_sample_wdm.pdb                    expects, its PDB (the image names it),
//!     hotswap_sample_wdm.inf                    and inf/hotswap_sample_wdm.inf
//! target/drivers/<arch>/v2/                     the same for v2
//! ```
//!
//! The side-by-side names (`_v1`, `_v2`) are what a loader swapping one image for the other
//! wants; the package directories are what `pnputil /add-driver` wants (`inf/README.md`):
//! one INF, one image name, per package.
//!
//! # How
//!
//! `sample/wdm` is its own workspace (the root one excludes it), so it is built with
//! `--manifest-path`, in release (fat LTO, `panic = "abort"`), into its own target directory
//! (`<target>/sample-wdm`, where `<target>` is `CARGO_TARGET_DIR` or `target/`). The kernel
//! link flags come from its `build.rs`; this task adds `/MAP:<file>` so that `verify` can
//! check that the entry point is `DriverEntry`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The WDM sample's manifest, relative to the repository root.
pub const MANIFEST: &str = "sample/wdm/Cargo.toml";
/// The name cargo gives the image (`<bin>.exe`), without extension.
const BIN: &str = "hotswap_sample_wdm";
/// The INF of the WDM build, relative to the repository root.
const INF: &str = "inf/hotswap_sample_wdm.inf";

/// An architecture the images are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    /// Directory name, as Windows (and INF decorations) spell the architecture.
    pub name: &'static str,
    /// The Rust target.
    pub target: &'static str,
    /// The PE machine (`IMAGE_FILE_MACHINE_*`) its images must have.
    pub machine: u16,
}

/// x64 and ARM64.
pub const ARCHES: [Arch; 2] = [
    Arch {
        name: "amd64",
        target: "x86_64-pc-windows-msvc",
        machine: object::pe::IMAGE_FILE_MACHINE_AMD64,
    },
    Arch {
        name: "arm64",
        target: "aarch64-pc-windows-msvc",
        machine: object::pe::IMAGE_FILE_MACHINE_ARM64,
    },
];

/// A build of the sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Version 1 (no features).
    V1,
    /// Version 2 (feature `v2`).
    V2,
}

impl Version {
    /// Both versions.
    pub const ALL: [Self; 2] = [Self::V1, Self::V2];

    /// `v1` or `v2`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }

    /// The cargo features of this build.
    const fn features(self) -> &'static [&'static str] {
        match self {
            Self::V1 => &[],
            Self::V2 => &["--features", "v2"],
        }
    }
}

/// One built image and the files beside it.
#[derive(Clone, Debug)]
pub struct Image {
    /// Its architecture.
    pub arch: Arch,
    /// Its version.
    pub version: Version,
    /// `<out>/<arch>/hotswap_sample_<version>.sys`.
    pub path: PathBuf,
    /// Its linker map.
    pub map: PathBuf,
    /// The package directory holding `hotswap_sample_wdm.{sys,pdb,inf}`.
    pub package: PathBuf,
}

/// The default output directory: `target/drivers` under the repository root.
#[must_use]
pub fn default_out_dir(root: &Path) -> PathBuf {
    root.join("target").join("drivers")
}

/// Where the image of `version` for `arch` is written under `out`.
#[must_use]
pub fn image_path(out: &Path, arch: Arch, version: Version) -> PathBuf {
    out.join(arch.name)
        .join(format!("hotswap_sample_{}.sys", version.name()))
}

/// The cargo target directory of the sample's builds: `<CARGO_TARGET_DIR or target>/sample-wdm`.
#[must_use]
pub fn target_dir(root: &Path) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    base.join("sample-wdm")
}

/// Builds all four images (both versions for both architectures) into `out`.
///
/// # Errors
/// When a build fails or a file cannot be written.
pub fn build_all(root: &Path, out: &Path) -> Result<Vec<Image>> {
    let target_dir = target_dir(root);
    let mut images = Vec::new();
    for arch in ARCHES {
        for version in Version::ALL {
            images.push(build_one(root, &target_dir, out, arch, version)?);
        }
    }
    println!("xtask: driver images in {}:", out.display());
    for image in &images {
        let size = fs::metadata(&image.path).map_or(0, |m| m.len());
        println!(
            "    {} {}: {} ({size} bytes; package {})",
            image.arch.name,
            image.version.name(),
            image.path.display(),
            image.package.display()
        );
    }
    Ok(images)
}

/// Builds one image with `target_dir` as cargo's target directory and writes it (and its
/// map and package directory) under `out`.
///
/// # Errors
/// When the build fails or a file cannot be written.
pub fn build_one(
    root: &Path,
    target_dir: &Path,
    out: &Path,
    arch: Arch,
    version: Version,
) -> Result<Image> {
    let path = image_path(out, arch, version);
    let dir = path
        .parent()
        .context("image path has a parent")?
        .to_path_buf();
    let package = dir.join(version.name());
    fs::create_dir_all(&package).with_context(|| format!("creating {}", package.display()))?;
    let map = path.with_extension("map");
    let map_arg = format!("link-arg=/MAP:{}", map.display());
    let target_dir_arg = target_dir.to_str().context("non-UTF-8 target directory")?;
    let mut args = vec![
        "rustc",
        "--manifest-path",
        MANIFEST,
        "--release",
        "--target",
        arch.target,
        "--bin",
        BIN,
        "--target-dir",
        target_dir_arg,
    ];
    args.extend(version.features());
    args.extend(["--", "-C", &map_arg]);
    crate::cargo(&args)?;

    let built = target_dir.join(arch.target).join("release");
    let exe = built.join(format!("{BIN}.exe"));
    copy(&exe, &path)?;
    copy(&exe, &package.join(format!("{BIN}.sys")))?;
    copy(
        &built.join(format!("{BIN}.pdb")),
        &package.join(format!("{BIN}.pdb")),
    )?;
    copy(&root.join(INF), &package.join("hotswap_sample_wdm.inf"))?;
    Ok(Image {
        arch,
        version,
        path,
        map,
        package,
    })
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}
