//! Behaviour of wrappers and of the swap protocol, one test per statement of the engine docs.

#![allow(clippy::many_single_char_names)]

mod common;
#[macro_use]
mod engine_common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{child_scenario, run_child};
use driver_proxy_host::engine::{Engine, EngineConfig, EngineError, Phase, SwapError, WrapperId};
use engine_common::wrapper;

type Bin = extern "C" fn(u64, u64) -> u64;

extern "C" fn add(a: u64, b: u64) -> u64 {
    a + b
}
extern "C" fn mul(a: u64, b: u64) -> u64 {
    a * b
}
extern "C" fn sub(a: u64, b: u64) -> u64 {
    a - b
}

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).expect("engine")
}

fn ok_phases() -> impl FnMut(Phase) -> Result<(), i32> {
    |_| Ok(())
}

#[test]
fn a_wrapper_is_a_distinct_code_address_that_forwards_to_its_implementation() {
    let e = engine();
    let a = e.add_endpoint(code!(add)).unwrap();
    let b = e.add_endpoint(code!(add)).unwrap();
    assert_ne!(e.wrapper_address(a), e.wrapper_address(b));
    assert_ne!(e.wrapper_address(a), code!(add));
    assert_eq!(e.wrapper_at(e.wrapper_address(a)), Some(a));
    assert_eq!(e.wrapper_at(e.wrapper_address(b)), Some(b));
    assert_eq!(e.wrapper_at(code!(add)), None);
    assert_eq!(e.wrapper_at(e.wrapper_address(a) + 1), None);
    assert_eq!(e.current_target(a), code!(add));
    // SAFETY: the wrapper forwards to `add`.
    let f: Bin = unsafe { wrapper(&e, a) };
    assert_eq!(f(40, 2), 42);
    assert_eq!(e.in_flight(), 0);
    assert_eq!(e.wrappers(), vec![a, b]);
}

#[test]
fn a_wrapper_of_another_engine_is_not_found_and_cannot_be_swapped() {
    let e1 = engine();
    let e2 = engine();
    let a = e1.add_endpoint(code!(add)).unwrap();
    assert_eq!(e2.wrapper_at(e1.wrapper_address(a)), None);
    let mut delivered = 0;
    let r = e2.swap(&[(a, code!(mul))], &mut |_| {
        delivered += 1;
        Ok(())
    });
    assert_eq!(r, Err(SwapError::InvalidChange { id: a }));
    assert_eq!(delivered, 0, "no callback for an invalid change");
    assert_eq!(e1.current_target(a), code!(add));
}

#[test]
fn max_endpoints_and_null_targets_are_refused() {
    let e = Engine::new(EngineConfig {
        max_endpoints: 2,
        ..EngineConfig::default()
    })
    .unwrap();
    e.add_endpoint(code!(add)).unwrap();
    assert_eq!(e.add_endpoint(0), Err(EngineError::NullTarget));
    e.add_endpoint(code!(add)).unwrap();
    assert_eq!(e.add_endpoint(code!(add)), Err(EngineError::OutOfWrappers));
    assert_eq!(e.endpoint_count(), 2);
}

#[test]
fn a_swap_repoints_every_changed_wrapper_in_one_generation_and_leaves_the_others() {
    let e = engine();
    let a = e.add_endpoint(code!(add)).unwrap();
    let b = e.add_endpoint(code!(add)).unwrap();
    let c = e.add_endpoint(code!(add)).unwrap();
    let g0 = e.generation();
    let r = e
        .swap(&[(a, code!(mul)), (b, code!(sub))], &mut ok_phases())
        .unwrap();
    assert_eq!(r.generation, g0 + 1);
    assert_eq!(e.generation(), g0 + 1);
    // SAFETY: all three forward to `extern "C" fn(u64, u64) -> u64`.
    let (fa, fb, fc): (Bin, Bin, Bin) = unsafe { (wrapper(&e, a), wrapper(&e, b), wrapper(&e, c)) };
    assert_eq!((fa(6, 7), fb(9, 2), fc(1, 2)), (42, 7, 3));
    assert_eq!(e.current_target(c), code!(add));
    assert!(r.stall >= r.drain);
    assert_eq!(e.swaps_completed(), 1);
}

#[test]
fn phases_come_in_order_and_only_proxy_stalled_holds_calls_with_none_in_flight() {
    let e = Arc::new(engine());
    let a = e.add_endpoint(code!(add)).unwrap();
    let seen = Mutex::new(Vec::new());
    let e2 = e.clone();
    e.swap(&[(a, code!(mul))], &mut |phase| {
        seen.lock()
            .unwrap()
            .push((phase, e2.is_stalled(), e2.in_flight(), e2.current_target(a)));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (Phase::PreProcess, false, 0, code!(add)),
            (Phase::ProxyStalled, true, 0, code!(add)),
            (Phase::PostProcess, false, 0, code!(mul)),
        ]
    );
    assert_eq!(Phase::ProxyStalled.as_raw(), 1);
}

/// `in_flight()` reports what runs: in `ProxyStalled` it is 0 on every swap, although callers
/// hammering the wrappers count themselves for an instant before they see the stall and undo
/// the count (the sum of the counters was seen above 0 there in about 1 swap in 100).
#[test]
fn in_proxy_stalled_no_call_is_reported_in_flight_while_callers_keep_calling() {
    let e = Arc::new(engine());
    let a = e.add_endpoint(code!(add)).unwrap();
    // SAFETY: the wrapper forwards to `add` or `mul`, both `Bin`.
    let f: Bin = unsafe { wrapper(&e, a) };
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = f(3, 4);
                    assert!(r == 7 || r == 12, "{r}");
                    calls += 1;
                    // Some work between calls, so that callers keep arriving during a stall.
                    for i in 0..200u64 {
                        std::hint::black_box(i);
                    }
                }
                calls
            })
        })
        .collect();
    let mut reported = Vec::new();
    for i in 0..1000 {
        let target = if i % 2 == 0 { code!(mul) } else { code!(add) };
        let e2 = e.clone();
        e.swap(&[(a, target)], &mut |phase| {
            if phase == Phase::ProxyStalled {
                // Look for a while: callers arrive, count themselves, see the stall, undo.
                let most = (0..2000).map(|_| e2.in_flight()).max().unwrap_or(0);
                reported.push(most);
            }
            Ok(())
        })
        .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = callers.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(calls > 0);
    assert_eq!(reported.len(), 1000);
    assert!(
        reported.iter().all(|&n| n == 0),
        "in flight in ProxyStalled: {:?}",
        reported.iter().filter(|&&n| n != 0).collect::<Vec<_>>()
    );
}

/// An endpoint that blocks until told to go: `gate` = (entered, go).
struct Gate {
    entered: AtomicU64,
    go: AtomicBool,
    v1_calls: AtomicU64,
    v2_calls: AtomicU64,
    v1_after_swap: AtomicU64,
    swap_returned: AtomicBool,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            entered: AtomicU64::new(0),
            go: AtomicBool::new(false),
            v1_calls: AtomicU64::new(0),
            v2_calls: AtomicU64::new(0),
            v1_after_swap: AtomicU64::new(0),
            swap_returned: AtomicBool::new(false),
        })
    }
}

/// v1: if `block`, announce and wait for `go`.
extern "C" fn gate_v1(gate: &Gate, block: u64) -> u64 {
    if gate.swap_returned.load(Ordering::SeqCst) {
        gate.v1_after_swap.fetch_add(1, Ordering::SeqCst);
    }
    gate.v1_calls.fetch_add(1, Ordering::SeqCst);
    if block != 0 {
        gate.entered.fetch_add(1, Ordering::SeqCst);
        while !gate.go.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    1
}

extern "C" fn gate_v2(gate: &Gate, _block: u64) -> u64 {
    gate.v2_calls.fetch_add(1, Ordering::SeqCst);
    2
}

type GateFn = extern "C" fn(&Gate, u64) -> u64;

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_call_blocked_in_v1_keeps_the_swap_waiting_and_calls_arriving_during_the_stall_reach_v2() {
    let e = Arc::new(engine());
    let id = e.add_endpoint(code!(gate_v1)).unwrap();
    // SAFETY: both versions are `extern "C" fn(&Gate, u64) -> u64`.
    let f: GateFn = unsafe { wrapper(&e, id) };
    let gate = Gate::new();
    let blocked = {
        let gate = gate.clone();
        thread::spawn(move || f(&gate, 1))
    };
    wait_until("the v1 call is inside", || {
        gate.entered.load(Ordering::SeqCst) == 1
    });
    assert_eq!(e.in_flight(), 1);
    let swapper = {
        let (e, gate) = (e.clone(), gate.clone());
        thread::spawn(move || {
            let r = e.swap(&[(id, code!(gate_v2))], &mut |_| Ok(()));
            gate.swap_returned.store(true, Ordering::SeqCst);
            r
        })
    };
    wait_until("the engine is stalled", || e.is_stalled());
    let late: Vec<_> = (0..4)
        .map(|_| {
            let gate = gate.clone();
            thread::spawn(move || f(&gate, 0))
        })
        .collect();
    wait_until("4 late callers are held", || e.held_callers() == 4);
    thread::sleep(Duration::from_millis(100));
    assert!(
        !swapper.is_finished(),
        "the swap finished while a v1 call was in flight"
    );
    assert_eq!(
        gate.v2_calls.load(Ordering::SeqCst),
        0,
        "a late call ran during the stall"
    );
    assert_eq!(e.current_target(id), code!(gate_v1));
    gate.go.store(true, Ordering::SeqCst);
    assert_eq!(blocked.join().unwrap(), 1);
    let report = swapper.join().unwrap().expect("swap");
    assert!(report.drain >= Duration::from_millis(100), "{report:?}");
    assert_eq!(report.in_flight_at_stall, 1);
    for l in late {
        assert_eq!(
            l.join().unwrap(),
            2,
            "a held call ran the old implementation"
        );
    }
    assert_eq!(gate.v1_calls.load(Ordering::SeqCst), 1);
    assert_eq!(gate.v2_calls.load(Ordering::SeqCst), 4);
    assert_eq!(f(&gate, 0), 2);
    assert_eq!(gate.v1_after_swap.load(Ordering::SeqCst), 0);
    assert_eq!(e.in_flight(), 0);
    assert_eq!(e.held_callers(), 0);
}

#[test]
fn a_drain_timeout_releases_held_calls_to_the_old_version_and_changes_nothing() {
    let e = Arc::new(engine());
    let id = e.add_endpoint(code!(gate_v1)).unwrap();
    let other = e.add_endpoint(code!(add)).unwrap();
    // SAFETY: `extern "C" fn(&Gate, u64) -> u64`.
    let f: GateFn = unsafe { wrapper(&e, id) };
    let gate = Gate::new();
    let blocked = {
        let gate = gate.clone();
        thread::spawn(move || f(&gate, 1))
    };
    wait_until("the v1 call is inside", || {
        gate.entered.load(Ordering::SeqCst) == 1
    });
    let g0 = e.generation();
    let phases = Arc::new(Mutex::new(Vec::new()));
    let swapper = {
        let (e, phases) = (e.clone(), phases.clone());
        thread::spawn(move || {
            e.swap_with_timeout(
                &[(id, code!(gate_v2)), (other, code!(mul))],
                &mut |p| {
                    phases.lock().unwrap().push(p);
                    Ok(())
                },
                Duration::from_millis(300),
            )
        })
    };
    wait_until("the engine is stalled", || e.is_stalled());
    let late = {
        let gate = gate.clone();
        thread::spawn(move || f(&gate, 0))
    };
    let r = swapper.join().unwrap();
    assert_eq!(r, Err(SwapError::DrainTimeout { in_flight: 1 }));
    assert_eq!(
        late.join().unwrap(),
        1,
        "the held call was not released to the old version"
    );
    assert_eq!(*phases.lock().unwrap(), vec![Phase::PreProcess]);
    assert_eq!(e.generation(), g0);
    assert_eq!(e.current_target(id), code!(gate_v1));
    assert_eq!(e.current_target(other), code!(add));
    assert!(!e.is_stalled());
    gate.go.store(true, Ordering::SeqCst);
    blocked.join().unwrap();
    assert_eq!(f(&gate, 0), 1);
    assert_eq!(gate.v2_calls.load(Ordering::SeqCst), 0);
    assert_eq!(e.swaps_failed(), 1);
}

#[test]
fn a_callback_failure_in_any_phase_rolls_the_swap_back() {
    for failing in [Phase::PreProcess, Phase::ProxyStalled, Phase::PostProcess] {
        let e = engine();
        let a = e.add_endpoint(code!(add)).unwrap();
        let b = e.add_endpoint(code!(sub)).unwrap();
        let g0 = e.generation();
        let mut delivered = Vec::new();
        let r = e.swap(&[(a, code!(mul)), (b, code!(mul))], &mut |p| {
            delivered.push(p);
            if p == failing {
                Err(-0x3fff_fff0)
            } else {
                Ok(())
            }
        });
        assert_eq!(
            r,
            Err(SwapError::Callback {
                phase: failing,
                status: -0x3fff_fff0
            })
        );
        let expected: Vec<Phase> = [Phase::PreProcess, Phase::ProxyStalled, Phase::PostProcess]
            .into_iter()
            .take_while(|p| *p != failing)
            .chain([failing])
            .collect();
        assert_eq!(
            delivered, expected,
            "phases after the failure must not be delivered"
        );
        assert_eq!(
            (e.current_target(a), e.current_target(b)),
            (code!(add), code!(sub))
        );
        // SAFETY: both forward to `extern "C" fn(u64, u64) -> u64`.
        let (fa, fb): (Bin, Bin) = unsafe { (wrapper(&e, a), wrapper(&e, b)) };
        assert_eq!(
            (fa(6, 7), fb(9, 2)),
            (13, 7),
            "{failing:?}: calls do not reach the old code"
        );
        // A PostProcess failure repoints forward then back: two generations, same targets.
        let expected_generation = if failing == Phase::PostProcess {
            g0 + 2
        } else {
            g0
        };
        assert_eq!(e.generation(), expected_generation, "{failing:?}");
        assert!(!e.is_stalled());
    }
}

// ---- nesting, recursion, tail calls ----

struct Nest {
    engine: Arc<Engine>,
    inner: AtomicUsize,
    seen_in_flight: AtomicU64,
}

extern "C" fn inner_ep(nest: &Nest, x: u64) -> u64 {
    nest.seen_in_flight
        .store(nest.engine.in_flight(), Ordering::SeqCst);
    x + 1
}

extern "C" fn outer_ep(nest: &Nest, x: u64) -> u64 {
    // SAFETY: `inner` holds the wrapper of `inner_ep`.
    let inner: extern "C" fn(&Nest, u64) -> u64 =
        unsafe { core::mem::transmute::<usize, _>(nest.inner.load(Ordering::SeqCst)) };
    inner(nest, x) * 10
}

#[test]
fn a_wrapper_called_from_inside_an_endpoint_counts_both_calls() {
    let e = Arc::new(engine());
    let outer = e.add_endpoint(code!(outer_ep)).unwrap();
    let inner = e.add_endpoint(code!(inner_ep)).unwrap();
    let nest = Nest {
        engine: e.clone(),
        inner: AtomicUsize::new(e.wrapper_address(inner)),
        seen_in_flight: AtomicU64::new(0),
    };
    // SAFETY: `extern "C" fn(&Nest, u64) -> u64`.
    let f: extern "C" fn(&Nest, u64) -> u64 = unsafe { wrapper(&e, outer) };
    assert_eq!(f(&nest, 4), 50);
    assert_eq!(nest.seen_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(e.in_flight(), 0);
}

struct Rec {
    engine: Arc<Engine>,
    me: AtomicUsize,
    deepest_in_flight: AtomicU64,
}

extern "C" fn recurse(r: &Rec, depth: u64) -> u64 {
    if depth == 0 {
        r.deepest_in_flight
            .store(r.engine.in_flight(), Ordering::SeqCst);
        return 0;
    }
    // SAFETY: `me` is this endpoint's own wrapper.
    let again: extern "C" fn(&Rec, u64) -> u64 =
        unsafe { core::mem::transmute::<usize, _>(r.me.load(Ordering::SeqCst)) };
    again(r, depth - 1) + depth
}

#[test]
fn an_endpoint_recursing_100_levels_through_its_own_wrapper_counts_every_level() {
    let e = Arc::new(engine());
    let id = e.add_endpoint(code!(recurse)).unwrap();
    let r = Rec {
        engine: e.clone(),
        me: AtomicUsize::new(e.wrapper_address(id)),
        deepest_in_flight: AtomicU64::new(0),
    };
    // SAFETY: `extern "C" fn(&Rec, u64) -> u64`.
    let f: extern "C" fn(&Rec, u64) -> u64 = unsafe { wrapper(&e, id) };
    assert_eq!(f(&r, 100), 5050);
    assert_eq!(r.deepest_in_flight.load(Ordering::SeqCst), 101);
    assert_eq!(e.in_flight(), 0);
}

/// Wrapper address a tail-calling endpoint jumps to (one test uses it).
static TAIL_TARGET: AtomicUsize = AtomicUsize::new(0);

core::arch::global_asm!(
    ".pushsection .text.engine_tail_ep,\"ax\",@progbits",
    ".globl engine_test_tail_ep",
    "engine_test_tail_ep:",
    "add rsi, 1000",
    "jmp qword ptr [rip + {target}]",
    ".popsection",
    target = sym TAIL_TARGET,
);

unsafe extern "C" {
    /// `extern "C" fn(&Nest, u64) -> u64`: adds 1000 to its argument and tail-jumps to the
    /// wrapper in `TAIL_TARGET` (no frame of its own).
    fn engine_test_tail_ep();
}

#[test]
fn an_endpoint_tail_jumping_into_another_wrapper_returns_through_both() {
    let e = Arc::new(engine());
    let first = e.add_endpoint(code!(engine_test_tail_ep)).unwrap();
    let second = e.add_endpoint(code!(inner_ep)).unwrap();
    TAIL_TARGET.store(e.wrapper_address(second), Ordering::SeqCst);
    let nest = Nest {
        engine: e.clone(),
        inner: AtomicUsize::new(0),
        seen_in_flight: AtomicU64::new(0),
    };
    // SAFETY: the tail-calling endpoint has `inner_ep`'s signature.
    let f: extern "C" fn(&Nest, u64) -> u64 = unsafe { wrapper(&e, first) };
    for _ in 0..3 {
        assert_eq!(f(&nest, 1), 1002);
        assert_eq!(
            nest.seen_in_flight.load(Ordering::SeqCst),
            2,
            "both calls in flight"
        );
        assert_eq!(e.in_flight(), 0);
    }
}

// ---- the policy for calls of the engine's own wrappers during a drain ----

struct Policy {
    engine: Arc<Engine>,
    nested: AtomicUsize,
    stalled_seen: AtomicBool,
    nested_result: AtomicU64,
}

extern "C" fn nested_v1(_p: &Policy, _x: u64) -> u64 {
    1
}
extern "C" fn nested_v2(_p: &Policy, _x: u64) -> u64 {
    2
}

/// Waits until the engine stalls (a drain waits for this very call), then calls another
/// wrapper of the same engine.
extern "C" fn outer_waiting_for_stall(p: &Policy, _x: u64) -> u64 {
    let t = Instant::now();
    while !p.engine.is_stalled() {
        assert!(t.elapsed() < Duration::from_secs(10));
        thread::yield_now();
    }
    p.stalled_seen.store(true, Ordering::SeqCst);
    // SAFETY: `nested` is the wrapper of nested_v1/v2.
    let nested: extern "C" fn(&Policy, u64) -> u64 =
        unsafe { core::mem::transmute::<usize, _>(p.nested.load(Ordering::SeqCst)) };
    let r = nested(p, 0);
    p.nested_result.store(r, Ordering::SeqCst);
    r
}

#[test]
fn an_endpoint_calling_its_own_engine_during_the_drain_is_let_through_to_the_old_version() {
    let e = Arc::new(engine());
    let outer = e.add_endpoint(code!(outer_waiting_for_stall)).unwrap();
    let nested = e.add_endpoint(code!(nested_v1)).unwrap();
    let p = Arc::new(Policy {
        engine: e.clone(),
        nested: AtomicUsize::new(e.wrapper_address(nested)),
        stalled_seen: AtomicBool::new(false),
        nested_result: AtomicU64::new(0),
    });
    // SAFETY: `extern "C" fn(&Policy, u64) -> u64`.
    let f: extern "C" fn(&Policy, u64) -> u64 = unsafe { wrapper(&e, outer) };
    let caller = {
        let p = p.clone();
        thread::spawn(move || f(&p, 0))
    };
    // Let the caller enter before the swap stalls.
    wait_until("the outer call is in flight", || e.in_flight() == 1);
    let r = e.swap_with_timeout(
        &[(nested, code!(nested_v2))],
        &mut |_| Ok(()),
        Duration::from_secs(5),
    );
    assert!(r.is_ok(), "{r:?}");
    assert!(p.stalled_seen.load(Ordering::SeqCst));
    assert_eq!(
        caller.join().unwrap(),
        1,
        "the nested call must run the old version"
    );
    assert_eq!(p.nested_result.load(Ordering::SeqCst), 1);
    // SAFETY: as above.
    let g: extern "C" fn(&Policy, u64) -> u64 = unsafe { wrapper(&e, nested) };
    assert_eq!(g(&p, 0), 2);
}

struct SelfSwap {
    engine: Arc<Engine>,
    me: WrapperId,
    result: Mutex<Option<Result<(), SwapError>>>,
    took: Mutex<Duration>,
}

extern "C" fn swaps_itself(s: &SelfSwap, _x: u64) -> u64 {
    let t = Instant::now();
    let r = s.engine.swap_with_timeout(
        &[(s.me, code!(add))],
        &mut |_| Ok(()),
        Duration::from_secs(5),
    );
    *s.took.lock().unwrap() = t.elapsed();
    *s.result.lock().unwrap() = Some(r.map(|_| ()));
    7
}

#[test]
fn a_swap_started_from_inside_an_endpoint_of_the_engine_fails_at_once_with_nothing_changed() {
    let e = Arc::new(engine());
    let id = e.add_endpoint(code!(swaps_itself)).unwrap();
    let s = SelfSwap {
        engine: e.clone(),
        me: id,
        result: Mutex::new(None),
        took: Mutex::new(Duration::ZERO),
    };
    // SAFETY: `extern "C" fn(&SelfSwap, u64) -> u64`.
    let f: extern "C" fn(&SelfSwap, u64) -> u64 = unsafe { wrapper(&e, id) };
    assert_eq!(f(&s, 0), 7);
    assert_eq!(
        *s.result.lock().unwrap(),
        Some(Err(SwapError::DrainTimeout { in_flight: 1 }))
    );
    assert!(
        *s.took.lock().unwrap() < Duration::from_secs(1),
        "it waited for the timeout"
    );
    assert_eq!(e.current_target(id), code!(swaps_itself));
}

// ---- loud failures (each in a child process) ----

const CHILD_ENTRY: &str = "child_process_entry";

/// Runs a scenario that must abort the process (only when started by `run_child`).
#[test]
fn child_process_entry() {
    let Some(scenario) = child_scenario() else {
        return;
    };
    match scenario.as_str() {
        "stalled-callback-calls-own-wrapper" => {
            let e = engine();
            let a = e.add_endpoint(code!(add)).unwrap();
            // SAFETY: forwards to `add`.
            let f: Bin = unsafe { wrapper(&e, a) };
            let _ = e.swap(&[(a, code!(mul))], &mut |p| {
                if p == Phase::ProxyStalled {
                    f(1, 2);
                }
                Ok(())
            });
        }
        "call-after-drop" => {
            let e = engine();
            let a = e.add_endpoint(code!(add)).unwrap();
            // SAFETY: forwards to `add` (until the engine is dropped).
            let f: Bin = unsafe { wrapper(&e, a) };
            drop(e);
            f(1, 2);
        }
        "late-call-reaches-poisoned-version" => late_call_reaches_poisoned_version(),
        other => panic!("unknown scenario {other}"),
    }
    println!("SCENARIO RETURNED");
}

/// A caller that read v1's record before the swap and reaches it after the swap returned
/// (made deterministic with the broken wrapper and a long delay in its race window).
fn late_call_reaches_poisoned_version() {
    let e = Arc::new(
        driver_proxy_host::engine::testing::mutant_engine(EngineConfig::default()).unwrap(),
    );
    e.set_poison_retired(true);
    let id = e.add_endpoint(code!(add)).unwrap();
    // SAFETY: forwards to `add`/`mul`.
    let f: Bin = unsafe { wrapper(&e, id) };
    let (registered, go) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let late = {
        let (registered, go) = (registered.clone(), go.clone());
        thread::spawn(move || {
            assert_eq!(f(1, 2), 3); // registers this thread (slow path); no delay yet
            registered.wait();
            go.wait();
            f(2, 3)
        })
    };
    registered.wait();
    driver_proxy_host::engine::testing::set_mutant_delay(40_000_000);
    go.wait();
    thread::sleep(Duration::from_millis(100));
    let r = e.swap(&[(id, code!(mul))], &mut |_| Ok(()));
    println!("swap returned {r:?}");
    late.join().unwrap();
}

fn assert_aborted_with(scenario: &str, message: &str) {
    let out = run_child(CHILD_ENTRY, scenario);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "{scenario}: the child succeeded\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("SCENARIO RETURNED"),
        "{scenario}: returned\n{stdout}"
    );
    assert!(
        stderr.contains(message),
        "{scenario}: stderr lacks {message:?}:\n{stderr}"
    );
}

#[test]
fn the_proxy_stalled_callback_calling_a_wrapper_of_its_own_engine_aborts_loudly() {
    assert_aborted_with(
        "stalled-callback-calls-own-wrapper",
        "ProxyStalled callback called a wrapper",
    );
}

#[test]
fn calling_a_wrapper_of_a_dropped_engine_aborts_loudly() {
    assert_aborted_with(
        "call-after-drop",
        "a wrapper of a dropped engine was called",
    );
}

#[test]
fn a_late_call_reaching_a_poisoned_retired_version_aborts_loudly() {
    assert_aborted_with(
        "late-call-reaches-poisoned-version",
        "POISONED: a call reached retired implementation",
    );
}

#[test]
fn dropping_an_engine_returns_its_wrappers_and_index() {
    // Creating and dropping many engines must not exhaust engine indices or slots.
    for _ in 0..2000 {
        let e = engine();
        let a = e.add_endpoint(code!(add)).unwrap();
        // SAFETY: forwards to `add`.
        let f: Bin = unsafe { wrapper(&e, a) };
        assert_eq!(f(1, 1), 2);
    }
}

#[test]
fn a_thread_that_exits_releases_its_record_for_reuse() {
    let e = Arc::new(engine());
    let a = e.add_endpoint(code!(add)).unwrap();
    // SAFETY: forwards to `add`.
    let f: Bin = unsafe { wrapper(&e, a) };
    for _ in 0..200 {
        thread::spawn(move || assert_eq!(f(2, 2), 4))
            .join()
            .unwrap();
    }
    assert_eq!(e.in_flight(), 0);
}
