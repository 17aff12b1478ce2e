//! Cost of a wrapper call and stall time of a swap, printed from one run.
//!
//! `cargo bench -p driver-proxy-host --bench engine` (add `-- --quick` for a short run).
//!
//! A hand-rolled harness (`harness = false`): the 2-caller + swapper measurement needs its
//! own threads, and the ratios must be measured side by side in one run, so every round runs
//! every variant once (round-robin, noise spreads evenly) and the table reports the median
//! round. The callee is `#[inline(never)] extern "C" fn(u64, u64) -> u64` (an add); the loop
//! carries a dependency (`acc = f(acc, black_box(i))`), as in the project's reference
//! benchmark (shared/reference/anchors.md, section C).
//!
//! Printed: ns/call and the ratio to a plain indirect call for a direct call, a host
//! wrapper single-threaded (and, for reference, a bare call-through thunk that counts
//! nothing: the floor of any wrapper that regains control after the call), a wrapper with 2
//! callers (ratio to a plain indirect call with 2 callers), a wrapper with 2 callers and a
//! swapper swapping every millisecond (ratio to a plain indirect call with 2 callers and a
//! third thread waking every millisecond, so both rows share the same scheduling noise);
//! then the stall and drain times of swaps (median, p99, max) with 2 callers calling
//! continuously and a swap every 100 µs.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

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

fn ns_per_call(n: u64, run: impl FnOnce() -> u64) -> f64 {
    let t = Instant::now();
    black_box(run());
    t.elapsed().as_secs_f64() * 1e9 / n as f64
}

/// Two threads each run `run` (n calls) at the same time; returns the mean per-thread
/// ns/call.
fn two_callers(n: u64, f: BinFn) -> f64 {
    let start = Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                ns_per_call(n, || run_indirect(f, n))
            })
        })
        .collect();
    let v: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    v.iter().sum::<f64>() / v.len() as f64
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, n1, n2, stall_swaps) = if quick {
        (3, 5_000_000, 2_000_000, 300)
    } else {
        (9, 30_000_000, 10_000_000, 3000)
    };

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

    let names = [
        "direct call",
        "plain indirect call (baseline, 1 thread)",
        "host wrapper, 1 thread",
        "reference: bare call-through thunk, no counting, 1 thread",
        "plain indirect call, 2 callers (baseline, 2 threads)",
        "host wrapper, 2 callers",
        "plain indirect call, 2 callers + a thread waking every 1 ms (baseline)",
        "host wrapper, 2 callers + swapper swapping every 1 ms",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut swaps_during = 0usize;
    // Warm-up.
    black_box(run_indirect(wrapped, n1 / 10));
    for _ in 0..rounds {
        samples[0].push(ns_per_call(n1, || run_direct(n1)));
        samples[1].push(ns_per_call(n1, || run_indirect(add, n1)));
        samples[2].push(ns_per_call(n1, || run_indirect(wrapped, n1)));
        samples[3].push(ns_per_call(n1, || run_indirect(floor, n1)));
        samples[4].push(two_callers(n2, add));
        samples[5].push(two_callers(n2, wrapped));
        let stop = Arc::new(AtomicBool::new(false));
        let w = waker(Duration::from_millis(1), stop.clone());
        samples[6].push(two_callers(n2, add));
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = swapper(engine.clone(), id, Duration::from_millis(1), stop.clone());
        samples[7].push(two_callers(n2, wrapped));
        stop.store(true, Ordering::Relaxed);
        swaps_during += s.join().unwrap().0.len();
    }
    let m: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();

    println!("\nwrapper call cost ({rounds} rounds, median; ratios measured in this run)");
    println!("{:<56} {:>9} {:>8}", "variant", "ns/call", "ratio");
    for (i, name) in names.iter().enumerate() {
        let base = match i {
            0..4 => m[1],
            4 | 5 => m[4],
            _ => m[6],
        };
        println!("{:<56} {:>9.2} {:>7.2}x", name, m[i], m[i] / base);
    }
    println!("(swaps during the swapper rounds: {swaps_during})");

    stall_times(&engine, id, wrapped, stall_swaps);
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
