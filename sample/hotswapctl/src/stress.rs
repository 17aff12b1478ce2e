//! `stress`: N threads × M requests, each thread on its own connection, with a tally per
//! answering build and per failure status, and a check that the driver counted every request
//! it served (across swaps, too).
//!
//! Each thread sends, for request `i`, a `VERSION` when `i % 4 == 3` and otherwise a
//! `TRANSFORM` of a payload that names the thread and the request (so payloads differ and
//! have different lengths). Every `TRANSFORM` answer is checked against the transform of the
//! build that says it answered; a mismatch is counted as a wrong answer.
//!
//! Before the threads start and after they finish, `STATS` is read on a separate
//! connection. The driver counts every request it serves, so the served counter must grow by
//! at least the requests that succeeded plus the final `STATS` itself; less means the driver
//! lost counts (for instance in a swap's hand-over). More is possible when other clients use
//! the device at the same time; a `RESET` by another client during the run makes the check
//! meaningless.

use std::{
    collections::BTreeMap,
    fmt,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use hotswap_sample_core::{DriverVersion, NtStatus, StatsInfo};

use crate::{
    backend::{Backend, BackendError},
    client::{Client, ClientError},
};

/// How much stress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StressConfig {
    /// Threads, each with its own connection (at least 1).
    pub threads: usize,
    /// Requests each thread sends.
    pub requests_per_thread: u64,
}

impl StressConfig {
    /// Requests sent in all.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.requests_per_thread.saturating_mul(self.threads as u64)
    }
}

/// What a stress run saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StressReport {
    /// Requests sent.
    pub sent: u64,
    /// Successful answers, by the build that gave them.
    pub answered_by: BTreeMap<DriverVersion, u64>,
    /// Requests the driver failed, by status.
    pub failed_with: BTreeMap<NtStatus, u64>,
    /// `TRANSFORM` answers that are not the answering build's transform of the payload.
    pub wrong_answers: u64,
    /// Responses that did not decode.
    pub malformed: u64,
    /// Requests that could not be delivered.
    pub undelivered: u64,
    /// The first undelivered request's error.
    pub first_undelivered: Option<String>,
    /// `STATS` before the threads started.
    pub stats_before: Option<StatsInfo>,
    /// `STATS` after they finished.
    pub stats_after: Option<StatsInfo>,
    /// Wall time of the threads.
    pub elapsed: Duration,
}

impl StressReport {
    /// Successful answers, all builds.
    #[must_use]
    pub fn answered(&self) -> u64 {
        self.answered_by.values().sum()
    }

    /// How much the driver's served counter grew over the run, if both reads succeeded and it
    /// did not go backwards.
    #[must_use]
    pub fn served_delta(&self) -> Option<u64> {
        let (before, after) = (self.stats_before?, self.stats_after?);
        after.served.checked_sub(before.served)
    }

    /// The growth the counter must show at least: every successful answer plus the final
    /// `STATS`.
    #[must_use]
    pub fn expected_delta(&self) -> u64 {
        self.answered() + 1
    }

    /// Served requests the driver's counter is missing (0 when it counted them all), or
    /// `None` when the counters could not be compared.
    #[must_use]
    pub fn lost_counts(&self) -> Option<u64> {
        self.served_delta()
            .map(|delta| self.expected_delta().saturating_sub(delta))
    }

    /// The builds that answered, in order.
    #[must_use]
    pub fn versions(&self) -> Vec<DriverVersion> {
        self.answered_by.keys().copied().collect()
    }

    /// No failed, wrong, malformed or undelivered request, and no lost count.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failed_with.is_empty()
            && self.wrong_answers == 0
            && self.malformed == 0
            && self.undelivered == 0
            && self.lost_counts() == Some(0)
    }

    fn merge(&mut self, other: Self) {
        self.sent += other.sent;
        for (version, count) in other.answered_by {
            *self.answered_by.entry(version).or_default() += count;
        }
        for (status, count) in other.failed_with {
            *self.failed_with.entry(status).or_default() += count;
        }
        self.wrong_answers += other.wrong_answers;
        self.malformed += other.malformed;
        self.undelivered += other.undelivered;
        if self.first_undelivered.is_none() {
            self.first_undelivered = other.first_undelivered;
        }
    }

    fn record(&mut self, outcome: Result<(DriverVersion, bool), ClientError>) {
        self.sent += 1;
        match outcome {
            Ok((version, correct)) => {
                *self.answered_by.entry(version).or_default() += 1;
                if !correct {
                    self.wrong_answers += 1;
                }
            }
            Err(ClientError::Status(status)) => *self.failed_with.entry(status).or_default() += 1,
            Err(ClientError::Request(_) | ClientError::Protocol(_)) => self.malformed += 1,
            Err(ClientError::Backend(error)) => {
                self.undelivered += 1;
                self.first_undelivered
                    .get_or_insert_with(|| error.to_string());
            }
        }
    }
}

impl fmt::Display for StressReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} requests in {:.2?}", self.sent, self.elapsed)?;
        for (version, count) in &self.answered_by {
            writeln!(f, "  answered by {version}: {count}")?;
        }
        for (status, count) in &self.failed_with {
            writeln!(f, "  failed with {status}: {count}")?;
        }
        if self.wrong_answers > 0 {
            writeln!(f, "  wrong TRANSFORM answers: {}", self.wrong_answers)?;
        }
        if self.malformed > 0 {
            writeln!(f, "  malformed responses: {}", self.malformed)?;
        }
        if let Some(error) = &self.first_undelivered {
            writeln!(f, "  not delivered: {} (first: {error})", self.undelivered)?;
        }
        match (self.served_delta(), self.lost_counts()) {
            (Some(delta), Some(0)) => writeln!(
                f,
                "  served counter: +{delta} (expected at least {}): no count lost",
                self.expected_delta()
            )?,
            (Some(delta), Some(lost)) => writeln!(
                f,
                "  served counter: +{delta} (expected at least {}): {lost} LOST",
                self.expected_delta()
            )?,
            _ => writeln!(f, "  served counter: could not be compared")?,
        }
        write!(f, "{}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

/// The payload of thread `thread`'s request `index`.
#[must_use]
pub fn payload(thread: usize, index: u64) -> Vec<u8> {
    let mut text = format!("hot-swap stress t{thread} r{index} ");
    // Vary the length: up to 7 extra letters.
    text.extend(std::iter::repeat_n(
        'x',
        usize::try_from(index % 8).unwrap_or(0),
    ));
    text.into_bytes()
}

/// Thread `thread`'s request `index` (module docs): the answering build and whether the
/// answer is that build's.
pub(crate) fn one_request<B: Backend>(
    client: &mut Client<B>,
    thread: usize,
    index: u64,
) -> Result<(DriverVersion, bool), ClientError> {
    if index % 4 == 3 {
        let reply = client.version()?;
        let consistent = reply.value.driver_version() == Some(reply.driver_version);
        return Ok((reply.driver_version, consistent));
    }
    let payload = payload(thread, index);
    let reply = client.transform(&payload)?;
    let expected: Vec<u8> = payload
        .iter()
        .map(|&b| reply.driver_version.transform_byte(b))
        .collect();
    Ok((reply.driver_version, reply.value == expected))
}

/// Runs the stress: `connect` opens one connection per thread and one for the `STATS`
/// reads; `on_progress(n)` is called as requests complete, with the number completed since
/// the last call.
///
/// # Errors
/// The first connection that could not be opened.
pub fn run<B, F>(
    connect: F,
    config: StressConfig,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<StressReport, BackendError>
where
    B: Backend,
    F: Fn() -> Result<B, BackendError> + Sync,
{
    let mut control = Client::new(connect()?);
    let stats_before = control.stats().ok().map(|reply| reply.value);
    let clients = (0..config.threads.max(1))
        .map(|_| connect().map(Client::new))
        .collect::<Result<Vec<_>, _>>()?;

    let total = Mutex::new(StressReport::default());
    let started = Instant::now();
    thread::scope(|scope| {
        for (thread, mut client) in clients.into_iter().enumerate() {
            let total = &total;
            scope.spawn(move || {
                let mut report = StressReport::default();
                for index in 0..config.requests_per_thread {
                    report.record(one_request(&mut client, thread, index));
                    on_progress(1);
                }
                total
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .merge(report);
            });
        }
    });
    let mut report = total
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    report.elapsed = started.elapsed();
    report.stats_before = stats_before;
    report.stats_after = control.stats().ok().map(|reply| reply.value);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{
            Arc,
            atomic::{AtomicU64, Ordering},
        },
    };

    use hotswap_sample_core::{Completion, IOCTL_HOTSWAP_STATS};

    use super::*;
    use crate::fake::{FakeBackend, FakeDevice};

    fn quiet(_: u64) {}

    #[test]
    fn counts_every_request_once_per_answering_version() {
        let device = FakeDevice::new(DriverVersion::V1);
        let progress = AtomicU64::new(0);
        let config = StressConfig {
            threads: 3,
            requests_per_thread: 200,
        };
        let report = run(|| Ok(device.connect()), config, &|n| {
            progress.fetch_add(n, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(report.sent, 600);
        assert_eq!(progress.load(Ordering::Relaxed), 600);
        assert_eq!(
            report.answered_by,
            BTreeMap::from([(DriverVersion::V1, 600)])
        );
        assert_eq!(report.lost_counts(), Some(0));
        assert_eq!(report.served_delta(), Some(601));
        assert!(report.passed(), "{report}");
    }

    /// Swaps happen under the stress: both builds answer, every answer matches its build,
    /// and the counter, carried across every swap, lost nothing.
    #[test]
    fn swaps_under_load_lose_no_count() {
        let device = FakeDevice::new(DriverVersion::V1);
        let swapper = device.spawn_swapper(Duration::from_micros(200));
        let config = StressConfig {
            threads: 4,
            requests_per_thread: 3000,
        };
        let report = run(|| Ok(device.connect()), config, &quiet).unwrap();
        drop(swapper);
        assert_eq!(report.sent, 12_000);
        assert_eq!(report.answered(), 12_000);
        assert_eq!(
            report.versions(),
            [DriverVersion::V1, DriverVersion::V2],
            "{report}"
        );
        assert_eq!(report.wrong_answers, 0);
        assert_eq!(report.lost_counts(), Some(0), "{report}");
        let after = report.stats_after.unwrap();
        assert!(after.swaps > 0);
        assert!(report.passed(), "{report}");
    }

    /// A backend that breaks on purpose: of every `every` requests it fails one with a
    /// status, loses one, corrupts one answer, and it answers VERSION without counting it.
    struct Faulty {
        inner: FakeBackend,
        calls: Arc<AtomicU64>,
        every: u64,
    }

    impl Backend for Faulty {
        fn device_control(
            &mut self,
            code: u32,
            input: &[u8],
            output: &mut [u8],
        ) -> Result<Completion, BackendError> {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            if code == IOCTL_HOTSWAP_STATS {
                return self.inner.device_control(code, input, output);
            }
            match n % self.every {
                0 => Ok(Completion::failed(NtStatus::INSUFFICIENT_RESOURCES)),
                1 => Err(BackendError::Io(io::Error::other("cable unplugged"))),
                2 => {
                    let done = self.inner.device_control(code, input, output)?;
                    if let Some(last) = output.get_mut(done.information.wrapping_sub(1)) {
                        *last ^= 0x01;
                    }
                    Ok(done)
                }
                // Answer VERSION (the only request without payload sent here) as the fake
                // would, but without counting it: bypass the device's state.
                _ if input.len() == 16 => {
                    let state = hotswap_sample_core::State::new();
                    Ok(hotswap_sample_core::dispatch_device_control_as(
                        DriverVersion::V1,
                        &state,
                        code,
                        input,
                        output,
                    ))
                }
                _ => self.inner.device_control(code, input, output),
            }
        }

        fn describe(&self) -> String {
            "faulty".to_owned()
        }
    }

    #[test]
    fn failures_wrong_answers_and_lost_counts_are_reported() {
        let device = FakeDevice::new(DriverVersion::V1);
        let calls = Arc::new(AtomicU64::new(0));
        let connect = || {
            Ok(Faulty {
                inner: device.connect(),
                calls: Arc::clone(&calls),
                every: 10,
            })
        };
        let config = StressConfig {
            threads: 1,
            requests_per_thread: 100,
        };
        let report = run(connect, config, &quiet).unwrap();
        assert_eq!(report.sent, 100);
        assert_eq!(
            report.failed_with,
            BTreeMap::from([(NtStatus::INSUFFICIENT_RESOURCES, 10)])
        );
        assert_eq!(report.undelivered, 10);
        assert!(
            report
                .first_undelivered
                .as_deref()
                .unwrap()
                .contains("cable unplugged")
        );
        assert!(report.wrong_answers > 0);
        assert!(report.lost_counts().unwrap() > 0, "{report}");
        assert!(!report.passed());
        let shown = report.to_string();
        assert!(shown.contains("STATUS_INSUFFICIENT_RESOURCES"), "{shown}");
        assert!(shown.contains("LOST") && shown.ends_with("FAIL"), "{shown}");
    }

    #[test]
    fn payloads_differ_per_thread_and_request() {
        assert_ne!(payload(0, 1), payload(1, 1));
        assert_ne!(payload(0, 1), payload(0, 2));
        assert_ne!(payload(0, 1).len(), payload(0, 2).len());
        assert!(payload(7, 1_000_000).len() <= 4096);
    }

    #[test]
    fn an_unreachable_device_is_an_error_not_a_report() {
        let connect =
            || -> Result<FakeBackend, _> { Err(BackendError::Unavailable("no device".into())) };
        let error = run(
            connect,
            StressConfig {
                threads: 2,
                requests_per_thread: 1,
            },
            &quiet,
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "no device");
    }
}
