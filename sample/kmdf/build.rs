//! Build script of the KMDF sample: wdk-build reads the KMDF 1.33 metadata of `Cargo.toml`,
//! finds the WDK (`WDKContentRoot` in an eWDK prompt, else the registry), emits the
//! `driver_model__driver_type="KMDF"` cfg and the kernel link arguments (`/DRIVER /KERNEL
//! /SUBSYSTEM:NATIVE /ENTRY:FxDriverEntry /NODEFAULTLIB ...`). It refuses to build without
//! `+crt-static` (`.cargo/config.toml`). Windows only.

fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()
}
