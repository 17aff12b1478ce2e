//! Build script of the WDM sample: the kernel-driver link arguments, for Windows targets only.
//!
//! rustc links the `[[bin]]` with `rust-lld` in lld-link mode (the repository's
//! `.cargo/config.toml` sets `linker = "rust-lld"`); these arguments turn its output into a
//! kernel driver image (why each one: `docs/cross-link.md#link-flags` at the repository
//! root):
//!
//! | flag | effect |
//! |---|---|
//! | `/DRIVER` | kernel-mode driver image. Not `/DRIVER:WDM`: that sets `IMAGE_DLLCHARACTERISTICS_WDM_DRIVER`, which tells the I/O manager the driver follows the PnP WDM model; this is a legacy (non-PnP) driver that creates its control device in `DriverEntry` |
//! | `/SUBSYSTEM:NATIVE,10.0` | subsystem 1 (native), subsystem version 10.0 |
//! | `/ENTRY:DriverEntry` | `AddressOfEntryPoint` = the `#[no_mangle]` `DriverEntry` |
//! | `/NODEFAULTLIB` | no CRT at all (cancels rustc's `/defaultlib:msvcrt`); `src/rt.rs` supplies the few helpers the code needs |
//! | `/RELEASE` | writes a valid PE `CheckSum` (the kernel's loader checks it for boot drivers; `cargo xtask verify` checks it always) |
//! | `/TSAWARE:NO` | lld sets `TERMINAL_SERVER_AWARE` on every non-DLL image otherwise |

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "windows" || env != "msvc" {
        // src/main.rs stops such a build with a message; emit nothing here.
        return;
    }
    for arg in [
        "/DRIVER",
        "/SUBSYSTEM:NATIVE,10.0",
        "/ENTRY:DriverEntry",
        "/NODEFAULTLIB",
        "/RELEASE",
        "/TSAWARE:NO",
    ] {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
}
