//! Requests from several threads, with a hot swap in the middle.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Handle, ImageSwap, TestDriver};

/// What [`TestDriver::stress`] does: `threads` threads, each opening `path` and sending
/// `requests_per_thread` requests; with `swap_to`, once `swap_after` requests have completed
/// in all, another thread hot-swaps the driver to that image while they keep sending.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stress {
    /// The device to open (one handle per thread).
    pub path: String,
    /// Sending threads.
    pub threads: usize,
    /// Requests each thread sends.
    pub requests_per_thread: u64,
    /// The image to swap to during the run, if any.
    pub swap_to: Option<PathBuf>,
    /// How many requests complete (all threads together) before the swap starts.
    pub swap_after: u64,
    /// How many failures the report keeps the messages of.
    pub keep_failures: usize,
}

impl Stress {
    /// `threads` × `requests_per_thread` requests on handles to `path`, no swap.
    #[must_use]
    pub fn new(path: &str, threads: usize, requests_per_thread: u64) -> Self {
        Self {
            path: path.to_owned(),
            threads,
            requests_per_thread,
            swap_to: None,
            swap_after: 0,
            keep_failures: 10,
        }
    }

    /// Hot-swaps to `image` once `after` requests have completed (all threads together).
    #[must_use]
    pub fn swap_to(mut self, image: impl Into<PathBuf>, after: u64) -> Self {
        self.swap_to = Some(image.into());
        self.swap_after = after;
        self
    }
}

/// What a [`TestDriver::stress`] run did.
#[derive(Debug)]
pub struct StressReport {
    /// Requests sent (the request function was called).
    pub sent: u64,
    /// Requests the function found answered correctly.
    pub succeeded: u64,
    /// Requests the function found wrong.
    pub failed: u64,
    /// The first failures' messages (`thread`, `index`, message).
    pub failures: Vec<(usize, u64, String)>,
    /// Threads that could not open the device, with the status.
    pub open_failures: Vec<String>,
    /// The swap, if one was asked for: its report, or why it failed (as text).
    pub swap: Option<Result<ImageSwap, String>>,
    /// How many requests had completed when the swap started.
    pub swapped_after: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl StressReport {
    /// Requests sent that did not come back: always 0 here, since every request is
    /// synchronous (a request that never completes stops the run with a bugcheck, or the
    /// watchdog's report); kept for the reader's arithmetic. Compare [`StressReport::sent`]
    /// with the driver's own count to find requests the driver lost.
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.sent - self.succeeded - self.failed
    }

    /// Whether every request succeeded, every thread opened the device, and the swap (if any)
    /// succeeded.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failed == 0
            && self.open_failures.is_empty()
            && self.swap.as_ref().is_none_or(Result::is_ok)
            && self.lost() == 0
    }
}

impl std::fmt::Display for StressReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, succeeded {}, failed {}, lost {} in {:.2?}",
            self.sent,
            self.succeeded,
            self.failed,
            self.lost(),
            self.elapsed
        )?;
        match &self.swap {
            Some(Ok(swap)) => write!(
                f,
                "; swap {} -> {} after {} requests: drain {:?}, stall {:?}",
                swap.from, swap.to, self.swapped_after, swap.drain, swap.stall
            )?,
            Some(Err(error)) => write!(f, "; swap FAILED: {error}")?,
            None => {}
        }
        for (thread, index, message) in &self.failures {
            write!(f, "; thread {thread} request {index}: {message}")?;
        }
        for failure in &self.open_failures {
            write!(f, "; {failure}")?;
        }
        Ok(())
    }
}

pub(super) fn run(
    driver: &TestDriver,
    stress: &Stress,
    request: &(dyn Fn(&Handle, usize, u64) -> Result<(), String> + Sync),
) -> StressReport {
    let sent = AtomicU64::new(0);
    let succeeded = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let open_failures = Mutex::new(Vec::new());
    let started = Instant::now();
    let total = stress.requests_per_thread * stress.threads as u64;
    let (swap, swapped_after) = std::thread::scope(|scope| {
        for thread in 0..stress.threads {
            let (sent, succeeded, failed) = (&sent, &succeeded, &failed);
            let (failures, open_failures) = (&failures, &open_failures);
            scope.spawn(move || {
                let handle = match driver.open(&stress.path) {
                    Ok(handle) => handle,
                    Err(status) => {
                        lock(open_failures).push(format!(
                            "thread {thread}: opening {} failed with {status}",
                            stress.path
                        ));
                        return;
                    }
                };
                for index in 0..stress.requests_per_thread {
                    sent.fetch_add(1, Ordering::SeqCst);
                    match request(&handle, thread, index) {
                        Ok(()) => {
                            succeeded.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(message) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            let mut failures = lock(failures);
                            if failures.len() < stress.keep_failures {
                                failures.push((thread, index, message));
                            }
                        }
                    }
                }
            });
        }
        let Some(image) = &stress.swap_to else {
            return (None, 0);
        };
        // The swap, on this thread, once enough requests have completed (or every thread
        // has finished or given up).
        let after = stress.swap_after.min(total);
        loop {
            let done = succeeded.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst);
            let gave_up = lock(&open_failures).len() as u64 * stress.requests_per_thread;
            if done >= after || done + gave_up >= total {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let swapped_after = succeeded.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst);
        let swap = driver.swap_to(image).map_err(|error| error.to_string());
        (Some(swap), swapped_after)
    });
    StressReport {
        sent: sent.into_inner(),
        succeeded: succeeded.into_inner(),
        failed: failed.into_inner(),
        failures: failures
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        open_failures: open_failures
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        swap,
        swapped_after,
        elapsed: started.elapsed(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
