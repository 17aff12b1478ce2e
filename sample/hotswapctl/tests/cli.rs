//! The `hotswapctl` binary end to end, against the in-memory fake (`--backend fake`, which is
//! not a driver: these tests check the command line, the output and the exit codes).

use std::process::{Command, Output};

fn hotswapctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotswapctl"))
        .args(args)
        .output()
        .expect("run hotswapctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn version_names_the_loaded_build() {
    let v1 = hotswapctl(&["--backend", "fake", "version"]);
    assert!(v1.status.success());
    assert!(
        stdout(&v1).starts_with("v1 answers: build \"hotswap v1\", protocol 1"),
        "{}",
        stdout(&v1)
    );
    let v2 = hotswapctl(&["--backend", "fake", "--fake-version", "2", "version"]);
    assert!(
        stdout(&v2).starts_with("v2 answers: build \"hotswap v2\""),
        "{}",
        stdout(&v2)
    );
}

#[test]
fn transform_answers_per_build() {
    let v1 = hotswapctl(&["--backend", "fake", "transform", "Hello, World"]);
    assert_eq!(stdout(&v1), "v1: HELLO, WORLD\n");
    let v2 = hotswapctl(&[
        "--backend",
        "fake",
        "--fake-version",
        "2",
        "transform",
        "Hello, World",
    ]);
    assert_eq!(stdout(&v2), "v2: Uryyb, Jbeyq\n");
}

#[test]
fn an_oversized_transform_is_refused_with_its_status() {
    let text = "x".repeat(4097);
    let output = hotswapctl(&["--backend", "fake", "transform", &text]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid request: payload of 4097 bytes exceeds the maximum of 4096"),
        "{stderr}"
    );
    assert!(stderr.contains("STATUS_INVALID_BUFFER_SIZE"), "{stderr}");
}

#[test]
fn stress_with_swaps_passes_and_summarises_both_builds() {
    let output = hotswapctl(&[
        "--backend",
        "fake",
        "--fake-swap-every-ms",
        "1",
        "stress",
        "--threads",
        "3",
        "--requests",
        "4000",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.starts_with("12000 requests in"), "{text}");
    assert!(
        text.contains("answered by v1: ") && text.contains("answered by v2: "),
        "{text}"
    );
    assert!(text.contains("no count lost"), "{text}");
    assert!(text.trim_end().ends_with("PASS"), "{text}");
}

#[test]
fn reset_reports_then_zeroes() {
    let output = hotswapctl(&["--backend", "fake", "reset"]);
    let text = stdout(&output);
    assert!(
        text.starts_with("counters before reset (answered by v1):"),
        "{text}"
    );
    assert!(text.contains("served:       1 (v1 1, v2 0)"), "{text}");
}

#[test]
fn watch_prints_the_first_answer_and_a_summary() {
    let output = hotswapctl(&[
        "--backend",
        "fake",
        "watch",
        "--interval-ms",
        "1",
        "--count",
        "3",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("] v1 answers (served 1,"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("3 polls (0 failed), 0 swap(s) seen, answered by: v1"),
        "{text}"
    );
}

#[cfg(not(windows))]
#[test]
fn the_device_backend_explains_that_it_needs_windows() {
    let output = hotswapctl(&["version"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs Windows"), "{stderr}");
}
