//! Build script of `driver-proxy`.
//!
//! Driver Hot-Swap needs the Secure Kernel, which exists only on 64-bit Windows (x64 and
//! ARM64). The DDI layouts this crate asserts are the LLP64 ones, so a 32-bit target is
//! refused here with a message instead of failing later on a layout assertion.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let width = std::env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    assert!(
        !(os == "windows" && width != "64"),
        "driver-proxy: Driver Hot-Swap exists only on 64-bit Windows (x64, ARM64); \
         target pointer width is {width}"
    );
}
