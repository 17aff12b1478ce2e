//! Every scenario against the fake: passes when the fake is sound, and fails with the right
//! criterion when the fake is given the defect that criterion exists for.

use std::{sync::Arc, time::Duration};

use hotswap_sample_core::{Completion, DriverVersion, IOCTL_HOTSWAP_TRANSFORM};

use super::*;
use crate::{
    backend::{Backend, BackendError},
    fake::{FakeDevice, FakeFault, FakeLab},
};

/// The quick configuration with short waits, so that a fault that makes a scenario wait
/// for the full limit still ends fast.
fn config() -> ScenarioConfig {
    ScenarioConfig {
        settle_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(400),
        ..ScenarioConfig::quick()
    }
}

fn lab_with(fault: Option<FakeFault>) -> Arc<dyn Lab> {
    let device = match fault {
        Some(fault) => FakeDevice::with_fault(DriverVersion::V1, fault),
        None => FakeDevice::new(DriverVersion::V1),
    };
    Arc::new(FakeLab::new(device, Duration::from_millis(5)))
}

fn run_with(fault: Option<FakeFault>, scenario: Scenario) -> ScenarioReport {
    run_one(&lab_with(fault), scenario, &config())
}

/// Asserts that `report` failed, and on criterion `criterion` among others.
fn assert_fails_on(report: &ScenarioReport, criterion: &str) {
    assert!(
        report.failed(),
        "{}:\n{}",
        report.scenario,
        report.details()
    );
    assert!(
        report.failed_criterion(criterion),
        "{} should fail {criterion}:\n{}",
        report.scenario,
        report.details()
    );
}

#[test]
fn every_scenario_passes_against_a_sound_fake_within_the_time_budget() {
    let lab = lab_with(None);
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    let reports = run(
        &lab,
        &Scenario::ALL,
        &ScenarioConfig::quick(),
        &mut |report| {
            seen.push(report.scenario);
        },
    );
    assert_eq!(seen, Scenario::ALL);
    for report in &reports {
        assert!(
            report.passed(),
            "{}:\n{}",
            report.scenario,
            report.details()
        );
        assert!(report.criteria.len() >= 4, "{}", report.details());
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The fake ends where it started: v1, present.
    assert_eq!(lab.stats().unwrap().0, DriverVersion::V1);
}

#[test]
fn only_the_selected_scenarios_run_once_each_in_order() {
    let lab = lab_with(None);
    let reports = run(
        &lab,
        &[Scenario::UnloadReload, Scenario::Smoke, Scenario::Smoke],
        &config(),
        &mut |_| {},
    );
    let names: Vec<_> = reports.iter().map(|r| r.scenario.name()).collect();
    assert_eq!(names, ["smoke", "unload-reload"]);
}

#[test]
fn a_lost_count_fails_the_counter_criteria_of_swap_stress() {
    let report = run_with(Some(FakeFault::LoseCountOnSwap), Scenario::SwapStress);
    assert_fails_on(&report, "served-counter-carried-over");
    assert_fails_on(&report, "served-per-version");
    let message = report.failure_message().unwrap();
    assert!(message.contains("LOST"), "{message}");
    // Six swaps, one count lost in each.
    assert!(message.contains("6 LOST"), "{message}");
    assert!(!report.failed_criterion("no-errors"));
}

#[test]
fn answers_from_the_old_build_after_a_swap_fail_the_version_criteria() {
    let report = run_with(Some(FakeFault::StaleVersionAfterSwap), Scenario::SwapStress);
    assert_fails_on(&report, "versions-change-at-swaps");
    assert_fails_on(&report, "swap-confirmed");
    assert!(!report.failed_criterion("served-counter-carried-over"));
}

#[test]
fn an_uncounted_swap_fails_swap_count() {
    let report = run_with(Some(FakeFault::SwapNotCounted), Scenario::SwapStress);
    assert_fails_on(&report, "swap-count");
    assert_eq!(report.failures().count(), 1, "{}", report.details());
}

#[test]
fn a_worker_that_stops_at_the_swap_fails_worker_swap() {
    let report = run_with(Some(FakeFault::WorkerStopsAfterSwap), Scenario::WorkerSwap);
    assert_fails_on(&report, "worker-advances-after-swap");
    assert_fails_on(&report, "worker-runs-new-version");
    assert!(!report.failed_criterion("worker-ticks-before-swap"));
}

#[test]
fn a_worker_count_lost_in_the_hand_over_fails_worker_swap() {
    // Enough ticks before the swap that the few after it cannot make up for the loss.
    let config = ScenarioConfig {
        worker_ticks: 10,
        ..config()
    };
    let report = run_one(
        &lab_with(Some(FakeFault::WorkerCountLostOnSwap)),
        Scenario::WorkerSwap,
        &config,
    );
    assert_fails_on(&report, "worker-count-carried-over");
    assert!(!report.failed_criterion("worker-advances-after-swap"));
}

#[test]
fn a_disable_that_does_nothing_fails_disable_enable() {
    let report = run_with(Some(FakeFault::DisableIgnored), Scenario::DisableEnable);
    assert_fails_on(&report, "absent-while-disabled");
    assert_fails_on(&report, "no-answer-while-disabled");
}

#[test]
fn an_undocumented_error_while_disabled_fails_disable_enable() {
    let report = run_with(
        Some(FakeFault::WrongStatusWhileDisabled),
        Scenario::DisableEnable,
    );
    assert_fails_on(&report, "documented-error-while-disabled");
    assert!(
        report
            .failures()
            .any(|c| c.detail.contains("STATUS_UNSUCCESSFUL")),
        "{}",
        report.details()
    );
    assert!(!report.failed_criterion("none-hang"));
}

#[test]
fn a_request_that_hangs_while_disabled_fails_none_hang() {
    let report = run_with(
        Some(FakeFault::HangWhileDisabled(Duration::from_secs(2))),
        Scenario::DisableEnable,
    );
    assert_fails_on(&report, "none-hang");
    // Bounded: the scenario does not wait for the hung requests.
    assert!(
        report.elapsed < Duration::from_secs(4),
        "{:?}",
        report.elapsed
    );
}

#[test]
fn unload_and_reload_faults_fail_their_criteria() {
    let report = run_with(Some(FakeFault::UnloadIgnored), Scenario::UnloadReload);
    assert_fails_on(&report, "absent-after-unload");
    let report = run_with(Some(FakeFault::ReloadKeepsState), Scenario::UnloadReload);
    assert_fails_on(&report, "fresh-state-after-reload");
    assert!(!report.failed_criterion("absent-after-unload"));
}

/// A lab over the fake whose connections corrupt `TRANSFORM` answers.
struct Corrupting(FakeLab);

struct CorruptingBackend(Box<dyn Backend>);

impl Backend for CorruptingBackend {
    fn device_control(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Completion, BackendError> {
        let done = self.0.device_control(code, input, output)?;
        // Flip a letter's case in the last payload byte (after the 16-byte header).
        if code == IOCTL_HOTSWAP_TRANSFORM
            && done.information > 16
            && let Some(last) = output.get_mut(done.information.wrapping_sub(1))
        {
            *last ^= 0x20;
        }
        Ok(done)
    }

    fn describe(&self) -> String {
        "corrupting".into()
    }
}

impl Lab for Corrupting {
    fn describe(&self) -> String {
        "corrupting fake".into()
    }
    fn connect(&self) -> Result<Box<dyn Backend>, BackendError> {
        Ok(Box::new(CorruptingBackend(self.0.connect()?)))
    }
    fn swap_to(&self, version: DriverVersion) -> Result<(), LabError> {
        self.0.swap_to(version)
    }
    fn disable(&self) -> Result<(), LabError> {
        self.0.disable()
    }
    fn enable(&self) -> Result<(), LabError> {
        self.0.enable()
    }
    fn unload(&self) -> Result<(), LabError> {
        self.0.unload()
    }
    fn reload(&self) -> Result<(), LabError> {
        self.0.reload()
    }
}

#[test]
fn wrong_transform_answers_fail_smoke_and_swap_stress() {
    let lab: Arc<dyn Lab> = Arc::new(Corrupting(FakeLab::new(
        FakeDevice::new(DriverVersion::V1),
        Duration::from_millis(5),
    )));
    let smoke = run_one(&lab, Scenario::Smoke, &config());
    assert_fails_on(&smoke, "transform-per-build");
    assert!(!smoke.failed_criterion("stats-count"));
    let stress = run_one(&lab, Scenario::SwapStress, &config());
    assert_fails_on(&stress, "correct-answers");
}

/// A lab that supports nothing but connections (to the fake, whose worker ticks).
struct ConnectOnly(FakeLab);

impl Lab for ConnectOnly {
    fn describe(&self) -> String {
        "connect only".into()
    }
    fn connect(&self) -> Result<Box<dyn Backend>, BackendError> {
        self.0.connect()
    }
    fn worker_period(&self) -> Duration {
        self.0.worker_period()
    }
    fn swap_to(&self, _: DriverVersion) -> Result<(), LabError> {
        Err(LabError::Unsupported("no swap command given".into()))
    }
    fn disable(&self) -> Result<(), LabError> {
        Err(LabError::Unsupported("no disable command given".into()))
    }
    fn enable(&self) -> Result<(), LabError> {
        Err(LabError::Unsupported("no enable command given".into()))
    }
    fn unload(&self) -> Result<(), LabError> {
        Err(LabError::Failed("sc stop: access denied".into()))
    }
    fn reload(&self) -> Result<(), LabError> {
        Err(LabError::Unsupported("no reload command given".into()))
    }
}

#[test]
fn unsupported_operations_skip_and_failed_operations_fail() {
    let lab: Arc<dyn Lab> = Arc::new(ConnectOnly(FakeLab::new(
        FakeDevice::new(DriverVersion::V2),
        Duration::from_millis(5),
    )));
    let reports = run(&lab, &Scenario::ALL, &config(), &mut |_| {});
    let verdicts: Vec<_> = reports
        .iter()
        .map(|r| {
            (
                r.scenario.name(),
                r.passed(),
                r.skipped.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(verdicts[0], ("smoke", true, String::new()));
    assert_eq!(
        verdicts[1],
        (
            "swap-stress",
            false,
            "swap 1 to v1: no swap command given".into()
        )
    );
    assert!(verdicts[2].2.starts_with("swap to v1"));
    assert!(verdicts[3].2.starts_with("disable 1"));
    let unload = &reports[4];
    assert_fails_on(unload, "lab-operation");
    assert!(
        unload
            .failure_message()
            .unwrap()
            .contains("sc stop: access denied"),
        "{}",
        unload.details()
    );
}

#[test]
fn junit_has_one_case_per_scenario_with_the_failed_criterion() {
    use quick_junit::{NonSuccessKind, TestCaseStatus};

    let lab = lab_with(Some(FakeFault::LoseCountOnSwap));
    let reports = run(
        &lab,
        &[Scenario::Smoke, Scenario::SwapStress],
        &config(),
        &mut |_| {},
    );
    let report = junit_report(&reports, "fake");
    let cases = &report.test_suites[0].test_cases;
    assert_eq!(cases.len(), 2);
    assert!(matches!(cases[0].status, TestCaseStatus::Success { .. }));
    let TestCaseStatus::NonSuccess {
        kind: NonSuccessKind::Failure,
        message: Some(message),
        ty: Some(ty),
        ..
    } = &cases[1].status
    else {
        panic!("{:?}", cases[1].status);
    };
    assert_eq!(ty.as_str(), "served-counter-carried-over");
    assert!(
        message
            .as_str()
            .starts_with("criterion served-counter-carried-over failed: served +")
    );
    assert!(
        cases[1]
            .system_out
            .as_ref()
            .is_some_and(|out| out.as_str().contains("PASS no-errors"))
    );
    let xml = junit::to_xml(&report).unwrap();
    assert!(xml.contains(r#"<testcase name="swap-stress" classname="hotswapctl.scenarios""#));
    for count in [
        r#"tests="2""#,
        r#"failures="1""#,
        r#"errors="0""#,
        r#"skipped="0""#,
    ] {
        assert!(xml.contains(count), "{count} not in {xml}");
    }
}
