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

#[test]
fn scenarios_quick_pass_against_the_fake_and_write_junit() {
    let junit = std::env::temp_dir().join(format!("hotswapctl-cli-{}.xml", std::process::id()));
    let started = std::time::Instant::now();
    let output = hotswapctl(&[
        "--backend",
        "fake",
        "scenarios",
        "--quick",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    for name in [
        "smoke",
        "swap-stress",
        "worker-swap",
        "disable-enable",
        "unload-reload",
    ] {
        assert!(text.contains(&format!("PASS {name} (")), "{text}");
    }
    assert!(
        text.contains("5 scenarios: 5 passed, 0 failed, 0 skipped"),
        "{text}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let _ = std::fs::remove_file(&junit);
    // The counts, in whatever order the writer puts the attributes.
    for count in [
        r#"tests="5""#,
        r#"failures="0""#,
        r#"errors="0""#,
        r#"skipped="0""#,
    ] {
        assert!(xml.contains(count), "{count} not in {xml}");
    }
    assert_eq!(xml.matches("<testcase ").count(), 5);
}

#[test]
fn a_broken_fake_fails_the_scenario_with_its_criterion_and_exit_code() {
    let junit = std::env::temp_dir().join(format!("hotswapctl-fault-{}.xml", std::process::id()));
    let output = hotswapctl(&[
        "--backend",
        "fake",
        "scenarios",
        "--quick",
        "--only",
        "swap-stress",
        "--fake-fault",
        "lose-count-on-swap",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("FAIL swap-stress (")
            && text.contains("criterion served-counter-carried-over failed"),
        "{text}"
    );
    assert!(text.contains("1 scenarios: 0 passed, 1 failed"), "{text}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let _ = std::fs::remove_file(&junit);
    assert!(
        xml.contains(r#"<failure message="criterion served-counter-carried-over failed: served +"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"type="served-counter-carried-over""#),
        "{xml}"
    );
}

#[test]
fn scenarios_refuse_a_background_swapper_and_unknown_names() {
    let output = hotswapctl(&[
        "--backend",
        "fake",
        "--fake-swap-every-ms",
        "5",
        "scenarios",
        "--quick",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("behind the scenarios' back"));
    let output = hotswapctl(&["--backend", "fake", "scenarios", "--only", "nonsense"]);
    assert!(!output.status.success());
}

#[cfg(not(windows))]
#[test]
fn device_scenarios_explain_that_they_need_windows() {
    let output = hotswapctl(&["scenarios", "--quick"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs Windows"), "{stderr}");
}
