//! Where the host kernel cannot run the x64 driver images (anything but x86-64 Linux), the
//! end-to-end tests of `host_images.rs` are not built; here `--backend host` must refuse
//! clearly instead.

#![cfg(not(all(target_os = "linux", target_arch = "x86_64")))]

use std::process::Command;

#[test]
fn the_host_backend_says_it_needs_x86_64_linux() {
    eprintln!(
        "the end-to-end tests on the real images are skipped: the host kernel runs x64 .sys \
         images on x86-64 Linux only (this is {} {})",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    for args in [
        &["--backend", "host", "version"][..],
        &["--backend", "host", "demo"][..],
        &["--backend", "host", "scenarios", "--quick"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_hotswapctl"))
            .args(args)
            .output()
            .expect("run hotswapctl");
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("x86-64 Linux only"), "{args:?}: {stderr}");
    }
}
