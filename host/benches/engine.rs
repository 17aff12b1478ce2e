//! Cost of a wrapper call and stall time of a swap, printed from one run.
//!
//! `cargo bench -p driver-proxy-host --bench engine` (criterion; `-- --quick` for a short
//! run, `-- --test` to check that every variant runs).
//!
//! Criterion measures each variant (warm-up, sample sizes, its own statistics and change
//! detection against the previous run); every sample is also recorded here, so that the
//! table printed at the end gives the ratios of medians measured side by side in this one
//! run. The callee is `#[inline(never)] extern "C" fn(u64, u64) -> u64` (an add); the loop
//! carries a dependency (`acc = f(acc, black_box(i))`), as in the project's reference
//! benchmark (`docs/host-kernel.md#benchmarks`).
//!
//! Variants: a direct call, a plain indirect call (the baseline), a host wrapper
//! single-threaded, and, for reference, a bare call-through thunk that counts nothing (the
//! floor of any wrapper that regains control after the call); 2 callers on a plain indirect
//! call and on a wrapper; 2 callers with a third thread waking every millisecond (baseline)
//! and 2 callers on a wrapper with a swapper swapping every millisecond, so both rows share
//! the same scheduling noise. Then the stall and drain times of swaps (median, p99, max),
//! with 2 callers calling continuously and a swap every 100 µs: criterion reports means and
//! medians, not tails, so these are measured directly.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use driver_proxy_host::engine::{Engine, EngineConfig, WrapperId};

type BinFn = extern "C" fn(u64, u64) -> u64;

/// Where the reference thunk below forwards to.
static FLOOR_TARGET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// The least any wrapper that regains control after the implementation returns can do: call
// it and return (no counting, no stall check). Shown for reference: on this kind of machine
// the second call/return pair alone costs about as much as the plain indirect call.
core::arch::global_asm!(
    ".pushsection .text.bench_floor_thunk,\"ax\",@progbits",
    ".p2align 6",
    ".globl bench_floor_thunk",
    "bench_floor_thunk:",
    "sub rsp, 8",
    "call qword ptr [rip + {target}]",
    "add rsp, 8",
    "ret",
    ".popsection",
    target = sym FLOOR_TARGET,
);

unsafe extern "C" {
    fn bench_floor_thunk();
}

#[inline(never)]
extern "C" fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

#[inline(never)]
extern "C" fn add_v2(a: u64, b: u64) -> u64 {
    b.wrapping_add(a)
}

fn code(f: BinFn) -> usize {
    f as *const () as usize
}

#[inline(never)]
fn run_direct(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = add(acc, black_box(i));
    }
    acc
}

#[inline(never)]
fn run_indirect(f: BinFn, n: u64) -> u64 {
    let f = black_box(f);
    let mut acc = 0u64;
    for i in 0..n {
        acc = f(acc, black_box(i));
    }
    acc
}

/// Two threads each make `n` calls of `f` at the same time; the mean per-thread time (thread
/// start-up excluded: both start at a barrier).
fn two_callers(n: u64, f: BinFn) -> Duration {
    let start = Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let t = Instant::now();
                black_box(run_indirect(f, n));
                t.elapsed()
            })
        })
        .collect();
    let total: Duration = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total / 2
}

/// A swapper thread that swaps `id` between `add` and `add_v2` every `interval` until
/// stopped; returns the stall and drain times (ns) of every swap.
fn swapper(
    engine: Arc<Engine>,
    id: WrapperId,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(Vec<u64>, Vec<u64>)> {
    thread::spawn(move || {
        set_timer_slack();
        let mut stalls = Vec::new();
        let mut drains = Vec::new();
        let mut flip = false;
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(interval);
            let target = if flip { code(add) } else { code(add_v2) };
            flip = !flip;
            let r = engine.swap(&[(id, target)], &mut |_| Ok(())).expect("swap");
            stalls.push(u64::try_from(r.stall.as_nanos()).unwrap_or(u64::MAX));
            drains.push(u64::try_from(r.drain.as_nanos()).unwrap_or(u64::MAX));
        }
        (stalls, drains)
    })
}

/// The baseline's third thread: wakes every `interval` like the swapper, swaps nothing.
fn waker(interval: Duration, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        set_timer_slack();
        let flag = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(interval);
            flag.fetch_add(1, Ordering::SeqCst);
        }
    })
}

fn set_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer; it only affects this thread's sleeps.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// Per-iteration times of every sample criterion took of one variant, for the ratio table.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl Samples {
    /// Records one sample of `iters` calls taking `elapsed`; returns `elapsed` for criterion.
    fn record(&self, iters: u64, elapsed: Duration) -> Duration {
        let ns = elapsed.as_secs_f64() * 1e9 / iters.max(1) as f64;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ns);
        elapsed
    }

    fn median(&self) -> f64 {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

/// A measured loop: makes `n` calls, returns the accumulated result.
type Loop<'a> = dyn Fn(u64) -> u64 + 'a;

/// One measured variant: its name, and which row is its baseline.
struct Variant {
    name: &'static str,
    baseline: usize,
    samples: Samples,
}

fn timed(run: impl FnOnce() -> u64) -> Duration {
    let t = Instant::now();
    black_box(run());
    t.elapsed()
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let smoke = std::env::args().any(|a| a == "--test");

    let engine = Arc::new(Engine::new(EngineConfig::default()).expect("engine"));
    let id = engine.add_endpoint(code(add)).expect("wrapper");
    // SAFETY: the wrapper forwards to `add`/`add_v2`, both `extern "C" fn(u64, u64) -> u64`.
    let wrapped: BinFn =
        unsafe { core::mem::transmute::<usize, BinFn>(engine.wrapper_address(id)) };
    assert_eq!(wrapped(2, 3), 5);

    FLOOR_TARGET.store(code(add), Ordering::SeqCst);
    // SAFETY: the floor thunk forwards to `add` with the stack and registers untouched.
    let floor: BinFn =
        unsafe { core::mem::transmute::<usize, BinFn>(bench_floor_thunk as *const () as usize) };
    assert_eq!(floor(2, 3), 5);

    let variant = |name, baseline| Variant {
        name,
        baseline,
        samples: Samples::default(),
    };
    let variants = [
        variant("direct call", 1),
        variant("plain indirect call (baseline, 1 thread)", 1),
        variant("host wrapper, 1 thread", 1),
        variant("reference: bare call-through thunk, no counting", 1),
        variant("plain indirect call, 2 callers (baseline)", 4),
        variant("host wrapper, 2 callers", 4),
        variant("plain indirect, 2 callers + waker every 1 ms (baseline)", 6),
        variant("host wrapper, 2 callers + swapper every 1 ms", 6),
    ];

    let mut group = criterion.benchmark_group("call");
    group.throughput(Throughput::Elements(1));
    let single: [(usize, &str, &Loop<'_>); 4] = [
        (0, "direct", &run_direct),
        (1, "plain_indirect", &|n| run_indirect(add, n)),
        (2, "host_wrapper", &move |n| run_indirect(wrapped, n)),
        (3, "floor_thunk", &move |n| run_indirect(floor, n)),
    ];
    for (row, id, run) in single {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| variants[row].samples.record(iters, timed(|| run(iters))));
        });
    }
    for (row, id, f) in [
        (4, "2_callers/plain_indirect", add as BinFn),
        (5, "2_callers/host_wrapper", wrapped),
    ] {
        group.bench_function(id, |b| {
            b.iter_custom(|iters| variants[row].samples.record(iters, two_callers(iters, f)));
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let third = waker(Duration::from_millis(1), stop.clone());
    group.bench_function("2_callers_and_waker/plain_indirect", |b| {
        b.iter_custom(|iters| variants[6].samples.record(iters, two_callers(iters, add)));
    });
    stop.store(true, Ordering::Relaxed);
    third.join().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let third = swapper(engine.clone(), id, Duration::from_millis(1), stop.clone());
    group.bench_function("2_callers_and_swapper/host_wrapper", |b| {
        b.iter_custom(|iters| {
            variants[7]
                .samples
                .record(iters, two_callers(iters, wrapped))
        });
    });
    stop.store(true, Ordering::Relaxed);
    let swaps_during = third.join().unwrap().0.len();
    group.finish();
    criterion.final_summary();

    println!("\nwrapper call cost (median of criterion's samples; ratios measured in this run)");
    println!("{:<58} {:>9} {:>8}", "variant", "ns/call", "ratio");
    for v in &variants {
        let ns = v.samples.median();
        let base = variants[v.baseline].samples.median();
        println!("{:<58} {:>9.2} {:>7.2}x", v.name, ns, ns / base);
    }
    println!("(swaps during the swapper variant: {swaps_during})");
    if smoke {
        println!("(--test: one iteration per variant, the numbers above mean nothing)");
    }

    stall_times(&engine, id, wrapped, if smoke { 50 } else { 3000 });
}

/// Stall and drain times: 2 callers call continuously; a swap every 100 µs.
fn stall_times(engine: &Engine, id: WrapperId, wrapped: BinFn, stall_swaps: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let calls = calls.clone();
            thread::spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    black_box(run_indirect(wrapped, 1000));
                    k += 1000;
                }
                calls.fetch_add(k, Ordering::Relaxed);
            })
        })
        .collect();
    set_timer_slack();
    let mut stalls = Vec::with_capacity(stall_swaps);
    let mut drains = Vec::with_capacity(stall_swaps);
    let t = Instant::now();
    for k in 0..stall_swaps {
        thread::sleep(Duration::from_micros(100));
        let target = if k % 2 == 0 { code(add_v2) } else { code(add) };
        let r = engine.swap(&[(id, target)], &mut |_| Ok(())).expect("swap");
        stalls.push(u64::try_from(r.stall.as_nanos()).unwrap_or(u64::MAX));
        drains.push(u64::try_from(r.drain.as_nanos()).unwrap_or(u64::MAX));
    }
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().unwrap();
    }
    println!(
        "\nswap stall time ({stall_swaps} swaps, 2 callers calling, one swap every {:.0} µs; \
         membarrier: {})",
        elapsed.as_secs_f64() * 1e6 / stall_swaps as f64,
        Engine::uses_membarrier()
    );
    println!(
        "stall  median {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs",
        percentile(&mut stalls, 0.5) as f64 / 1e3,
        percentile(&mut stalls, 0.99) as f64 / 1e3,
        percentile(&mut stalls, 1.0) as f64 / 1e3
    );
    println!(
        "drain  median {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs",
        percentile(&mut drains, 0.5) as f64 / 1e3,
        percentile(&mut drains, 0.99) as f64 / 1e3,
        percentile(&mut drains, 1.0) as f64 / 1e3
    );
    println!("calls made meanwhile: {}", calls.load(Ordering::Relaxed));
}
