//! What every kind of host test shares (`mod common;`): running part of a test in a child
//! process, for what must abort the process (bugchecks, aborts, faults) or change process-wide
//! state (the system-wide DriverProxy switch).
//!
//! The kind-specific helpers are `engine_common`, `image_common` and `wdm_common`; a directory
//! with a `mod.rs` each, so that none is compiled as a test binary of its own.

#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::process::{Command, Output};

/// The variable that tells a child which scenario it runs.
const CHILD_VAR: &str = "DRIVER_PROXY_HOST_TEST_CHILD";

/// Runs the test named `entry` of this test binary in a child process (that test alone, on one
/// thread) with the scenario `scenario`; returns its output. The test reads the scenario with
/// [`child_scenario`].
pub fn run_child(entry: &str, scenario: &str) -> Output {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, scenario)
        .output()
        .expect("child process")
}

/// The scenario this process runs as a child of [`run_child`], if it is one.
pub fn child_scenario() -> Option<String> {
    std::env::var(CHILD_VAR).ok()
}

/// Asserts that a child aborted with a host-kernel bugcheck message containing `needle`.
pub fn assert_bugcheck(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the child survived: {stderr}");
    assert!(
        stderr.contains("host kernel BUGCHECK") && stderr.contains(needle),
        "expected a bugcheck with {needle:?}, got: {stderr}"
    );
}
