//! Finding the images `cargo xtask build-driver` wrote.

use std::path::{Path, PathBuf};

/// The environment variable naming the directory of the x64 images (overrides the search).
pub const IMAGES_DIR_VAR: &str = "DRIVER_PROXY_IMAGES";
/// The environment variable that turns a missing image into a failure (what CI sets: a
/// test that would skip must fail there).
pub const REQUIRE_IMAGES_VAR: &str = "DRIVER_PROXY_REQUIRE_IMAGES";

/// The directory of a crate's x64 driver images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    dir: PathBuf,
}

impl Images {
    /// The x64 images of the crate at `manifest_dir` (pass `env!("CARGO_MANIFEST_DIR")`):
    /// `$DRIVER_PROXY_IMAGES` if set, else the first `target/drivers/amd64` in that directory
    /// or above it (where `cargo xtask build-driver --manifest-path <crate>/Cargo.toml` writes
    /// them for a crate with its own target directory, or for a workspace member), else
    /// `<manifest_dir>/target/drivers/amd64`.
    #[must_use]
    pub fn find(manifest_dir: impl AsRef<Path>) -> Self {
        if let Some(dir) = std::env::var_os(IMAGES_DIR_VAR) {
            return Self::at(PathBuf::from(dir));
        }
        let start = manifest_dir.as_ref();
        let found = start
            .ancestors()
            .map(|dir| dir.join("target").join("drivers").join("amd64"))
            .find(|dir| dir.is_dir());
        Self::at(found.unwrap_or_else(|| start.join("target").join("drivers").join("amd64")))
    }

    /// The images in `dir`.
    #[must_use]
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of image `file` (which may not exist).
    #[must_use]
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The path of image `file` if it exists. If it does not: `None`, after printing that
    /// the test is skipped and how to build the image; or, when `DRIVER_PROXY_REQUIRE_IMAGES`
    /// is set (CI), a panic. On a host other than x86-64 Linux, where the host kernel cannot
    /// run x64 code: `None` with a note.
    ///
    /// # Panics
    /// When the image is missing and `DRIVER_PROXY_REQUIRE_IMAGES` is set.
    #[must_use]
    pub fn require(&self, file: &str) -> Option<PathBuf> {
        if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            eprintln!("skipped: the host kernel runs x64 driver images on x86-64 Linux only");
            return None;
        }
        let path = self.path(file);
        if path.is_file() {
            return Some(path);
        }
        assert!(
            std::env::var_os(REQUIRE_IMAGES_VAR).is_none(),
            "{} is missing ({REQUIRE_IMAGES_VAR} is set): build it with cargo xtask build-driver",
            path.display()
        );
        eprintln!(
            "skipped: {} is not built (cargo xtask build-driver --manifest-path <driver>/Cargo.toml)",
            path.display()
        );
        None
    }
}
