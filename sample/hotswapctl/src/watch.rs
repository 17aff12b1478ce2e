//! `watch`: polls the driver (`STATS`, whose response names the answering build) and reports
//! when what answers changes, so a hot swap is visible as it happens.
//!
//! [`Watcher`] is the change detection, a pure function of the polls; [`run`] is the loop.
//! Events:
//!
//! * the first answer ([`WatchEvent::Started`]);
//! * a swap: another build answers, or the same build answers but the driver's swap count
//!   grew, so that an even number of swaps happened between two polls
//!   ([`WatchEvent::Swapped`], with the served counter before and after, which shows that
//!   the count was carried over);
//! * the worker thread's ticks now run under another build ([`WatchEvent::WorkerSwapped`]);
//! * the served counter went backwards: a `RESET`, a reload of the driver (not a swap), or
//!   counts lost in a hand-over ([`WatchEvent::CounterWentBack`]);
//! * polling failed and, later, works again ([`WatchEvent::Failed`], [`WatchEvent::Recovered`]),
//!   for instance while the device is disabled.

use std::{
    collections::BTreeSet,
    fmt,
    time::{Duration, Instant},
};

use hotswap_sample_core::{DriverVersion, StatsInfo};

use crate::{
    backend::Backend,
    client::{Client, ClientError, Reply},
};

/// Something the watch noticed; `at` is the time since the watch started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The first answer.
    Started {
        /// When.
        at: Duration,
        /// The answering build.
        version: DriverVersion,
        /// Its counters.
        stats: StatsInfo,
    },
    /// The answering build changed, or swaps happened between two polls.
    Swapped {
        /// When.
        at: Duration,
        /// The build that answered the previous poll.
        from: DriverVersion,
        /// The build that answers now.
        to: DriverVersion,
        /// Swaps the driver counted since the previous poll.
        swaps: u32,
        /// Served counter at the previous poll.
        served_before: u64,
        /// Served counter now.
        served_after: u64,
    },
    /// The worker's ticks run under another build.
    WorkerSwapped {
        /// When.
        at: Duration,
        /// The build that ticked before (`None`: no tick yet).
        from: Option<DriverVersion>,
        /// The build that ticks now.
        to: DriverVersion,
    },
    /// The served counter is lower than at the previous poll.
    CounterWentBack {
        /// When.
        at: Duration,
        /// Previous value.
        before: u64,
        /// Current value.
        after: u64,
    },
    /// A poll failed (reported once until polling works again).
    Failed {
        /// When.
        at: Duration,
        /// Why.
        error: String,
    },
    /// Polling works again.
    Recovered {
        /// When.
        at: Duration,
        /// The answering build.
        version: DriverVersion,
    },
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started { at, version, stats } => write!(
                f,
                "[{:>8.2?}] {version} answers (served {}, worker ticks {}, swaps so far {})",
                at, stats.served, stats.worker_ticks, stats.swaps
            ),
            Self::Swapped {
                at,
                from,
                to,
                swaps,
                served_before,
                served_after,
            } => {
                let carried = if served_after > served_before {
                    "carried over"
                } else {
                    "NOT carried over"
                };
                write!(
                    f,
                    "[{at:>8.2?}] SWAP {from} -> {to} ({swaps} swap{}): served {served_before} -> {served_after}, {carried}",
                    if *swaps == 1 { "" } else { "s" }
                )
            }
            Self::WorkerSwapped {
                at,
                from: Some(from),
                to,
            } => write!(
                f,
                "[{at:>8.2?}] worker ticks now run under {to} (was {from})"
            ),
            Self::WorkerSwapped { at, from: None, to } => {
                write!(f, "[{at:>8.2?}] worker ticks run under {to}")
            }
            Self::CounterWentBack { at, before, after } => write!(
                f,
                "[{at:>8.2?}] served counter went back {before} -> {after} (RESET, reload, or lost counts)"
            ),
            Self::Failed { at, error } => write!(f, "[{at:>8.2?}] polling failed: {error}"),
            Self::Recovered { at, version } => write!(f, "[{at:>8.2?}] {version} answers again"),
        }
    }
}

/// One successful poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Observation {
    version: DriverVersion,
    stats: StatsInfo,
}

/// The change detection: feed it every poll, in order.
#[derive(Debug, Default)]
pub struct Watcher {
    last: Option<Observation>,
    failing: bool,
}

impl Watcher {
    /// A watcher that has seen nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The build that answered the last successful poll.
    #[must_use]
    pub fn current(&self) -> Option<DriverVersion> {
        self.last.map(|last| last.version)
    }

    /// Takes the result of the poll made at `at` and returns what changed.
    pub fn observe(
        &mut self,
        at: Duration,
        poll: Result<Reply<StatsInfo>, ClientError>,
    ) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        let reply = match poll {
            Ok(reply) => reply,
            Err(error) => {
                if !self.failing {
                    self.failing = true;
                    events.push(WatchEvent::Failed {
                        at,
                        error: error.to_string(),
                    });
                }
                return events;
            }
        };
        let now = Observation {
            version: reply.driver_version,
            stats: reply.value,
        };
        if std::mem::take(&mut self.failing) && self.last.is_some() {
            events.push(WatchEvent::Recovered {
                at,
                version: now.version,
            });
        }
        let Some(last) = self.last.replace(now) else {
            events.push(WatchEvent::Started {
                at,
                version: now.version,
                stats: now.stats,
            });
            return events;
        };
        let swaps = now.stats.swaps.wrapping_sub(last.stats.swaps);
        let swaps_moved = now.stats.swaps > last.stats.swaps;
        if now.version != last.version || swaps_moved {
            events.push(WatchEvent::Swapped {
                at,
                from: last.version,
                to: now.version,
                swaps: if swaps_moved { swaps } else { 0 },
                served_before: last.stats.served,
                served_after: now.stats.served,
            });
        }
        if now.stats.served < last.stats.served {
            events.push(WatchEvent::CounterWentBack {
                at,
                before: last.stats.served,
                after: now.stats.served,
            });
        }
        let worker = now.stats.last_worker_version();
        if let Some(to) = worker.filter(|&to| Some(to) != last.stats.last_worker_version()) {
            events.push(WatchEvent::WorkerSwapped {
                at,
                from: last.stats.last_worker_version(),
                to,
            });
        }
        events
    }
}

/// How to watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// Time between polls.
    pub interval: Duration,
    /// Polls to make; `None`: until the process is stopped.
    pub polls: Option<u64>,
}

/// What a watch saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchSummary {
    /// Polls made.
    pub polls: u64,
    /// Polls that failed.
    pub failed_polls: u64,
    /// Swap events seen.
    pub swaps_seen: u64,
    /// Builds that answered.
    pub versions: BTreeSet<DriverVersion>,
}

/// Polls `client` every `config.interval` (waiting with `sleep`, so tests can act between
/// polls) and hands each event to `on_event` as it is detected.
pub fn run<B: Backend>(
    client: &mut Client<B>,
    config: WatchConfig,
    sleep: &mut dyn FnMut(Duration),
    on_event: &mut dyn FnMut(&WatchEvent),
) -> WatchSummary {
    let started = Instant::now();
    let mut watcher = Watcher::new();
    let mut summary = WatchSummary::default();
    while config.polls.is_none_or(|polls| summary.polls < polls) {
        if summary.polls > 0 {
            sleep(config.interval);
        }
        let poll = client.stats();
        summary.polls += 1;
        match &poll {
            Ok(reply) => {
                summary.versions.insert(reply.driver_version);
            }
            Err(_) => summary.failed_polls += 1,
        }
        for event in watcher.observe(started.elapsed(), poll) {
            if matches!(event, WatchEvent::Swapped { .. }) {
                summary.swaps_seen += 1;
            }
            on_event(&event);
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use hotswap_sample_core::NtStatus;

    use super::*;
    use crate::fake::FakeDevice;

    #[allow(
        clippy::unnecessary_wraps,
        reason = "a successful poll, as `observe` takes it"
    )]
    fn reply(
        version: DriverVersion,
        served_v1: u64,
        served_v2: u64,
        swaps: u32,
        worker: u32,
    ) -> Result<Reply<StatsInfo>, ClientError> {
        let stats = StatsInfo {
            served: served_v1 + served_v2,
            served_v1,
            served_v2,
            swaps,
            last_worker_version: worker,
            ..StatsInfo::default()
        };
        Ok(Reply {
            driver_version: version,
            value: stats,
        })
    }

    const T: Duration = Duration::ZERO;
    const V1: DriverVersion = DriverVersion::V1;
    const V2: DriverVersion = DriverVersion::V2;

    #[test]
    fn reports_the_first_answer_then_only_changes() {
        let mut watcher = Watcher::new();
        let first = watcher.observe(T, reply(V1, 1, 0, 0, 0));
        assert!(matches!(
            first.as_slice(),
            [WatchEvent::Started { version: V1, .. }]
        ));
        assert_eq!(watcher.observe(T, reply(V1, 2, 0, 0, 0)), []);
        assert_eq!(watcher.observe(T, reply(V1, 3, 0, 0, 0)), []);
        assert_eq!(watcher.current(), Some(V1));
    }

    #[test]
    fn detects_a_swap_and_shows_the_counter_carried_over() {
        let mut watcher = Watcher::new();
        watcher.observe(T, reply(V1, 10, 0, 0, 1));
        let events = watcher.observe(T, reply(V2, 10, 1, 1, 1));
        assert_eq!(
            events,
            [WatchEvent::Swapped {
                at: T,
                from: V1,
                to: V2,
                swaps: 1,
                served_before: 10,
                served_after: 11
            }]
        );
        assert!(
            events[0]
                .to_string()
                .contains("SWAP v1 -> v2 (1 swap): served 10 -> 11, carried over")
        );
    }

    #[test]
    fn detects_swaps_between_polls_that_end_on_the_same_build() {
        let mut watcher = Watcher::new();
        watcher.observe(T, reply(V1, 10, 0, 3, 0));
        let events = watcher.observe(T, reply(V1, 11, 1, 5, 0));
        assert_eq!(
            events,
            [WatchEvent::Swapped {
                at: T,
                from: V1,
                to: V1,
                swaps: 2,
                served_before: 10,
                served_after: 12
            }]
        );
    }

    #[test]
    fn detects_counter_regressions_and_worker_changes() {
        let mut watcher = Watcher::new();
        watcher.observe(T, reply(V1, 10, 0, 0, 1));
        // A reload: fresh counters, same build, no swap.
        assert_eq!(
            watcher.observe(T, reply(V1, 1, 0, 0, 1)),
            [WatchEvent::CounterWentBack {
                at: T,
                before: 10,
                after: 1
            }]
        );
        assert_eq!(
            watcher.observe(T, reply(V1, 2, 0, 0, 2)),
            [WatchEvent::WorkerSwapped {
                at: T,
                from: Some(V1),
                to: V2
            }]
        );
    }

    #[test]
    fn reports_a_failure_once_and_the_recovery() {
        let mut watcher = Watcher::new();
        watcher.observe(T, reply(V1, 1, 0, 0, 0));
        let failed = || Err(ClientError::Status(NtStatus::INVALID_DEVICE_STATE));
        let events = watcher.observe(T, failed());
        assert!(
            matches!(events.as_slice(), [WatchEvent::Failed { error, .. }] if error.contains("STATUS_INVALID_DEVICE_STATE"))
        );
        assert_eq!(watcher.observe(T, failed()), []);
        assert_eq!(
            watcher.observe(T, reply(V1, 2, 0, 0, 0)),
            [WatchEvent::Recovered { at: T, version: V1 }]
        );
    }

    /// The loop against the fake, with swaps made between polls.
    #[test]
    fn run_sees_swaps_made_while_watching() {
        let device = FakeDevice::new(V1);
        let mut client = Client::new(device.connect());
        let mut polls_done = 0;
        let mut sleep = |_: Duration| {
            polls_done += 1;
            // Between polls 2 and 3: v1 -> v2 with a worker tick; between 4 and 5: back to v1.
            if polls_done == 2 {
                device.swap_to(V2).unwrap();
                device.run_worker(hotswap_sample_core::Wake::Timeout);
            }
            if polls_done == 4 {
                device.swap_to(V1).unwrap();
            }
        };
        let mut events = Vec::new();
        let config = WatchConfig {
            interval: Duration::from_millis(1),
            polls: Some(6),
        };
        let summary = run(&mut client, config, &mut sleep, &mut |event| {
            events.push(event.clone());
        });
        assert_eq!(summary.polls, 6);
        assert_eq!(summary.failed_polls, 0);
        assert_eq!(summary.swaps_seen, 2);
        assert_eq!(summary.versions, BTreeSet::from([V1, V2]));
        let kinds: Vec<_> = events
            .iter()
            .map(|event| match event {
                WatchEvent::Started { version, .. } => format!("start {version}"),
                WatchEvent::Swapped {
                    from,
                    to,
                    served_before,
                    served_after,
                    ..
                } => {
                    assert_eq!(
                        served_after,
                        &(served_before + 1),
                        "one STATS per poll, none lost"
                    );
                    format!("swap {from}->{to}")
                }
                WatchEvent::WorkerSwapped { to, .. } => format!("worker {to}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            ["start v1", "swap v1->v2", "worker v2", "swap v2->v1"]
        );
    }
}
