//! Shared helpers of the `engine_*` tests (included with `#[path]`; as a test target of its
//! own it only checks that the helpers compile).

#![allow(
    dead_code,
    unreachable_pub,
    clippy::missing_panics_doc,
    clippy::must_use_candidate
)]

use std::process::{Command, Output};

use driver_proxy_host::engine::{Engine, WrapperId};

/// The wrapper `id` of `engine` as a function pointer of type `F`.
///
/// # Safety
///
/// `F` must be a function-pointer type matching the implementations the wrapper forwards to.
pub unsafe fn wrapper<F: Copy>(engine: &Engine, id: WrapperId) -> F {
    assert_eq!(core::mem::size_of::<F>(), core::mem::size_of::<usize>());
    let address = engine.wrapper_address(id);
    // SAFETY: F is a function pointer type (size checked); the caller vouches for the type.
    unsafe { core::mem::transmute_copy::<usize, F>(&address) }
}

/// Code address of a function item or pointer.
#[macro_export]
macro_rules! code {
    ($f:expr) => {
        $f as *const () as usize
    };
}

/// Runs the test named `entry` of this test binary in a child process with
/// `ENGINE_CHILD=<scenario>`; returns its output.
pub fn run_child(entry: &str, scenario: &str) -> Output {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env("ENGINE_CHILD", scenario)
        .output()
        .expect("child process")
}

/// The scenario this process should run as a child, if it is one.
pub fn child_scenario() -> Option<String> {
    std::env::var("ENGINE_CHILD").ok()
}

#[test]
fn support_compiles() {}
