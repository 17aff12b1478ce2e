//! `cargo xtask build-driver`: cross-links the WDM sample (`sample/wdm`) into kernel driver
//! images, v1 and v2 for x64 and ARM64 (plus one x64 test image), on any host, with rustup's
//! stable toolchain only.
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
//! target/drivers/amd64/hotswap_sample_v2_missing_unload.sys   test image (x64 only)
//! target/drivers/amd64/hotswap_sample_v2_missing_unload.map
//! ```
//!
//! The **test image** ([`Version::V2MissingUnload`], the sample's feature
//! `test-omit-unload-endpoint`) is v2 whose swap mode re-registers every endpoint id but
//! `DriverUnload`'s: for tests of an incomplete swap, never to ship, so it has no package.
//! It is built for x64 only, with the same target directory and flags as the other x64
//! images, and `cargo xtask test` verifies it like them.
//!
//! The side-by-side names (`_v1`, `_v2`) are what a loader swapping one image for the other
//! wants; the package directories are what `pnputil /add-driver` wants (`inf/README.md`):
//! one INF, one image name, per package.
//!
//! # How
//!
//! With the build library (`driver-build`, crate `driver-proxy-build`), which builds any
//! driver crate the same way. `sample/wdm` is its own workspace (the root one excludes it), so
//! it is built with `--manifest-path`, in release (fat LTO, `panic = "abort"`), into its own
//! target directory (`<target>/sample-wdm`, where `<target>` is `CARGO_TARGET_DIR` or
//! `target/`). The kernel link flags come from its `build.rs` (the library's
//! `emit_link_args`); the library adds `-C linker=rust-lld` and `/MAP:<file>` so that
//! `verify` can check that the entry point is `DriverEntry`.
//!
//! # Any driver crate
//!
//! `cargo xtask build-driver --manifest-path <driver>/Cargo.toml` ([`build_crate`]) builds
//! that crate instead, for both architectures (or `--arch`), with `--features`,
//! `--no-default-features`, `--bin` and `--name` as given, into
//! `<its target dir>/drivers/<arch>/<name>.sys` (or `--out-dir`), with the map and PDB
//! beside it, and verifies each image.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The WDM sample's manifest, relative to the repository root.
pub const MANIFEST: &str = "sample/wdm/Cargo.toml";
/// The name cargo gives the image (`<bin>.exe`), without extension.
const BIN: &str = "hotswap_sample_wdm";
/// The INF of the WDM build, relative to the repository root.
const INF: &str = "inf/hotswap_sample_wdm.inf";

/// An architecture the images are built for (the build library's).
pub use driver_proxy_build::Arch;

/// x64 and ARM64.
pub const ARCHES: [Arch; 2] = driver_proxy_build::ARCHES;

/// A build of the sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Version 1 (no features).
    V1,
    /// Version 2 (feature `v2`).
    V2,
    /// TEST ONLY: version 2 missing an endpoint in swap mode (feature
    /// `test-omit-unload-endpoint`, which implies `v2`): built for [`TEST_IMAGE_ARCH`] only,
    /// not packaged.
    V2MissingUnload,
}

impl Version {
    /// Both versions (the packaged builds, for every architecture).
    pub const ALL: [Self; 2] = [Self::V1, Self::V2];

    /// The test images, built for [`TEST_IMAGE_ARCH`] only and not packaged.
    pub const TEST_IMAGES: [Self; 1] = [Self::V2MissingUnload];

    /// `v1`, `v2` or `v2_missing_unload`: the image's name is `hotswap_sample_<name>.sys`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::V2MissingUnload => "v2_missing_unload",
        }
    }

    /// Whether this is a test image (no install package).
    #[must_use]
    pub const fn is_test_image(self) -> bool {
        matches!(self, Self::V2MissingUnload)
    }

    /// The cargo arguments selecting this build's features (none for v1).
    #[must_use]
    pub const fn features(self) -> &'static [&'static str] {
        match self {
            Self::V1 => &[],
            Self::V2 => &["--features", "v2"],
            Self::V2MissingUnload => &["--features", "test-omit-unload-endpoint"],
        }
    }

    /// This build's features (none for v1).
    #[must_use]
    pub fn feature_names(self) -> &'static [&'static str] {
        match self.features() {
            [_, names @ ..] => names,
            [] => &[],
        }
    }
}

/// The only architecture the test images ([`Version::TEST_IMAGES`]) are built for: x64.
pub const TEST_IMAGE_ARCH: Arch = ARCHES[0];

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
    /// The package directory holding `hotswap_sample_wdm.{sys,pdb,inf}`; `None` for a test
    /// image.
    pub package: Option<PathBuf>,
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

/// Every build [`build_all`] makes, in order: both versions for both architectures, then the
/// test images for [`TEST_IMAGE_ARCH`] only.
pub fn builds() -> impl Iterator<Item = (Arch, Version)> {
    ARCHES
        .into_iter()
        .flat_map(|arch| Version::ALL.map(|version| (arch, version)))
        .chain(Version::TEST_IMAGES.map(|version| (TEST_IMAGE_ARCH, version)))
}

/// Builds all four images (both versions for both architectures), then the test images (x64
/// only), into `out`.
///
/// # Errors
/// When a build fails or a file cannot be written.
pub fn build_all(root: &Path, out: &Path) -> Result<Vec<Image>> {
    let target_dir = target_dir(root);
    let mut images = Vec::new();
    // The test images come last, with the same target directory and flags as the other x64
    // builds: the dependencies of the x64 v2 build are reused, only the sample's own crate
    // is compiled and linked again.
    for (arch, version) in builds() {
        images.push(build_one(root, &target_dir, out, arch, version)?);
    }
    println!("xtask: driver images in {}:", out.display());
    for image in &images {
        let size = fs::metadata(&image.path).map_or(0, |m| m.len());
        let what = match &image.package {
            Some(package) => format!("({size} bytes; package {})", package.display()),
            None => format!("({size} bytes) (test image)"),
        };
        println!(
            "    {} {}: {} {what}",
            image.arch.name,
            image.version.name(),
            image.path.display(),
        );
    }
    Ok(images)
}

/// Builds one image with `target_dir` as cargo's target directory and writes it (and its
/// map and, unless it is a test image, its package directory) under `out`.
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
    let built = driver_proxy_build::DriverBuild::new(root.join(MANIFEST), arch)
        .bin(BIN)
        .name(format!("hotswap_sample_{}", version.name()))
        .features(version.feature_names().iter().copied())
        .target_dir(target_dir)
        .out_dir(out)
        .run()?;
    let (path, map, exe) = (built.image, built.map, built.cargo_output);
    debug_assert_eq!(path, image_path(out, arch, version));
    let dir = path
        .parent()
        .context("image path has a parent")?
        .to_path_buf();
    let built = exe.parent().context("cargo's output has a parent")?;
    let package = if version.is_test_image() {
        None
    } else {
        let package = dir.join(version.name());
        fs::create_dir_all(&package).with_context(|| format!("creating {}", package.display()))?;
        copy(&exe, &package.join(format!("{BIN}.sys")))?;
        copy(
            &built.join(format!("{BIN}.pdb")),
            &package.join(format!("{BIN}.pdb")),
        )?;
        copy(&root.join(INF), &package.join("hotswap_sample_wdm.inf"))?;
        Some(package)
    };
    Ok(Image {
        arch,
        version,
        path,
        map,
        package,
    })
}

/// What `cargo xtask build-driver --manifest-path` builds: any driver crate.
#[derive(Clone, Debug, Default)]
pub struct CrateBuild {
    /// The driver crate's `Cargo.toml`.
    pub manifest: PathBuf,
    /// Its binary target, when it has several.
    pub bin: Option<String>,
    /// The image's name (`<name>.sys`; default: the binary's name).
    pub name: Option<String>,
    /// Features to enable.
    pub features: Vec<String>,
    /// `--no-default-features`.
    pub no_default_features: bool,
    /// Architectures (default: both).
    pub arches: Vec<Arch>,
    /// Where the images go (default: `<the crate's target dir>/drivers`).
    pub out_dir: Option<PathBuf>,
}

/// Builds a driver crate for each architecture asked for and verifies each image (PE32+,
/// machine, subsystem, entry point = `DriverEntry` by the map, kernel imports, relocations,
/// checksum): the images it wrote.
///
/// # Errors
/// When a build fails or an image fails verification.
pub fn build_crate(build: &CrateBuild) -> Result<Vec<driver_proxy_build::Built>> {
    let arches = if build.arches.is_empty() {
        ARCHES.to_vec()
    } else {
        build.arches.clone()
    };
    let mut images = Vec::new();
    for arch in arches {
        let mut one = driver_proxy_build::DriverBuild::new(&build.manifest, arch)
            .features(build.features.iter().cloned());
        if let Some(bin) = &build.bin {
            one = one.bin(bin);
        }
        if let Some(name) = &build.name {
            one = one.name(name);
        }
        if build.no_default_features {
            one = one.no_default_features();
        }
        if let Some(out) = &build.out_dir {
            one = one.out_dir(out);
        }
        let image = one.run()?;
        crate::verify::verify_file(&image.image, Some(arch.machine), Some(&image.map), false)?;
        images.push(image);
    }
    println!("xtask: driver images:");
    for image in &images {
        let size = fs::metadata(&image.image).map_or(0, |m| m.len());
        println!(
            "    {}: {} ({size} bytes, verified)",
            image.arch.name,
            image.image.display()
        );
    }
    Ok(images)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_image_is_x64_only_unpackaged_and_named_apart() {
        assert_eq!(TEST_IMAGE_ARCH.name, "amd64");
        assert_eq!(Version::TEST_IMAGES, [Version::V2MissingUnload]);
        assert!(Version::V2MissingUnload.is_test_image());
        assert!(!Version::ALL.iter().any(|v| v.is_test_image()));
        assert_eq!(
            Version::V2MissingUnload.features(),
            ["--features", "test-omit-unload-endpoint"]
        );
        let out = Path::new("out");
        assert_eq!(
            image_path(out, TEST_IMAGE_ARCH, Version::V2MissingUnload),
            Path::new("out/amd64/hotswap_sample_v2_missing_unload.sys")
        );
        assert_eq!(
            builds()
                .map(|(arch, version)| (arch.name, version.name()))
                .collect::<Vec<_>>(),
            [
                ("amd64", "v1"),
                ("amd64", "v2"),
                ("arm64", "v1"),
                ("arm64", "v2"),
                ("amd64", "v2_missing_unload"),
            ]
        );
        // Its name differs from every packaged image's, on every architecture.
        for arch in ARCHES {
            for version in Version::ALL {
                assert_ne!(
                    image_path(out, arch, version),
                    image_path(out, TEST_IMAGE_ARCH, Version::V2MissingUnload)
                );
            }
        }
    }

    #[test]
    fn the_test_feature_exists_in_the_sample_and_implies_v2() {
        let manifest = std::fs::read_to_string(crate::workspace_root().join(MANIFEST)).unwrap();
        assert!(
            manifest
                .lines()
                .any(|line| line.trim() == r#"test-omit-unload-endpoint = ["v2"]"#),
            "sample/wdm/Cargo.toml must declare `test-omit-unload-endpoint = [\"v2\"]`"
        );
    }
}
