//! The five scenarios (criteria in the module docs of [`super`]).

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use hotswap_sample_core::{
    DriverVersion, StatsInfo,
    protocol::{MAX_TRANSFORM_PAYLOAD, PROTOCOL_VERSION},
};

use super::{
    Recorder, ScenarioConfig, Stop,
    workload::{self, Connections, IoResult, IoThreads, Record, wait_for},
};
use crate::{client::Reply, lab::Lab};

/// A criterion checked once per cycle, recorded once with the first failure.
struct PerCycle {
    name: &'static str,
    cycles: usize,
    failures: Vec<String>,
}

impl PerCycle {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            cycles: 0,
            failures: Vec::new(),
        }
    }

    fn cycle(&mut self, passed: bool, detail: impl FnOnce() -> String) {
        self.cycles += 1;
        if !passed {
            self.failures.push(detail());
        }
    }

    fn record(self, recorder: &mut Recorder, passing: &str) {
        let detail = match self.failures.first() {
            None => format!("{passing} in {0}/{0} cycles", self.cycles),
            Some(first) => format!(
                "failed in {} of {} cycles; first: {first}",
                self.failures.len(),
                self.cycles
            ),
        };
        recorder.check(self.name, self.failures.is_empty(), detail);
    }
}

/// `STATS` on a new connection; a failure stops the scenario (`control-request`).
fn stats_or_stop(
    lab: &Arc<dyn Lab>,
    limit: Duration,
    recorder: &mut Recorder,
) -> Result<(DriverVersion, StatsInfo), Stop> {
    workload::stats(lab, limit).map_err(|e| recorder.control_failed("STATS", e))
}

/// `VERSION` on a new connection; a failure stops the scenario (`control-request`).
fn version_or_stop(
    lab: &Arc<dyn Lab>,
    limit: Duration,
    recorder: &mut Recorder,
) -> Result<DriverVersion, Stop> {
    workload::version(lab, limit).map_err(|e| recorder.control_failed("VERSION", e))
}

/// ` (first: <outcome>)` for the first of `records`, or nothing.
fn first_outcome(records: &[&Record]) -> String {
    records
        .first()
        .map(|r| format!(" (first: {:?})", r.outcome))
        .unwrap_or_default()
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// What `smoke` got on its one connection.
struct SmokeAnswers {
    version: Reply<hotswap_sample_core::VersionInfo>,
    transforms: Vec<(Vec<u8>, Reply<Vec<u8>>)>,
    stats: StatsInfo,
}

/// `smoke`: the loaded build answers `VERSION`, `TRANSFORM` and `STATS` correctly.
pub(super) fn smoke(
    lab: &Arc<dyn Lab>,
    config: &ScenarioConfig,
    recorder: &mut Recorder,
) -> Result<(), Stop> {
    let limit = config.request_timeout;
    let (_, before) = stats_or_stop(lab, limit, recorder)?;
    let max = usize::try_from(MAX_TRANSFORM_PAYLOAD).unwrap_or(4096);
    let payloads: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"Hello, World".to_vec(),
        (0..=255).collect(),
        (0..max).map(|i| b"hot-swap "[i % 9]).collect(),
    ];
    let sent = payloads.len() as u64 + 2;
    let answers = workload::control(lab, limit * 6, move |client| {
        let version = client.version()?;
        let mut transforms = Vec::new();
        for payload in payloads {
            let reply = client.transform(&payload)?;
            transforms.push((payload, reply));
        }
        let stats = client.stats()?.value;
        Ok(SmokeAnswers {
            version,
            transforms,
            stats,
        })
    })
    .map_err(|e| recorder.control_failed("VERSION, TRANSFORM, STATS", e))?;

    let build = answers.version.driver_version;
    let info = &answers.version.value;
    recorder.check(
        "version-consistent",
        info.driver_version() == Some(build)
            && info.protocol_version == u32::from(PROTOCOL_VERSION)
            && info.max_transform_payload == MAX_TRANSFORM_PAYLOAD,
        format!(
            "header names {build}, body names build {}, protocol {} (expected {PROTOCOL_VERSION}), TRANSFORM maximum {} (expected {MAX_TRANSFORM_PAYLOAD})",
            info.driver_version, info.protocol_version, info.max_transform_payload
        ),
    );
    let expected_tag = format!("hotswap {build}");
    recorder.check(
        "build-tag",
        info.build_tag_str() == Some(expected_tag.as_str()),
        format!(
            "build tag {:?}, expected {expected_tag:?}",
            info.build_tag_str()
        ),
    );
    let wrong: Vec<String> = answers
        .transforms
        .iter()
        .filter(|(payload, reply)| {
            reply.driver_version != build
                || reply.value
                    != payload
                        .iter()
                        .map(|&b| build.transform_byte(b))
                        .collect::<Vec<_>>()
        })
        .map(|(payload, reply)| {
            format!(
                "{}-byte payload answered by {} wrongly",
                payload.len(),
                reply.driver_version
            )
        })
        .collect();
    recorder.check(
        "transform-per-build",
        wrong.is_empty(),
        if wrong.is_empty() {
            format!(
                "{} payloads (0 to {max} bytes) transformed as {build} does",
                answers.transforms.len()
            )
        } else {
            format!(
                "{} of {} wrong: {}",
                wrong.len(),
                answers.transforms.len(),
                wrong.join("; ")
            )
        },
    );
    let delta = answers.stats.served.checked_sub(before.served);
    recorder.check(
        "stats-count",
        delta == Some(sent),
        format!(
            "served counter {} -> {} ({}), {sent} requests sent",
            before.served,
            answers.stats.served,
            delta.map_or_else(|| "went back".to_owned(), |d| format!("+{d}"))
        ),
    );
    recorder.measure(format!("loaded build {build}, {sent} requests + 1 STATS"));
    Ok(())
}

/// A swap as the scenario saw it: when it started and returned (since the I/O epoch).
#[derive(Clone, Copy, Debug)]
struct SwapWindow {
    start: Duration,
    end: Duration,
    to: DriverVersion,
}

/// The builds an answer to a request made in `[start, end]` may come from.
fn allowed(
    initial: DriverVersion,
    windows: &[SwapWindow],
    start: Duration,
    end: Duration,
) -> BTreeSet<DriverVersion> {
    let before = windows
        .iter()
        .rfind(|w| w.end <= start)
        .map_or(initial, |w| w.to);
    let mut set = BTreeSet::from([before]);
    set.extend(
        windows
            .iter()
            .filter(|w| w.start < end && w.end > start)
            .map(|w| w.to),
    );
    set
}

/// `versions-change-at-swaps`: every answer comes from a build in effect while it ran, and a
/// thread's answers change build only across a swap in progress, at most once per swap.
/// Returns the violations (first few described) and the changes seen.
fn check_versions(
    initial: DriverVersion,
    windows: &[SwapWindow],
    per_thread: &[Vec<Record>],
) -> (usize, Vec<String>, usize) {
    let mut violations = 0;
    let mut described = Vec::new();
    let mut changes = 0;
    let mut violation = |text: String| {
        violations += 1;
        if described.len() < 3 {
            described.push(text);
        }
    };
    for (thread, records) in per_thread.iter().enumerate() {
        let mut last: Option<(usize, DriverVersion, Duration)> = None;
        let mut used_swap: Option<usize> = None;
        for (index, record) in records.iter().enumerate() {
            let Some(version) = record.answered() else {
                continue;
            };
            let allowed = allowed(initial, windows, record.start, record.end);
            if !allowed.contains(&version) {
                violation(format!(
                    "thread {thread} request {index} ({}..{}) answered by {version}, but only {} could answer then",
                    millis(record.start),
                    millis(record.end),
                    allowed
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("/")
                ));
            }
            if let Some((previous_index, previous, previous_start)) = last
                && previous != version
            {
                let swap = windows.iter().enumerate().position(|(i, w)| {
                    used_swap.is_none_or(|used| i > used)
                        && w.to == version
                        && w.start < record.end
                        && w.end > previous_start
                });
                if let Some(i) = swap {
                    used_swap = Some(i);
                    changes += 1;
                } else {
                    violation(format!(
                        "thread {thread}: answers changed {previous} -> {version} between requests {previous_index} and {index} with no swap in progress"
                    ));
                }
            }
            last = Some((index, version, record.start));
        }
    }
    (violations, described, changes)
}

/// `swap-stress`: I/O from several threads while the lab swaps back and forth.
#[allow(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom: run, then each criterion"
)]
pub(super) fn swap_stress(
    lab: &Arc<dyn Lab>,
    config: &ScenarioConfig,
    recorder: &mut Recorder,
) -> Result<(), Stop> {
    let limit = config.request_timeout;
    let initial = version_or_stop(lab, limit, recorder)?;
    let (_, before) = stats_or_stop(lab, limit, recorder)?;
    // Answers to the scenario's own requests after `before`, by build.
    let mut control: BTreeMap<DriverVersion, u64> = BTreeMap::new();
    let io = IoThreads::start(lab, config.threads.max(1), Connections::Persistent)
        .map_err(|e| recorder.control_failed("opening the I/O connections", e))?;
    let swaps = config.swaps.max(2).next_multiple_of(2);
    let mut windows = Vec::new();
    let mut unconfirmed = Vec::new();
    let mut current = initial;
    thread::sleep(config.pause);
    for index in 0..swaps {
        let to = current.other();
        let start = io.now();
        let result = lab.swap_to(to);
        let end = io.now();
        if let Err(stop) = recorder.lab(&format!("swap {} to {to}", index + 1), result) {
            let _ = io.finish(limit);
            return Err(stop);
        }
        windows.push(SwapWindow { start, end, to });
        match workload::version(lab, limit) {
            Ok(answer) => {
                *control.entry(answer).or_default() += 1;
                if answer != to {
                    unconfirmed.push(format!(
                        "swap {} to {to}: VERSION answered {answer}",
                        index + 1
                    ));
                }
            }
            Err(error) => unconfirmed.push(format!(
                "swap {} to {to}: VERSION failed: {error}",
                index + 1
            )),
        }
        current = to;
        thread::sleep(config.pause);
    }
    let io = io.finish(limit);
    let (last, after) = stats_or_stop(lab, limit, recorder)?;
    *control.entry(last).or_default() += 1;

    let failures: Vec<&Record> = io.all().filter(|r| r.answered().is_none()).collect();
    recorder.check(
        "no-errors",
        failures.is_empty(),
        format!(
            "{} failed of {} requests{}",
            failures.len(),
            io.sent(),
            first_outcome(&failures)
        ),
    );
    let wrong = io
        .all()
        .filter(|r| {
            matches!(
                r.outcome,
                workload::Outcome::Answered { correct: false, .. }
            )
        })
        .count();
    recorder.check(
        "correct-answers",
        wrong == 0,
        format!("{wrong} answers were not the answering build's"),
    );
    recorder.check(
        "swap-confirmed",
        unconfirmed.is_empty(),
        if unconfirmed.is_empty() {
            format!("{swaps}/{swaps} swaps confirmed by VERSION")
        } else {
            format!(
                "{} of {swaps} not confirmed: {}",
                unconfirmed.len(),
                unconfirmed.join("; ")
            )
        },
    );
    let (violations, described, changes) = check_versions(initial, &windows, &io.per_thread);
    recorder.check(
        "versions-change-at-swaps",
        violations == 0,
        if violations == 0 {
            format!(
                "every answer from the build in effect; {changes} per-thread changes, all during one of the {swaps} swaps"
            )
        } else {
            format!("{violations} violations: {}", described.join("; "))
        },
    );
    let mut answered_by: BTreeMap<DriverVersion, u64> = BTreeMap::new();
    for version in io.all().filter_map(Record::answered) {
        *answered_by.entry(version).or_default() += 1;
    }
    let workers: u64 = answered_by.values().sum();
    let own: u64 = control.values().sum();
    let expected = workers + own;
    let delta = after.served.checked_sub(before.served);
    let detail = match delta {
        Some(delta) => {
            let verdict = match delta.cmp(&expected) {
                Ordering::Equal => "none lost".to_owned(),
                Ordering::Less => format!("{} LOST", expected - delta),
                Ordering::Greater => format!("{} counted that nobody sent", delta - expected),
            };
            format!(
                "served +{delta}, client got {expected} answers ({workers} I/O + {own} own): {verdict}"
            )
        }
        None => format!(
            "served counter went back from {} to {}: counts lost",
            before.served, after.served
        ),
    };
    recorder.check(
        "served-counter-carried-over",
        delta == Some(expected),
        detail,
    );
    let mut per_version = Vec::new();
    let mut per_version_ok = true;
    for version in DriverVersion::ALL {
        let driver = after
            .served_by(version)
            .checked_sub(before.served_by(version));
        let client = answered_by.get(&version).copied().unwrap_or(0)
            + control.get(&version).copied().unwrap_or(0);
        per_version_ok &= driver == Some(client);
        per_version.push(format!(
            "{version}: driver {}, client {client}",
            driver.map_or_else(|| "went back".to_owned(), |d| format!("+{d}"))
        ));
    }
    recorder.check("served-per-version", per_version_ok, per_version.join("; "));
    let counted = after.swaps.wrapping_sub(before.swaps);
    recorder.check(
        "swap-count",
        usize::try_from(counted).ok() == Some(swaps),
        format!(
            "driver counted {counted} swaps ({} -> {}), {swaps} made",
            before.swaps, after.swaps
        ),
    );
    hang_criterion(recorder, &io, limit);
    let swap_times: Vec<Duration> = windows
        .iter()
        .map(|w| w.end.saturating_sub(w.start))
        .collect();
    recorder.measure(format!(
        "{} requests from {} threads, answered by {}",
        io.sent(),
        config.threads.max(1),
        answered_by
            .iter()
            .map(|(v, n)| format!("{v}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    recorder.measure(format!(
        "{swaps} swaps starting from {initial}; longest swap {}, longest request {}",
        millis(swap_times.iter().copied().max().unwrap_or_default()),
        millis(io.max_latency())
    ));
    Ok(())
}

fn hang_criterion(recorder: &mut Recorder, io: &IoResult, limit: Duration) {
    let (passed, detail) = io.hang_verdict(limit);
    recorder.check("none-hang", passed, detail);
}

/// Waits until `STATS` satisfies `done`, for at most `limit`.
fn wait_for_stats(
    lab: &Arc<dyn Lab>,
    config: &ScenarioConfig,
    limit: Duration,
    done: impl Fn(&StatsInfo) -> bool,
) -> Result<StatsInfo, String> {
    let interval = config.poll_interval;
    wait_for(limit, interval, || {
        match workload::stats(lab, config.request_timeout) {
            Ok((_, stats)) if done(&stats) => Ok(stats),
            Ok((_, stats)) => Err(format!(
                "worker ticks {} (v1 {}, v2 {}), last by {}",
                stats.worker_ticks,
                stats.worker_ticks_v1,
                stats.worker_ticks_v2,
                stats.last_worker_version
            )),
            Err(error) => Err(error.to_string()),
        }
    })
    .map(|(stats, _)| stats)
}

/// `worker-swap`: the worker thread's count across a swap.
pub(super) fn worker_swap(
    lab: &Arc<dyn Lab>,
    config: &ScenarioConfig,
    recorder: &mut Recorder,
) -> Result<(), Stop> {
    let limit = config.request_timeout;
    let period = lab.worker_period();
    let want = config.worker_ticks.max(1);
    let limit_for_ticks =
        config.settle_timeout + period * u32::try_from(want + 2).unwrap_or(u32::MAX);
    let (initial, start) = stats_or_stop(lab, limit, recorder)?;
    let started = Instant::now();
    let ticking = wait_for_stats(lab, config, limit_for_ticks, |s| {
        s.worker_ticks >= start.worker_ticks + want
    });
    let ok = recorder.check(
        "worker-ticks-before-swap",
        ticking.is_ok(),
        match &ticking {
            Ok(s) => format!(
                "{} ticks under {initial} in {} (period {})",
                s.worker_ticks - start.worker_ticks,
                millis(started.elapsed()),
                millis(period)
            ),
            Err(last) => format!(
                "fewer than {want} ticks within {}: {last}",
                millis(limit_for_ticks)
            ),
        },
    );
    if !ok {
        return Err(Stop::Failed);
    }
    let (_, before) = stats_or_stop(lab, limit, recorder)?;
    let new = initial.other();
    recorder.lab(&format!("swap to {new}"), lab.swap_to(new))?;
    let swapped_at = Instant::now();
    let answer = workload::version(lab, limit);
    recorder.check(
        "swap-confirmed",
        matches!(answer, Ok(v) if v == new),
        format!("VERSION after the swap to {new}: {answer:?}"),
    );
    let (_, right_after) = stats_or_stop(lab, limit, recorder)?;
    recorder.check(
        "worker-count-carried-over",
        right_after.worker_ticks >= before.worker_ticks,
        format!(
            "worker ticks {} before the swap, {} right after",
            before.worker_ticks, right_after.worker_ticks
        ),
    );
    let later = wait_for_stats(lab, config, limit_for_ticks, |s| {
        s.worker_ticks_by(new) >= right_after.worker_ticks_by(new) + want
            && s.worker_ticks >= right_after.worker_ticks + want
    });
    let last = match later {
        Ok(s) => s,
        Err(_) => stats_or_stop(lab, limit, recorder)?.1,
    };
    recorder.check(
        "worker-advances-after-swap",
        last.worker_ticks >= right_after.worker_ticks + want,
        format!(
            "worker ticks {} right after the swap, {} after {} (want +{want})",
            right_after.worker_ticks,
            last.worker_ticks,
            millis(swapped_at.elapsed())
        ),
    );
    let new_ticks = last
        .worker_ticks_by(new)
        .saturating_sub(right_after.worker_ticks_by(new));
    recorder.check(
        "worker-runs-new-version",
        new_ticks >= want && last.last_worker_version() == Some(new),
        format!(
            "{new_ticks} new ticks by {new} (want {want}); last tick by build {}",
            last.last_worker_version
        ),
    );
    recorder.check(
        "old-version-stopped",
        last.worker_ticks_by(initial) == right_after.worker_ticks_by(initial),
        format!(
            "{initial} ticks {} right after the swap, {} later",
            right_after.worker_ticks_by(initial),
            last.worker_ticks_by(initial)
        ),
    );
    recorder.lab(&format!("swap back to {initial}"), lab.swap_to(initial))?;
    match workload::version(lab, limit) {
        Ok(v) if v == initial => Ok(()),
        Ok(v) => {
            Err(recorder.control_failed("VERSION after swapping back", format!("{v} answers")))
        }
        Err(e) => Err(recorder.control_failed("VERSION after swapping back", e)),
    }
}

/// One disable/enable cycle as the scenario saw it (times since the I/O epoch).
#[derive(Debug)]
struct Cycle {
    disable_start: Duration,
    disable_end: Duration,
    absent_at: Result<Duration, String>,
    enable_start: Duration,
    present_at: Result<(Duration, DriverVersion), String>,
}

/// Waits until the device is absent; returns when it was first seen so.
fn wait_absent(lab: &Arc<dyn Lab>, config: &ScenarioConfig) -> Result<Instant, String> {
    wait_for(
        config.settle_timeout,
        config.poll_interval,
        || match workload::version(lab, config.request_timeout) {
            Err(error) if error.is_absent() => Ok(()),
            Err(error) => Err(format!("not the documented error: {error}")),
            Ok(version) => Err(format!("{version} still answers")),
        },
    )
    .map(|((), at)| at)
}

/// Waits until the device answers; returns when, and the build.
fn wait_present(
    lab: &Arc<dyn Lab>,
    config: &ScenarioConfig,
) -> Result<(Instant, DriverVersion), String> {
    wait_for(config.settle_timeout, config.poll_interval, || {
        workload::version(lab, config.request_timeout).map_err(|e| e.to_string())
    })
    .map(|(version, at)| (at, version))
}

/// `disable-enable`: disable and enable the device under I/O.
#[allow(
    clippy::too_many_lines,
    reason = "one scenario, read top to bottom: run, then each criterion"
)]
pub(super) fn disable_enable(
    lab: &Arc<dyn Lab>,
    config: &ScenarioConfig,
    recorder: &mut Recorder,
) -> Result<(), Stop> {
    let limit = config.request_timeout;
    let initial = version_or_stop(lab, limit, recorder)?;
    let io = IoThreads::start(lab, config.threads.max(1), Connections::PerRequest)
        .map_err(|e| recorder.control_failed("starting the I/O threads", e))?;
    let since = |at: Instant| at.saturating_duration_since(io.epoch);
    let mut cycles = Vec::new();
    thread::sleep(config.pause);
    for index in 0..config.disable_cycles.max(1) {
        let disable_start = io.now();
        let result = lab.disable();
        let disable_end = io.now();
        if let Err(stop) = recorder.lab(&format!("disable {}", index + 1), result) {
            let _ = io.finish(limit);
            return Err(stop);
        }
        let absent_at = wait_absent(lab, config).map(since);
        thread::sleep(config.disabled_window);
        let enable_start = io.now();
        if let Err(stop) = recorder.lab(&format!("enable {}", index + 1), lab.enable()) {
            let _ = io.finish(limit);
            return Err(stop);
        }
        let present_at = wait_present(lab, config).map(|(at, v)| (since(at), v));
        let back = present_at.is_ok();
        cycles.push(Cycle {
            disable_start,
            disable_end,
            absent_at,
            enable_start,
            present_at,
        });
        if !back {
            break;
        }
        thread::sleep(config.pause);
    }
    let io = io.finish(limit);
    let end = io.max_latency() + Duration::from_hours(1);

    let mut absent = PerCycle::new("absent-while-disabled");
    let mut silent = PerCycle::new("no-answer-while-disabled");
    let mut resumes = PerCycle::new("io-resumes-after-enable");
    for (index, cycle) in cycles.iter().enumerate() {
        absent.cycle(cycle.absent_at.is_ok(), || {
            format!(
                "cycle {}: not absent within {}: {}",
                index + 1,
                millis(config.settle_timeout),
                cycle.absent_at.as_ref().err().map_or("", String::as_str)
            )
        });
        let from = *cycle.absent_at.as_ref().unwrap_or(&cycle.disable_end);
        let answered: Vec<&Record> = io
            .all()
            .filter(|r| r.start >= from && r.end <= cycle.enable_start && r.answered().is_some())
            .collect();
        silent.cycle(answered.is_empty(), || {
            format!(
                "cycle {}: {} requests answered between {} and {} while disabled",
                index + 1,
                answered.len(),
                millis(from),
                millis(cycle.enable_start)
            )
        });
        let next = cycles
            .get(index + 1)
            .map_or(end, |next: &Cycle| next.disable_start);
        let resumption = match &cycle.present_at {
            Ok((at, version)) => {
                let io_answers = io
                    .all()
                    .filter(|r| r.start >= *at && r.end <= next && r.answered().is_some())
                    .count();
                (*version == initial && io_answers > 0).then_some(()).ok_or_else(|| {
                    format!(
                        "cycle {}: answered by {version} (before: {initial}), {io_answers} I/O answers after enable",
                        index + 1
                    )
                })
            }
            Err(last) => Err(format!(
                "cycle {}: no answer within {} of the enable: {last}",
                index + 1,
                millis(config.settle_timeout)
            )),
        };
        resumes.cycle(resumption.is_ok(), || resumption.err().unwrap_or_default());
        recorder.measure(format!(
            "cycle {}: disable took {}, absent after {}, disabled for {}, answered {} after enable",
            index + 1,
            millis(cycle.disable_end.saturating_sub(cycle.disable_start)),
            cycle.absent_at.as_ref().map_or_else(
                |_| "never".to_owned(),
                |at| millis(at.saturating_sub(cycle.disable_start))
            ),
            millis(cycle.enable_start.saturating_sub(from)),
            cycle.present_at.as_ref().map_or_else(
                |_| "never".to_owned(),
                |(at, _)| millis(at.saturating_sub(cycle.enable_start))
            ),
        ));
    }
    absent.record(recorder, "absent after each disable");
    silent.record(recorder, "no request answered while disabled");
    let undocumented: Vec<&Record> = io
        .all()
        .filter(|r| matches!(r.outcome, workload::Outcome::Failed { absent: false, .. }))
        .collect();
    let failed = io.all().filter(|r| r.answered().is_none()).count();
    recorder.check(
        "documented-error-while-disabled",
        undocumented.is_empty(),
        format!(
            "{} of {failed} failures were not the documented error{}",
            undocumented.len(),
            first_outcome(&undocumented)
        ),
    );
    let outside: Vec<&Record> = io
        .all()
        .filter(|r| r.answered().is_none())
        .filter(|r| {
            !cycles.iter().any(|c| {
                let back = c.present_at.as_ref().map_or(end, |(at, _)| *at);
                r.end > c.disable_start && r.start < back
            })
        })
        .collect();
    recorder.check(
        "no-errors-while-enabled",
        outside.is_empty(),
        format!(
            "{} requests failed while the device was enabled{}",
            outside.len(),
            first_outcome(&outside)
        ),
    );
    resumes.record(recorder, "answered again by the same build");
    hang_criterion(recorder, &io, limit);
    recorder.measure(format!(
        "{} requests from {} threads (a connection each): {} answered, {failed} failed",
        io.sent(),
        config.threads.max(1),
        io.sent() - failed
    ));
    Ok(())
}

/// `unload-reload`: unload and reload the driver, with no connection open.
pub(super) fn unload_reload(
    lab: &Arc<dyn Lab>,
    config: &ScenarioConfig,
    recorder: &mut Recorder,
) -> Result<(), Stop> {
    let limit = config.request_timeout;
    let initial = version_or_stop(lab, limit, recorder)?;
    let worker_wait = config.settle_timeout + lab.worker_period() * 3;
    let mut absent = PerCycle::new("absent-after-unload");
    let mut answers = PerCycle::new("answers-after-reload");
    let mut fresh = PerCycle::new("fresh-state-after-reload");
    let mut worker = PerCycle::new("worker-restarted");
    for index in 0..config.reload_cycles.max(1) {
        let cycle = index + 1;
        // Some traffic first, so that fresh counters are told apart from carried ones.
        let loaded = workload::control(lab, limit * 4, |client| {
            for byte in 0..20_u8 {
                client.transform(&[b'a' + byte])?;
            }
            client.stats()
        })
        .map_err(|e| recorder.control_failed("requests before the unload", e))?;
        recorder.lab(&format!("unload {cycle}"), lab.unload())?;
        let gone = wait_absent(lab, config);
        absent.cycle(gone.is_ok(), || {
            format!(
                "cycle {cycle}: {}",
                gone.as_ref().err().map_or("", String::as_str)
            )
        });
        recorder.lab(&format!("reload {cycle}"), lab.reload())?;
        let back = wait_present(lab, config);
        answers.cycle(matches!(back, Ok((_, v)) if v == initial), || {
            format!("cycle {cycle}: {back:?} (before: {initial})")
        });
        if back.is_err() {
            break;
        }
        // One VERSION answered since the reload (wait_present's last probe), then this STATS.
        let (_, stats) = stats_or_stop(lab, limit, recorder)?;
        fresh.cycle(stats.served <= 2 && stats.swaps == 0, || {
            format!(
                "cycle {cycle}: served {} and swaps {} after the reload (before the unload: served {}, swaps {})",
                stats.served, stats.swaps, loaded.value.served, loaded.value.swaps
            )
        });
        let ticking = wait_for_stats(lab, config, worker_wait, |s| s.worker_ticks >= 1);
        worker.cycle(ticking.is_ok(), || {
            format!(
                "cycle {cycle}: no worker tick within {}: {}",
                millis(worker_wait),
                ticking.as_ref().err().map_or("", String::as_str)
            )
        });
        recorder.measure(format!(
            "cycle {cycle}: served {} before the unload, {} after the reload",
            loaded.value.served, stats.served
        ));
    }
    absent.record(recorder, "absent after the unload");
    answers.record(recorder, "answered by the same build after the reload");
    fresh.record(recorder, "counters started afresh");
    worker.record(recorder, "worker ticked after the reload");
    Ok(())
}
