//! The hot swap under load, through the safe API: two caller threads call one V1 endpoint's
//! wrapper at least 1,000,000 times each while a third thread swaps it between v1 and v2 every
//! 100 µs or sooner, at least 2,000 times. Nothing may be lost, and no call may reach a version
//! after a swap away from it has returned.
//!
//! Bounded: at most 200,000 swaps and 40 s (a failure if the callers cannot make their calls
//! in that time); about 0.3–1 s on 2 cores.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy::{EndpointEntry, EndpointId, EndpointTable};
use driver_proxy_host::HostDriverObject;

use common::{extension, hotswap, leak};

type Op = extern "system" fn(u64) -> u64;

static CALLS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Version 1: answers 1.
extern "system" fn counted_v1(_: u64) -> u64 {
    CALLS[0].fetch_add(1, Ordering::Relaxed);
    1
}

/// Version 2: answers 2.
extern "system" fn counted_v2(_: u64) -> u64 {
    CALLS[1].fetch_add(1, Ordering::Relaxed);
    2
}

const ENDPOINT: EndpointId<Op> = EndpointId::new(1);
const MIN_CALLS_PER_CALLER: u64 = 1_000_000;
const SWAP_INTERVAL: Duration = Duration::from_micros(100);
const MIN_SWAPS: u64 = 2_000;
const MAX_SWAPS: u64 = 200_000;
const TIME_LIMIT: Duration = Duration::from_secs(40);

/// The swapper's progress: swap `n` (1-based) installs version `n % 2` (0 = v1, 1 = v2), so
/// version index `completed % 2` is current whenever `started == completed`.
struct Progress {
    started: AtomicU64,
    completed: AtomicU64,
}

/// What one caller saw.
#[derive(Default)]
struct CallerReport {
    answers: [u64; 2],
    /// Calls that began and ended with no swap in progress, so exactly one version was
    /// current for the whole call.
    quiet_calls: u64,
    /// Quiet calls answered by a version other than the current one: a call that reached a
    /// retired version after the swap away from it had returned.
    late: u64,
}

fn caller(
    wrapper: Op,
    progress: &Progress,
    callers_done: &AtomicU64,
    stop: &AtomicBool,
) -> CallerReport {
    let mut report = CallerReport::default();
    let mut calls = 0u64;
    while !stop.load(Ordering::Acquire) {
        let completed = progress.completed.load(Ordering::SeqCst);
        let started_before = progress.started.load(Ordering::SeqCst);
        let answer = wrapper(0);
        let started_after = progress.started.load(Ordering::SeqCst);
        let index = usize::try_from(answer - 1).expect("an answer of v1 or v2");
        report.answers[index] += 1;
        if started_before == completed && started_after == started_before {
            report.quiet_calls += 1;
            if index as u64 != completed % 2 {
                report.late += 1;
            }
        }
        calls += 1;
        if calls == MIN_CALLS_PER_CALLER {
            callers_done.fetch_add(1, Ordering::AcqRel);
        }
    }
    report
}

#[test]
fn two_callers_a_million_calls_each_and_a_swap_every_100_us_lose_nothing_and_never_run_late() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let versions = [
        EndpointTable::new([EndpointEntry::new(ENDPOINT, counted_v1 as Op)]).unwrap(),
        EndpointTable::new([EndpointEntry::new(ENDPOINT, counted_v2 as Op)]).unwrap(),
    ];
    hotswap.register(&versions[0], None).unwrap();
    let first = extension(&hotswap).swaps_completed();
    let wrapper = hotswap.wrapper(&versions[0], ENDPOINT).unwrap().get();
    let progress: &'static Progress = leak(Progress {
        started: AtomicU64::new(0),
        completed: AtomicU64::new(0),
    });
    let callers_done: &'static AtomicU64 = leak(AtomicU64::new(0));
    let stop: &'static AtomicBool = leak(AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| thread::spawn(move || caller(wrapper, progress, callers_done, stop)))
        .collect();

    let begin = Instant::now();
    let mut stalls = Vec::new();
    while callers_done.load(Ordering::Acquire) < 2
        || progress.completed.load(Ordering::Relaxed) < MIN_SWAPS
    {
        assert!(
            progress.completed.load(Ordering::Relaxed) < MAX_SWAPS && begin.elapsed() < TIME_LIMIT,
            "the callers did not make {MIN_CALLS_PER_CALLER} calls each within {MAX_SWAPS} swaps and {TIME_LIMIT:?}"
        );
        let swap = progress.started.fetch_add(1, Ordering::SeqCst) + 1;
        let index = usize::try_from(swap % 2).unwrap();
        let swap_began = Instant::now();
        hotswap.register(&versions[index], None).unwrap();
        stalls.push(swap_began.elapsed());
        progress.completed.store(swap, Ordering::SeqCst);
        let next = swap_began + SWAP_INTERVAL;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    stop.store(true, Ordering::Release);
    let reports: Vec<CallerReport> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    let elapsed = begin.elapsed();

    let swaps = progress.completed.load(Ordering::SeqCst);
    let answered = [0, 1].map(|v| reports.iter().map(|r| r.answers[v]).sum::<u64>());
    let counted = [0, 1].map(|v| CALLS[v].load(Ordering::Relaxed));
    let late: u64 = reports.iter().map(|r| r.late).sum();
    let quiet: u64 = reports.iter().map(|r| r.quiet_calls).sum();
    stalls.sort_unstable();
    println!(
        "{} calls (v1 {}, v2 {}) in {elapsed:.2?}, {swaps} swaps; {quiet} calls checked for lateness, {late} late; register() median {:?}, max {:?}",
        answered[0] + answered[1],
        answered[0],
        answered[1],
        stalls[stalls.len() / 2],
        stalls[stalls.len() - 1],
    );
    assert_eq!(
        answered, counted,
        "every call answered was counted by its version, and no more"
    );
    for report in &reports {
        assert!(report.answers.iter().sum::<u64>() >= MIN_CALLS_PER_CALLER);
    }
    assert!(
        answered[0] > 0 && answered[1] > 0,
        "both versions served: {answered:?}"
    );
    assert!(quiet > 0, "some calls ran with no swap in progress");
    assert_eq!(
        late, 0,
        "calls reached a version after the swap away from it had returned"
    );
    assert_eq!(extension(&hotswap).swaps_completed(), first + swaps);
    assert_eq!(wrapper(0), swaps % 2 + 1, "the last swap's version answers");
}
