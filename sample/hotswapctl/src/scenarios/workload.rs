//! The moving parts the scenarios share: bounded control requests, waiting for an effect,
//! and I/O threads that record every request with its time and outcome.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use hotswap_sample_core::{DriverVersion, StatsInfo};

use crate::{
    backend::Backend,
    client::{Client, ClientError},
    lab::{Lab, is_absent_error},
    stress,
};

/// Runs `work` on its own thread and waits at most `timeout` for it: `None` if it did not
/// finish (the thread is abandoned, so a hung request cannot hang the scenario).
pub(super) fn bounded<T: Send + 'static>(
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver.recv_timeout(timeout).ok()
}

/// Why a control request got no answer.
#[derive(Debug)]
pub(super) enum ControlError {
    /// The request failed.
    Client(ClientError),
    /// It did not complete in time.
    TimedOut(Duration),
}

impl ControlError {
    /// The documented failure of an absent device.
    pub(super) fn is_absent(&self) -> bool {
        matches!(self, Self::Client(error) if is_absent_error(error))
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(error) => error.fmt(f),
            Self::TimedOut(limit) => write!(f, "no answer within {limit:.2?} (hung)"),
        }
    }
}

/// `requests` on a new connection, bounded by `timeout` in all.
pub(super) fn control<T: Send + 'static>(
    lab: &Arc<dyn Lab>,
    timeout: Duration,
    requests: impl FnOnce(&mut Client<Box<dyn Backend>>) -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ControlError> {
    let lab = Arc::clone(lab);
    bounded(timeout, move || {
        let mut client = Client::new(lab.connect()?);
        requests(&mut client)
    })
    .ok_or(ControlError::TimedOut(timeout))?
    .map_err(ControlError::Client)
}

/// `VERSION` on a new connection.
pub(super) fn version(
    lab: &Arc<dyn Lab>,
    timeout: Duration,
) -> Result<DriverVersion, ControlError> {
    control(lab, timeout, Client::version).map(|reply| reply.driver_version)
}

/// `STATS` on a new connection.
pub(super) fn stats(
    lab: &Arc<dyn Lab>,
    timeout: Duration,
) -> Result<(DriverVersion, StatsInfo), ControlError> {
    control(lab, timeout, Client::stats).map(|reply| (reply.driver_version, reply.value))
}

/// Polls `probe` every `interval` until it returns `Some` or `limit` has passed; returns
/// the value and when it was seen, or the last probe's description.
pub(super) fn wait_for<T>(
    limit: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<(T, Instant), String> {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(value) => return Ok((value, Instant::now())),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => thread::sleep(interval),
        }
    }
}

/// How one request of an I/O thread ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Answered by this build; `correct`: the answer is that build's.
    Answered {
        version: DriverVersion,
        correct: bool,
    },
    /// Failed; `absent`: with the documented error of an absent device.
    Failed { absent: bool, error: String },
}

/// One request of an I/O thread: when it started and ended (since the run's epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
}

impl Record {
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    pub fn answered(&self) -> Option<DriverVersion> {
        match self.outcome {
            Outcome::Answered { version, .. } => Some(version),
            Outcome::Failed { .. } => None,
        }
    }
}

/// How the I/O threads reach the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Connections {
    /// One connection per thread, opened before the run (the handle survives swaps).
    Persistent,
    /// A new connection per request (so that no handle is held across a disable, which
    /// `PnP` could veto).
    PerRequest,
}

/// The I/O threads of a scenario; [`IoThreads::finish`] stops and collects them.
pub(super) struct IoThreads {
    stop: Arc<AtomicBool>,
    receiver: mpsc::Receiver<(usize, Vec<Record>)>,
    threads: usize,
    pub epoch: Instant,
}

/// What the I/O threads did.
#[derive(Debug, Default)]
pub(super) struct IoResult {
    /// Each thread's requests, in order; threads that did not finish are missing.
    pub per_thread: Vec<Vec<Record>>,
    /// Threads that did not finish within the limit (a request hung).
    pub hung_threads: usize,
}

impl IoResult {
    pub fn all(&self) -> impl Iterator<Item = &Record> {
        self.per_thread.iter().flatten()
    }

    pub fn sent(&self) -> usize {
        self.per_thread.iter().map(Vec::len).sum()
    }

    pub fn max_latency(&self) -> Duration {
        self.all()
            .map(Record::latency)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// The `none-hang` criterion's verdict and detail.
    pub fn hang_verdict(&self, limit: Duration) -> (bool, String) {
        let slow = self.all().filter(|r| r.latency() > limit).count();
        let passed = self.hung_threads == 0 && slow == 0;
        let detail = format!(
            "{} thread(s) still blocked in a request {limit:.2?} after the end, {slow} request(s) slower than {limit:.2?}; longest completed request {:.2?}",
            self.hung_threads,
            self.max_latency()
        );
        (passed, detail)
    }
}

impl IoThreads {
    /// Starts `threads` threads sending requests (stress's mix: `TRANSFORM`s and `VERSION`s,
    /// each answer checked against the answering build) until [`Self::finish`].
    ///
    /// # Errors
    /// With [`Connections::Persistent`], the first connection that could not be opened.
    pub fn start(
        lab: &Arc<dyn Lab>,
        threads: usize,
        connections: Connections,
    ) -> Result<Self, ClientError> {
        let mut clients = Vec::new();
        if connections == Connections::Persistent {
            for _ in 0..threads {
                clients.push(Some(Client::new(lab.connect()?)));
            }
        } else {
            clients.resize_with(threads, || None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = mpsc::channel();
        let epoch = Instant::now();
        for (thread, mut client) in clients.into_iter().enumerate() {
            let (stop, sender, lab) = (Arc::clone(&stop), sender.clone(), Arc::clone(lab));
            thread::spawn(move || {
                let mut records = Vec::new();
                let mut index = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    let start = epoch.elapsed();
                    let result = match client.as_mut() {
                        Some(client) => stress::one_request(client, thread, index),
                        None => lab
                            .connect()
                            .map_err(ClientError::from)
                            .and_then(|backend| {
                                stress::one_request(&mut Client::new(backend), thread, index)
                            }),
                    };
                    let outcome = match result {
                        Ok((version, correct)) => Outcome::Answered { version, correct },
                        Err(error) => Outcome::Failed {
                            absent: is_absent_error(&error),
                            error: error.to_string(),
                        },
                    };
                    let failed = matches!(outcome, Outcome::Failed { .. });
                    records.push(Record {
                        start,
                        end: epoch.elapsed(),
                        outcome,
                    });
                    index += 1;
                    if failed {
                        // Do not spin on a device that is away.
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                let _ = sender.send((thread, records));
            });
        }
        Ok(Self {
            stop,
            receiver,
            threads,
            epoch,
        })
    }

    /// Time since the threads started.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Stops the threads and collects their records, waiting at most `limit` for a thread
    /// still in a request.
    pub fn finish(self, limit: Duration) -> IoResult {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + limit;
        let mut per_thread = vec![None; self.threads];
        let mut received = 0;
        while received < self.threads {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok((thread, records)) => {
                    if let Some(slot) = per_thread.get_mut(thread) {
                        *slot = Some(records);
                    }
                    received += 1;
                }
                Err(_) => break,
            }
        }
        IoResult {
            hung_threads: self.threads - received,
            per_thread: per_thread.into_iter().flatten().collect(),
        }
    }
}
