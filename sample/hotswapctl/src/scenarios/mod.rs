//! HLK-style scenarios: each a bounded run with named pass/fail criteria, generic over the
//! [`Lab`] it runs against (the in-memory fake, the WDM sample's real images in the host
//! kernel, the installed driver on a Windows VM), reported as `JUnit` XML ([`junit`]).
//!
//! | scenario | what it does | criteria (all must hold) |
//! |---|---|---|
//! | `smoke` | `VERSION`, `TRANSFORM` of fixed payloads (empty, text, all 256 byte values, the 4096-byte maximum), `STATS` | `version-consistent` (header and body name the same build, v1 or v2, protocol 1, maximum 4096), `build-tag` (`"hotswap vN"`), `transform-per-build` (every answer is the answering build's transform), `stats-count` (the served counter grew by exactly the requests sent) |
//! | `swap-stress` | N threads, each on its own connection, send requests without pause while the main thread swaps v → other → v … (an even number of swaps, so it ends where it started) | `no-errors` (no failed, undelivered or malformed request), `correct-answers` (every `TRANSFORM` answer is the answering build's), `swap-confirmed` (after each swap `VERSION` names the target), `versions-change-at-swaps` (every answer is from the build in effect, and each thread's answers change build only while a swap is in progress, at most once per swap), `served-counter-carried-over` (the driver's served counter grew by exactly the requests the client got answers to: none lost, none counted twice), `served-per-version` (the same, per answering build), `swap-count` (the driver counted exactly the swaps made), `none-hang` |
//! | `worker-swap` | waits for the worker thread to tick, swaps, waits again, swaps back | `worker-ticks-before-swap`, `worker-count-carried-over` (the count right after the swap is not below the count before), `worker-advances-after-swap` (it keeps ticking), `worker-runs-new-version` (the new ticks are the new build's, and it is the last to tick), `old-version-stopped` (no tick of the old build once the swap returned) |
//! | `disable-enable` | threads send requests, each on a fresh connection, while the device is disabled and enabled again (several cycles) | `absent-while-disabled` (the device is absent after the disable), `no-answer-while-disabled` (no request that started after the device was seen absent and ended before the enable was answered), `documented-error-while-disabled` (every failure is the documented one, [`crate::lab::is_absent_error`]), `no-errors-while-enabled`, `io-resumes-after-enable` (the device and the threads are answered again, by the same build), `none-hang` |
//! | `unload-reload` | with no connection open: sends some requests, unloads, reloads (several cycles) | `absent-after-unload`, `answers-after-reload` (by the same build), `fresh-state-after-reload` (counters start again: a reload is not a swap), `worker-restarted` |
//!
//! Every scenario also fails with `lab-operation` when an operation of the lab fails (the
//! message says which and why) and with `control-request` when one of its own checking
//! requests fails unexpectedly; it is *skipped* when the lab does not support an operation
//! it needs ([`LabError::Unsupported`], e.g. disabling the WDM build, which has no device
//! node).
//!
//! # Bounded duration
//!
//! Nothing waits without a limit: each wait for an effect polls for at most
//! [`ScenarioConfig::settle_timeout`] (plus a few worker periods where the worker is
//! concerned), a request counts as hung after [`ScenarioConfig::request_timeout`] and its
//! thread is abandoned, and lab commands have their own time limit ([`crate::lab::CommandLab`]).
//! [`ScenarioConfig::quick`] runs the whole set against the fake in well under 5 seconds.
//!
//! # Exclusive use
//!
//! The counters are compared exactly, so nothing else may use the device during a run (no
//! `hotswapctl watch` beside it).

mod cases;
pub mod junit;
mod workload;

pub use junit::junit_report;

use std::{
    fmt::{self, Write as _},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::lab::{Lab, LabError};

/// One scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Scenario {
    /// `VERSION`, `TRANSFORM` and `STATS` answered correctly by the loaded build.
    Smoke,
    /// I/O stress while swapping v1 ↔ v2 repeatedly: no error, no lost count.
    SwapStress,
    /// The worker thread keeps counting across a swap, in the new build.
    WorkerSwap,
    /// Disable and enable the device during I/O: documented errors, no hang, I/O resumes.
    DisableEnable,
    /// Unload and reload the driver: absent, then back with fresh state.
    UnloadReload,
}

impl Scenario {
    /// Every scenario, in the order they run (the ones that take the device away last).
    pub const ALL: [Self; 5] = [
        Self::Smoke,
        Self::SwapStress,
        Self::WorkerSwap,
        Self::DisableEnable,
        Self::UnloadReload,
    ];

    /// The name used on the command line and in `JUnit` (`swap-stress`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Smoke => "smoke",
            Self::SwapStress => "swap-stress",
            Self::WorkerSwap => "worker-swap",
            Self::DisableEnable => "disable-enable",
            Self::UnloadReload => "unload-reload",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Sizes and time limits of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioConfig {
    /// Threads sending requests in `swap-stress` and `disable-enable`.
    pub threads: usize,
    /// Swaps in `swap-stress` (rounded up to an even number, so it ends on the build it
    /// started with).
    pub swaps: usize,
    /// I/O time between two operations (swaps, disable and enable, …).
    pub pause: Duration,
    /// Disable/enable cycles.
    pub disable_cycles: usize,
    /// How long the device stays disabled under I/O.
    pub disabled_window: Duration,
    /// Unload/reload cycles.
    pub reload_cycles: usize,
    /// Worker ticks to see before and after a swap.
    pub worker_ticks: u64,
    /// Longest wait for an operation's effect (the device absent, answering again, …).
    pub settle_timeout: Duration,
    /// A request that takes longer has hung.
    pub request_timeout: Duration,
    /// Time between two polls while waiting for an effect.
    pub poll_interval: Duration,
}

impl ScenarioConfig {
    /// Short runs (CI against the fake: the whole set well under 5 s).
    #[must_use]
    pub fn quick() -> Self {
        Self {
            threads: 4,
            swaps: 6,
            pause: Duration::from_millis(25),
            disable_cycles: 2,
            disabled_window: Duration::from_millis(40),
            reload_cycles: 2,
            worker_ticks: 2,
            settle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(5),
        }
    }

    /// Longer runs (a Windows VM: minutes).
    #[must_use]
    pub fn full() -> Self {
        Self {
            threads: 8,
            swaps: 40,
            pause: Duration::from_millis(500),
            disable_cycles: 10,
            disabled_window: Duration::from_secs(1),
            reload_cycles: 10,
            worker_ticks: 3,
            settle_timeout: Duration::from_mins(1),
            request_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
        }
    }
}

/// One pass/fail criterion of a scenario, with the numbers behind the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Criterion {
    /// Its name (`served-counter-carried-over`).
    pub name: &'static str,
    /// Whether it holds.
    pub passed: bool,
    /// What was measured (`served +1201, client counted 1201 answered requests`).
    pub detail: String,
}

/// What a scenario found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioReport {
    /// The scenario.
    pub scenario: Scenario,
    /// Every criterion checked, in order.
    pub criteria: Vec<Criterion>,
    /// Measurements (for `JUnit` `system-out`).
    pub measurements: Vec<String>,
    /// Why it was skipped, if it was.
    pub skipped: Option<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl ScenarioReport {
    /// Not skipped, at least one criterion checked, and all hold.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.skipped.is_none()
            && !self.criteria.is_empty()
            && self.criteria.iter().all(|c| c.passed)
    }

    /// Not skipped and not passed.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.skipped.is_none() && !self.passed()
    }

    /// The criteria that do not hold.
    pub fn failures(&self) -> impl Iterator<Item = &Criterion> {
        self.criteria.iter().filter(|c| !c.passed)
    }

    /// Whether the criterion `name` was checked and failed.
    #[must_use]
    pub fn failed_criterion(&self, name: &str) -> bool {
        self.failures().any(|c| c.name == name)
    }

    /// The failure message: the first failed criterion, and how many others failed.
    #[must_use]
    pub fn failure_message(&self) -> Option<String> {
        let mut failures = self.failures();
        if let Some(first) = failures.next() {
            let others = failures.count();
            let more = if others > 0 {
                format!(" (and {others} other criteria)")
            } else {
                String::new()
            };
            return Some(format!(
                "criterion {} failed: {}{more}",
                first.name, first.detail
            ));
        }
        (self.skipped.is_none() && self.criteria.is_empty())
            .then(|| "no criterion was checked".to_owned())
    }

    /// Criteria and measurements as text, one per line.
    #[must_use]
    pub fn details(&self) -> String {
        let mut text = String::new();
        for c in &self.criteria {
            let verdict = if c.passed { "PASS" } else { "FAIL" };
            let _ = writeln!(text, "{verdict} {}: {}", c.name, c.detail);
        }
        for m in &self.measurements {
            let _ = writeln!(text, "  {m}");
        }
        text
    }
}

/// Why a scenario stopped early.
#[derive(Debug)]
enum Stop {
    /// The lab cannot do something the scenario needs.
    Skip(String),
    /// A failure was recorded; nothing more can be checked.
    Failed,
}

/// Collects a scenario's criteria and measurements.
#[derive(Debug, Default)]
struct Recorder {
    criteria: Vec<Criterion>,
    measurements: Vec<String>,
}

impl Recorder {
    /// Records criterion `name`; returns `passed`.
    fn check(&mut self, name: &'static str, passed: bool, detail: impl Into<String>) -> bool {
        self.criteria.push(Criterion {
            name,
            passed,
            detail: detail.into(),
        });
        passed
    }

    fn measure(&mut self, line: impl Into<String>) {
        self.measurements.push(line.into());
    }

    /// The result of a lab operation: unsupported skips the scenario, a failure fails it
    /// (`lab-operation`).
    fn lab(&mut self, what: &str, result: Result<(), LabError>) -> Result<(), Stop> {
        match result {
            Ok(()) => Ok(()),
            Err(LabError::Unsupported(why)) => Err(Stop::Skip(format!("{what}: {why}"))),
            Err(error) => {
                self.check("lab-operation", false, format!("{what} failed: {error}"));
                Err(Stop::Failed)
            }
        }
    }

    /// Fails the scenario with `control-request` (one of its own requests failed).
    fn control_failed(&mut self, what: &str, error: impl fmt::Display) -> Stop {
        self.check("control-request", false, format!("{what}: {error}"));
        Stop::Failed
    }
}

/// Runs one scenario against `lab`.
#[must_use]
pub fn run_one(lab: &Arc<dyn Lab>, scenario: Scenario, config: &ScenarioConfig) -> ScenarioReport {
    let started = Instant::now();
    let mut recorder = Recorder::default();
    let result = match scenario {
        Scenario::Smoke => cases::smoke(lab, config, &mut recorder),
        Scenario::SwapStress => cases::swap_stress(lab, config, &mut recorder),
        Scenario::WorkerSwap => cases::worker_swap(lab, config, &mut recorder),
        Scenario::DisableEnable => cases::disable_enable(lab, config, &mut recorder),
        Scenario::UnloadReload => cases::unload_reload(lab, config, &mut recorder),
    };
    let skipped = match result {
        Err(Stop::Skip(why)) => Some(why),
        Ok(()) | Err(Stop::Failed) => None,
    };
    ScenarioReport {
        scenario,
        criteria: recorder.criteria,
        measurements: recorder.measurements,
        skipped,
        elapsed: started.elapsed(),
    }
}

/// Runs `scenarios` in the order of [`Scenario::ALL`] (each once), handing each report to
/// `on_report` as it is done.
pub fn run(
    lab: &Arc<dyn Lab>,
    scenarios: &[Scenario],
    config: &ScenarioConfig,
    on_report: &mut dyn FnMut(&ScenarioReport),
) -> Vec<ScenarioReport> {
    Scenario::ALL
        .into_iter()
        .filter(|scenario| scenarios.contains(scenario))
        .map(|scenario| {
            let report = run_one(lab, scenario, config);
            on_report(&report);
            report
        })
        .collect()
}

#[cfg(test)]
mod tests;
