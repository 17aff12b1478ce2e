//! Builds a Windows kernel driver crate into a `.sys` image on any host, with rustup's stable
//! toolchain only (no WDK, no MSVC `link.exe`, no nightly): what `cargo xtask build-driver`
//! runs, for the repository's sample and for any driver crate
//! (`cargo xtask build-driver --manifest-path <driver>/Cargo.toml`).
//!
//! Two parts:
//!
//! * **For the driver's build script**: [`emit_link_args`] prints the kernel link arguments
//!   ([`LINK_ARGS`]) for Windows MSVC targets, and nothing for any other target (so the same
//!   crate can build its tests for the host).
//!
//!   ```toml
//!   # <driver>/Cargo.toml
//!   [build-dependencies]
//!   driver-proxy-build = { path = "<repository>/driver-build" }
//!   ```
//!   ```text
//!   // <driver>/build.rs
//!   fn main() {
//!       driver_proxy_build::emit_link_args();
//!   }
//!   ```
//! * **For a build tool** (the xtask, or a driver author's own): [`DriverBuild`] runs `cargo
//!   rustc` for one architecture in release, links with `rust-lld` and a linker map, and
//!   writes `<out>/<arch>/<name>.sys` and `<name>.map` (and `<name>.pdb` when the profile
//!   writes one).
//!
//! # What a driver crate needs
//!
//! | where | what | why |
//! |---|---|---|
//! | `Cargo.toml` | one `[[bin]]` (or `src/main.rs`), `test = false` on it | a `[[bin]]` image has no export table and `ImageBase` `0x140000000`, like a WDK-built `.sys`; a `cdylib` would export every `#[no_mangle]` symbol |
//! | `Cargo.toml` | `panic = "abort"` in every profile; `lto = true`, `codegen-units = 1` in release | nothing may unwind in a kernel driver; LTO drops the prebuilt `core`'s references to the C++ personality routine and `strlen` |
//! | `Cargo.toml` | its own `[workspace]` (or exclusion from the enclosing one) | a `no_main` image for Windows targets does not build for the Linux host of `cargo test --workspace` |
//! | `build.rs` | [`emit_link_args`] | the kernel link arguments below, for the image only (`cargo::rustc-link-arg-bins`) |
//! | `src/main.rs` | `#![no_std]`, `#![no_main]` (for Windows targets), a `#[unsafe(no_mangle)] extern "system" fn DriverEntry`, a `#[panic_handler]` (its body: `driver_proxy_rt::panic_bug_check`, a bug check) | the entry point is `DriverEntry`; no CRT |
//! | `src/main.rs` | imports as `#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")] unsafe extern "system" { … }` | rustc writes the import library itself; `+verbatim` keeps the DLL name `ntoskrnl.exe` |
//! | `Cargo.toml` | `driver-proxy-rt = { path = "<repository>/driver-rt" }` in `[dependencies]`, named by the code (the panic handler's call, or `use driver_proxy_rt as _;`) | `memcpy`, `memmove`, `memset`, `memcmp`, `__chkstk`, `_fltused` (x64; on ARM64 imports of the routines from `ntoskrnl.exe`): the MSVC targets' prebuilt `compiler_builtins` leaves them to a C run-time, which a driver does not have |
//!
//! The repository's `docs/cross-link.md` explains each point; `sample/wdm` and
//! `examples/scratchpad` are complete crates that follow it.
//!
//! # Link arguments
//!
//! | argument | effect |
//! |---|---|
//! | `/DRIVER` | a kernel-mode driver image (not `/DRIVER:WDM`, which marks a Plug and Play WDM driver; add it yourself with `cargo::rustc-link-arg-bins` if yours is one) |
//! | `/SUBSYSTEM:NATIVE,10.0` | subsystem 1 (native), version 10.0 |
//! | `/ENTRY:DriverEntry` | `AddressOfEntryPoint` = the `#[no_mangle]` `DriverEntry` |
//! | `/NODEFAULTLIB` | no CRT at all (cancels rustc's `/defaultlib:msvcrt`) |
//! | `/RELEASE` | a valid PE `CheckSum` |
//! | `/TSAWARE:NO` | clears the terminal-server flag lld sets on every non-DLL image |
//!
//! [`DriverBuild`] adds `-C linker=rust-lld` (so no `.cargo/config.toml` is needed) and
//! `-C link-arg=/MAP:<name>.map`, which `cargo xtask verify` reads to check that the entry
//! point is `DriverEntry`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod json;

/// The kernel link arguments [`emit_link_args`] prints (module docs: what each does).
pub const LINK_ARGS: [&str; 6] = [
    "/DRIVER",
    "/SUBSYSTEM:NATIVE,10.0",
    "/ENTRY:DriverEntry",
    "/NODEFAULTLIB",
    "/RELEASE",
    "/TSAWARE:NO",
];

/// For a driver crate's `build.rs`: prints `cargo::rustc-link-arg-bins=<arg>` for each of
/// [`LINK_ARGS`] when the target is a Windows MSVC target, and nothing otherwise (a host build
/// of the same crate, for its tests, links as usual). Also asks cargo to run the script again
/// only when it changes.
pub fn emit_link_args() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "windows" || env != "msvc" {
        return;
    }
    for arg in LINK_ARGS {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
}

/// An architecture driver images are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arch {
    /// Directory name, as Windows (and INF decorations) spell the architecture: `amd64`,
    /// `arm64`.
    pub name: &'static str,
    /// The Rust target.
    pub target: &'static str,
    /// The PE machine (`IMAGE_FILE_MACHINE_*`) its images have.
    pub machine: u16,
}

/// x64.
pub const AMD64: Arch = Arch {
    name: "amd64",
    target: "x86_64-pc-windows-msvc",
    machine: 0x8664,
};

/// ARM64.
pub const ARM64: Arch = Arch {
    name: "arm64",
    target: "aarch64-pc-windows-msvc",
    machine: 0xAA64,
};

/// Both architectures of 64-bit Windows (Driver Hot-Swap exists on 64-bit Windows only).
pub const ARCHES: [Arch; 2] = [AMD64, ARM64];

impl Arch {
    /// The architecture called `name` (`amd64`/`x64`, `arm64`), if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "amd64" | "x64" | "x86_64" => Some(AMD64),
            "arm64" | "aarch64" => Some(ARM64),
            _ => None,
        }
    }
}

/// Why a build failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// `cargo` could not be started.
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A `cargo` command failed (its output went to this process's stdout/stderr).
    Cargo {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// `cargo metadata` said something this crate could not read.
    Metadata(String),
    /// The manifest has no binary target, or several and none was chosen.
    Bin(String),
    /// A file could not be written or copied.
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spawn { command, source } => write!(f, "cannot run {command}: {source}"),
            Self::Cargo { command, status } => write!(f, "{command} failed ({status})"),
            Self::Metadata(what) => write!(f, "cargo metadata: {what}"),
            Self::Bin(what) => f.write_str(what),
            Self::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn { source, .. } | Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What [`DriverBuild::run`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The architecture.
    pub arch: Arch,
    /// `<out>/<arch>/<name>.sys`.
    pub image: PathBuf,
    /// Its linker map, beside it (`<name>.map`).
    pub map: PathBuf,
    /// Its PDB beside it (`<name>.pdb`), when the profile writes one.
    pub pdb: Option<PathBuf>,
    /// The file cargo wrote (`<target dir>/<target>/release/<bin>.exe`).
    pub cargo_output: PathBuf,
}

/// What `cargo metadata` says of a driver crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrateInfo {
    /// The package name.
    pub package: String,
    /// Its binary targets' names.
    pub bins: Vec<String>,
    /// The target directory cargo uses for it (its workspace's `target`, or
    /// `CARGO_TARGET_DIR`).
    pub target_directory: PathBuf,
}

/// The cargo to run: `$CARGO` (the one running this process, under cargo) or `cargo`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn run(mut command: Command, shown: &str) -> Result<(), BuildError> {
    println!("driver-build: {shown}");
    let status = command.status().map_err(|source| BuildError::Spawn {
        command: shown.to_owned(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Cargo {
            command: shown.to_owned(),
            status,
        })
    }
}

/// Reads `cargo metadata --no-deps` of the crate at `manifest`.
///
/// # Errors
/// [`BuildError::Spawn`], [`BuildError::Cargo`], [`BuildError::Metadata`].
pub fn crate_info(manifest: &Path) -> Result<CrateInfo, BuildError> {
    let shown = format!(
        "cargo metadata --no-deps --format-version 1 --manifest-path {}",
        manifest.display()
    );
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .map_err(|source| BuildError::Spawn {
            command: shown.clone(),
            source,
        })?;
    if !output.status.success() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        return Err(BuildError::Cargo {
            command: shown,
            status: output.status,
        });
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| BuildError::Metadata("output is not UTF-8".into()))?;
    let metadata = json::parse(&text).map_err(BuildError::Metadata)?;
    let missing = |what: &str| BuildError::Metadata(format!("no {what}"));
    let target_directory = metadata
        .get("target_directory")
        .and_then(json::Value::as_str)
        .ok_or_else(|| missing("target_directory"))?;
    let manifest = std::fs::canonicalize(manifest).map_err(|source| BuildError::Io {
        what: format!("reading {}", manifest.display()),
        source,
    })?;
    let packages = metadata
        .get("packages")
        .and_then(json::Value::as_array)
        .ok_or_else(|| missing("packages"))?;
    let package = packages
        .iter()
        .find(|package| {
            package
                .get("manifest_path")
                .and_then(json::Value::as_str)
                .and_then(|path| std::fs::canonicalize(path).ok())
                .is_some_and(|path| path == manifest)
        })
        .or_else(|| (packages.len() == 1).then(|| &packages[0]))
        .ok_or_else(|| {
            BuildError::Metadata(format!("no package with manifest {}", manifest.display()))
        })?;
    let name = package
        .get("name")
        .and_then(json::Value::as_str)
        .ok_or_else(|| missing("package name"))?;
    let bins = package
        .get("targets")
        .and_then(json::Value::as_array)
        .ok_or_else(|| missing("targets"))?
        .iter()
        .filter(|target| {
            target
                .get("kind")
                .and_then(json::Value::as_array)
                .is_some_and(|kinds| kinds.iter().any(|k| k.as_str() == Some("bin")))
        })
        .filter_map(|target| target.get("name").and_then(json::Value::as_str))
        .map(str::to_owned)
        .collect();
    Ok(CrateInfo {
        package: name.to_owned(),
        bins,
        target_directory: PathBuf::from(target_directory),
    })
}

/// One build of a driver crate for one architecture: `cargo rustc --release` with the link
/// arguments of the module docs, then the image copied to `<out>/<arch>/<name>.sys`.
#[derive(Clone, Debug)]
pub struct DriverBuild {
    manifest: PathBuf,
    arch: Arch,
    bin: Option<String>,
    name: Option<String>,
    features: Vec<String>,
    no_default_features: bool,
    target_dir: Option<PathBuf>,
    out_dir: Option<PathBuf>,
}

impl DriverBuild {
    /// A build of the crate at `manifest` (its `Cargo.toml`) for `arch`, with its default
    /// features, its only binary, named after that binary, in its own target directory,
    /// written to `<target dir>/drivers`.
    #[must_use]
    pub fn new(manifest: impl Into<PathBuf>, arch: Arch) -> Self {
        Self {
            manifest: manifest.into(),
            arch,
            bin: None,
            name: None,
            features: Vec::new(),
            no_default_features: false,
            target_dir: None,
            out_dir: None,
        }
    }

    /// Builds this binary target (needed when the crate has several).
    #[must_use]
    pub fn bin(mut self, bin: impl Into<String>) -> Self {
        self.bin = Some(bin.into());
        self
    }

    /// Names the image `<name>.sys` (default: the binary's name).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Enables these features (`--features`).
    #[must_use]
    pub fn features<S: Into<String>>(mut self, features: impl IntoIterator<Item = S>) -> Self {
        self.features.extend(features.into_iter().map(Into::into));
        self
    }

    /// `--no-default-features`.
    #[must_use]
    pub fn no_default_features(mut self) -> Self {
        self.no_default_features = true;
        self
    }

    /// Cargo's target directory for the build (default: the crate's own).
    #[must_use]
    pub fn target_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.target_dir = Some(dir.into());
        self
    }

    /// Writes the image under `dir/<arch>/` (default: `<target dir>/drivers`).
    #[must_use]
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Where the image will be written, without building (reads `cargo metadata` when the
    /// binary, the name or the directories are not given).
    ///
    /// # Errors
    /// As [`crate_info`]; [`BuildError::Bin`].
    pub fn image_path(&self) -> Result<PathBuf, BuildError> {
        Ok(self.plan()?.image)
    }

    fn plan(&self) -> Result<Plan, BuildError> {
        let info = if self.bin.is_some() && self.target_dir.is_some() && self.out_dir.is_some() {
            None
        } else {
            Some(crate_info(&self.manifest)?)
        };
        let bin = match (&self.bin, &info) {
            (Some(bin), _) => bin.clone(),
            (None, Some(info)) => match info.bins.as_slice() {
                [bin] => bin.clone(),
                [] => {
                    return Err(BuildError::Bin(format!(
                        "{} has no binary target: a driver image is a `[[bin]]` (module docs)",
                        self.manifest.display()
                    )));
                }
                bins => {
                    return Err(BuildError::Bin(format!(
                        "{} has several binary targets ({}): choose one",
                        self.manifest.display(),
                        bins.join(", ")
                    )));
                }
            },
            (None, None) => unreachable!("metadata is read when no binary is given"),
        };
        let target_dir = self
            .target_dir
            .clone()
            .or_else(|| info.as_ref().map(|i| i.target_directory.clone()))
            .unwrap_or_else(|| unreachable!("metadata is read when no target dir is given"));
        let out_dir = self
            .out_dir
            .clone()
            .unwrap_or_else(|| target_dir.join("drivers"));
        let name = self.name.clone().unwrap_or_else(|| bin.clone());
        let image = out_dir.join(self.arch.name).join(format!("{name}.sys"));
        Ok(Plan {
            bin,
            target_dir,
            image,
        })
    }

    /// Builds the image and writes it, its map and its PDB (module docs).
    ///
    /// # Errors
    /// [`BuildError`]: cargo failed (its diagnostics are on stderr), metadata, a file.
    pub fn run(&self) -> Result<Built, BuildError> {
        let Plan {
            bin,
            target_dir,
            image,
        } = self.plan()?;
        let dir = image.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir).map_err(|source| BuildError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let map = image.with_extension("map");
        // Absolute paths: cargo runs in the crate's directory (so that its own
        // `.cargo/config.toml` and toolchain file apply).
        let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.into());
        let manifest = absolute(&self.manifest);
        let mut args: Vec<OsString> = vec![
            "rustc".into(),
            "--manifest-path".into(),
            manifest.clone().into(),
            "--release".into(),
            "--target".into(),
            self.arch.target.into(),
            "--bin".into(),
            bin.clone().into(),
            "--target-dir".into(),
            absolute(&target_dir).into(),
        ];
        if self.no_default_features {
            args.push("--no-default-features".into());
        }
        if !self.features.is_empty() {
            args.push("--features".into());
            args.push(self.features.join(",").into());
        }
        let mut map_arg = OsString::from("link-arg=/MAP:");
        map_arg.push(absolute(&map));
        args.extend([
            "--".into(),
            "-C".into(),
            "linker=rust-lld".into(),
            "-C".into(),
            map_arg,
        ]);
        let shown = format!(
            "cargo {}",
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut command = Command::new(cargo());
        command.args(&args);
        if let Some(dir) = manifest.parent() {
            command.current_dir(dir);
        }
        run(command, &shown)?;
        let built = target_dir
            .join(self.arch.target)
            .join("release")
            .join(format!("{bin}.exe"));
        copy(&built, &image)?;
        let pdb_built = built.with_extension("pdb");
        let pdb = if pdb_built.is_file() {
            let pdb = image.with_extension("pdb");
            copy(&pdb_built, &pdb)?;
            Some(pdb)
        } else {
            None
        };
        Ok(Built {
            arch: self.arch,
            image,
            map,
            pdb,
            cargo_output: built,
        })
    }
}

struct Plan {
    bin: String,
    target_dir: PathBuf,
    image: PathBuf,
}

fn copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|source| BuildError::Io {
            what: format!("copying {} to {}", from.display(), to.display()),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_by_name() {
        assert_eq!(Arch::from_name("x64"), Some(AMD64));
        assert_eq!(Arch::from_name("AMD64"), Some(AMD64));
        assert_eq!(Arch::from_name("arm64"), Some(ARM64));
        assert_eq!(Arch::from_name("x86"), None);
        assert_eq!(ARCHES.map(|a| a.target), [AMD64.target, ARM64.target]);
    }

    #[test]
    fn the_image_path_follows_the_options_without_metadata() {
        let build = DriverBuild::new("d/Cargo.toml", ARM64)
            .bin("my_driver")
            .target_dir("t")
            .out_dir("o");
        assert_eq!(
            build.image_path().unwrap(),
            Path::new("o/arm64/my_driver.sys")
        );
        assert_eq!(
            build.name("my_driver_v2").image_path().unwrap(),
            Path::new("o/arm64/my_driver_v2.sys")
        );
    }
}
