//! Where the host kernel cannot run the x64 driver images (anything but x86-64 Linux), the
//! end-to-end tests of `host_images.rs` are not built; this says so in the test output.

#![cfg(not(all(target_os = "linux", target_arch = "x86_64")))]

#[test]
fn end_to_end_tests_on_the_real_images_are_skipped_here() {
    eprintln!(
        "skipped: the host kernel runs x64 .sys images on x86-64 Linux only (this is {} {})",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
}
