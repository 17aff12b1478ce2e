//! `hotswapctl --backend host demo`: the stress run of [`crate::stress`] against the WDM
//! sample's real `.sys` images in the in-process host kernel, with a hot swap from v1 to v2
//! in the middle of it, and a summary of what each build served and what the swap cost.
//!
//! The swap runs on a thread of its own once the given share of the requests has completed,
//! while the stress threads keep sending: the requests in flight in v1 drain, the ones that
//! arrive meanwhile are held, v2 takes over the counters in `ProxyStalled`, and every request
//! after that is answered by v2's machine code.

use std::{
    fmt,
    path::PathBuf,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use driver_proxy_host::image_driver::ImageSwap;
use hotswap_sample_core::DriverVersion;

use crate::{
    host::HostLab,
    lab::Lab,
    stress::{self, StressConfig, StressReport},
};

/// How much the demo sends and when it swaps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DemoConfig {
    /// The stress run.
    pub stress: StressConfig,
    /// The share of requests (0–1) completed when the swap to v2 starts.
    pub swap_at: f64,
}

/// What the demo saw.
#[derive(Debug)]
pub struct DemoReport {
    /// The stress run (answers per build, failures, the served counter before and after).
    pub stress: StressReport,
    /// The swap, if it happened (`None`: the run ended before the swap point).
    pub swap: Option<ImageSwap>,
    /// Requests completed when the swap started.
    pub swapped_after: u64,
    /// The images, v1 then v2.
    pub images: [PathBuf; 2],
    /// The driver's `DbgPrint` output during the run.
    pub driver_log: Vec<String>,
}

impl DemoReport {
    /// Requests that did not get the right answer (failed, wrong, malformed, undelivered).
    #[must_use]
    pub fn errors(&self) -> u64 {
        let s = &self.stress;
        s.failed_with.values().sum::<u64>() + s.wrong_answers + s.malformed + s.undelivered
    }

    /// Whether the demo showed what it should: both builds served, no error, no lost count,
    /// one swap.
    #[must_use]
    pub fn passed(&self) -> bool {
        // `StressReport::passed` already means no error and no lost count.
        self.stress.passed()
            && self.swap.is_some()
            && self.stress.versions() == [DriverVersion::V1, DriverVersion::V2]
    }
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answered = |v| self.stress.answered_by.get(&v).copied().unwrap_or(0);
        writeln!(f, "requests sent:       {}", self.stress.sent)?;
        writeln!(f, "  served by v1:      {}", answered(DriverVersion::V1))?;
        writeln!(f, "  served by v2:      {}", answered(DriverVersion::V2))?;
        writeln!(f, "  errors:            {}", self.errors())?;
        match self.stress.lost_counts() {
            Some(lost) => writeln!(
                f,
                "served counter:      +{} across the swap, {lost} lost",
                self.stress.served_delta().unwrap_or(0)
            )?,
            None => writeln!(f, "served counter:      could not be read")?,
        }
        match &self.swap {
            Some(swap) => {
                writeln!(
                    f,
                    "swap {} -> {} after {} requests:",
                    swap.from, swap.to, self.swapped_after
                )?;
                writeln!(
                    f,
                    "  drain:             {} (calls in v1 finishing)",
                    micros(swap.drain)
                )?;
                writeln!(
                    f,
                    "  stall:             {} (new calls held: drain + hand-over + repoint)",
                    micros(swap.stall)
                )?;
                writeln!(
                    f,
                    "  v2 DriverEntry:    {} (the whole swap, as the loader saw it)",
                    micros(swap.entry)
                )?;
            }
            None => writeln!(f, "swap: did not happen (the run ended first)")?,
        }
        writeln!(
            f,
            "elapsed:             {:.2} s",
            self.stress.elapsed.as_secs_f64()
        )?;
        writeln!(f, "images:")?;
        for image in &self.images {
            writeln!(f, "  {}", image.display())?;
        }
        if !self.driver_log.is_empty() {
            writeln!(f, "the driver said (DbgPrint):")?;
            for line in &self.driver_log {
                writeln!(f, "  {}", line.trim_end())?;
            }
        }
        write!(f, "{}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

/// Runs the demo on `lab` (which must have v1 loaded): the stress with a swap to v2 at
/// `config.swap_at`. `on_progress(n)` is called as requests complete.
///
/// # Errors
/// A connection could not be opened, or the swap failed (with its reason).
pub fn run(
    lab: &HostLab,
    config: DemoConfig,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<DemoReport, String> {
    let total = config.stress.total();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let threshold = ((total as f64) * config.swap_at.clamp(0.0, 1.0)) as u64;
    let completed = AtomicU64::new(0);
    let swapped_after = AtomicU64::new(0);
    let swap_result: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    driver_proxy_host::wdm::clear_dbg_print_log();
    let (start_swap, swap_requested) = mpsc::channel::<bool>();
    let stress = thread::scope(|scope| {
        let (completed, swapped_after, swap_result) = (&completed, &swapped_after, &swap_result);
        scope.spawn(move || {
            // `true`: swap now; `false` (or the sender gone): the run ended first.
            if swap_requested.recv() == Ok(true) {
                swapped_after.store(completed.load(Ordering::SeqCst), Ordering::SeqCst);
                let result = lab
                    .swap_to(DriverVersion::V2)
                    .map_err(|error| error.to_string());
                *swap_result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
            }
        });
        let start_swap = Mutex::new(Some(start_swap));
        let progress = |n: u64| {
            on_progress(n);
            let done = completed.fetch_add(n, Ordering::SeqCst) + n;
            if done >= threshold
                && let Some(sender) = start_swap
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
            {
                let _ = sender.send(true);
            }
        };
        let report = stress::run(|| lab.open(), config.stress, &progress);
        if let Some(sender) = start_swap
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = sender.send(false);
        }
        report
    })
    .map_err(|error| error.to_string())?;
    let swap = match swap_result
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        Some(Ok(())) => lab.swaps().pop(),
        Some(Err(error)) => return Err(format!("the swap to v2 failed: {error}")),
        None => None,
    };
    Ok(DemoReport {
        stress,
        swap,
        swapped_after: swapped_after.load(Ordering::SeqCst),
        images: [
            lab.image_path(DriverVersion::V1),
            lab.image_path(DriverVersion::V2),
        ],
        driver_log: driver_proxy_host::wdm::take_dbg_print_log(),
    })
}
