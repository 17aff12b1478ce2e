//! Stress: 2 caller threads × 20,000,000 calls each through one wrapper while a third thread
//! swaps its implementation every ≤ 100 µs. Asserts no call is lost and no call reaches an
//! implementation after the swap that retired it returned; then shows (mutation check)
//! that the same test catches the broken wrapper that drops the post-increment re-check.
//!
//! Bounded in calls, swaps and time. Run in release: `cargo test --release -p
//! driver-proxy-host --test engine_stress`.

#[macro_use]
mod engine_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy_host::engine::{Engine, EngineConfig, testing};
use engine_common::wrapper;

const CALLS_PER_CALLER: u64 = 20_000_000;
const TIME_LIMIT: Duration = Duration::from_secs(40);
/// The swapper aims at one swap per this interval (it sleeps only when ahead of schedule).
const SWAP_EVERY: Duration = Duration::from_micros(25);

/// The stress runs use both CPUs: never two at once.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Bit 0: which implementation is current (0 = A, 1 = B); bit 1: a swap is under way.
/// Written only by the swapper; read by the implementations.
struct World {
    state: AtomicU64,
    late: AtomicU64,
}

/// One caller's tallies (written only by that caller's thread).
#[derive(Default)]
struct Tally {
    a: AtomicU64,
    b: AtomicU64,
}

/// An implementation `me` ran: it is late if no swap is under way and the other one is
/// current (the swap that retired `me` has returned).
fn ran(w: &World, me: u64) {
    let s = w.state.load(Ordering::SeqCst);
    if s & 2 == 0 && s & 1 != me {
        w.late.fetch_add(1, Ordering::Relaxed);
    }
}

extern "C" fn impl_a(w: &World, t: &Tally) -> u64 {
    ran(w, 0);
    t.a.fetch_add(1, Ordering::Relaxed);
    0xA
}

extern "C" fn impl_b(w: &World, t: &Tally) -> u64 {
    ran(w, 1);
    t.b.fetch_add(1, Ordering::Relaxed);
    0xB
}

type Call = extern "C" fn(&World, &Tally) -> u64;

#[derive(Debug)]
struct Outcome {
    calls: u64,
    counted: u64,
    late: u64,
    swaps: u64,
    mean_interval: Duration,
    elapsed: Duration,
    stall_max: Duration,
}

fn set_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's sleep precision.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
}

fn stress(engine: Engine, poison: bool) -> Outcome {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    engine.set_poison_retired(poison);
    let engine = Arc::new(engine);
    let id = engine.add_endpoint(code!(impl_a)).unwrap();
    // SAFETY: both implementations are `extern "C" fn(&World, &Tally) -> u64`.
    let f: Call = unsafe { wrapper(&engine, id) };
    let world = Arc::new(World {
        state: AtomicU64::new(0),
        late: AtomicU64::new(0),
    });
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let world = world.clone();
            thread::spawn(move || {
                let tally = Tally::default();
                let mut returned = [0u64; 2];
                for _ in 0..CALLS_PER_CALLER {
                    match f(&world, &tally) {
                        0xA => returned[0] += 1,
                        0xB => returned[1] += 1,
                        other => panic!("wrong return value {other:#x}"),
                    }
                }
                let counted = tally.a.load(Ordering::Relaxed) + tally.b.load(Ordering::Relaxed);
                assert_eq!(returned[0], tally.a.load(Ordering::Relaxed));
                assert_eq!(returned[1], tally.b.load(Ordering::Relaxed));
                (CALLS_PER_CALLER, counted)
            })
        })
        .collect();
    let swapper = {
        let (engine, world, done) = (engine.clone(), world.clone(), done.clone());
        thread::spawn(move || {
            set_timer_slack();
            let mut swaps = 0u64;
            let mut stall_max = Duration::ZERO;
            let t = Instant::now();
            let mut due = t;
            while !done.load(Ordering::SeqCst) {
                assert!(t.elapsed() < TIME_LIMIT, "stress exceeded its time limit");
                let current = world.state.load(Ordering::SeqCst) & 1;
                let next = current ^ 1;
                world.state.store(current | 2, Ordering::SeqCst);
                let target = if next == 0 {
                    code!(impl_a)
                } else {
                    code!(impl_b)
                };
                let r = engine.swap(&[(id, target)], &mut |_| Ok(())).expect("swap");
                stall_max = stall_max.max(r.stall);
                world.state.store(next, Ordering::SeqCst);
                swaps += 1;
                due += SWAP_EVERY;
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                } else {
                    due = now;
                }
            }
            (swaps, t.elapsed(), stall_max)
        })
    };
    let (mut calls, mut counted) = (0, 0);
    for c in callers {
        let (n, k) = c.join().unwrap();
        calls += n;
        counted += k;
    }
    done.store(true, Ordering::SeqCst);
    let (swaps, swapping, stall_max) = swapper.join().unwrap();
    assert_eq!(engine.in_flight(), 0);
    Outcome {
        calls,
        counted,
        late: world.late.load(Ordering::SeqCst),
        swaps,
        mean_interval: swapping / u32::try_from(swaps.max(1)).unwrap_or(u32::MAX),
        elapsed: start.elapsed(),
        stall_max,
    }
}

#[test]
fn two_callers_and_a_swap_every_100us_lose_no_call_and_never_reach_a_retired_version() {
    let o = stress(Engine::new(EngineConfig::default()).unwrap(), true);
    println!("{o:?}");
    assert_eq!(o.calls, 2 * CALLS_PER_CALLER);
    assert_eq!(o.counted, o.calls, "calls lost");
    assert_eq!(
        o.late, 0,
        "calls reached an implementation after the swap that retired it"
    );
    assert!(o.swaps >= 1000, "too few swaps to mean anything: {o:?}");
    // The swapper aims at one swap per 100 µs and never sleeps when behind; on an idle
    // 2-core machine the measured mean is 33–51 µs (printed above). The bound checked here is
    // a sanity bound on the schedule (a broken one, e.g. sleeping a whole interval after each
    // swap under load, exceeds it), not a timing claim, so an overloaded machine does not
    // fail the test.
    assert!(
        o.mean_interval <= Duration::from_millis(1),
        "swaps too far apart: {o:?}"
    );
    assert!(o.elapsed < TIME_LIMIT);
    assert!(
        o.stall_max < Duration::from_secs(1),
        "a stall took {:?}",
        o.stall_max
    );
}

#[test]
fn mutation_check_the_stress_test_catches_a_wrapper_without_the_post_increment_recheck() {
    // The broken wrapper checks `stall` only before counting the call and reads the
    // implementation early. Bounded attempts; one caught race is enough.
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let o = stress(
            testing::mutant_engine(EngineConfig::default()).unwrap(),
            false,
        );
        let caught = o.late > 0 || o.counted != o.calls;
        outcomes.push(o);
        if caught {
            println!("{outcomes:?}");
            return;
        }
    }
    panic!("the stress test did not catch the broken protocol: {outcomes:?}");
}
