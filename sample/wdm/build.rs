//! Build script of the WDM sample: the kernel-driver link arguments, for Windows targets only,
//! from the build library (`driver-build`, crate `driver-proxy-build`), which any driver crate
//! can use the same way.
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
//! | `/NODEFAULTLIB` | no CRT at all (cancels rustc's `/defaultlib:msvcrt`); the crate `driver-proxy-rt` (`driver-rt/`) supplies the few helpers the code needs |
//! | `/RELEASE` | writes a valid PE `CheckSum` (the kernel's loader checks it for boot drivers; `cargo xtask verify` checks it always) |
//! | `/TSAWARE:NO` | lld sets `TERMINAL_SERVER_AWARE` on every non-DLL image otherwise |

fn main() {
    // The arguments above (`driver_proxy_build::LINK_ARGS`), as `cargo::rustc-link-arg-bins`,
    // for Windows MSVC targets only (src/main.rs stops any other build with a message).
    driver_proxy_build::emit_link_args();
}
