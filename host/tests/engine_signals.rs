//! A wrapper called from a signal handler that interrupted the same thread inside a wrapper
//! (the host's model of an interrupt or DPC calling a driver on the interrupted thread's
//! stack): the interrupted call must come back to its own caller with its own result.
//!
//! The wrapper's common path moves the caller's return address into a per-thread shadow
//! stack. If it wrote an entry before reserving it, or released an entry before reading it
//! back, a handler landing between the two instructions would reuse the entry and the
//! interrupted call would return to the handler's caller instead: the test process would
//! crash. A second thread sends the signal to the calling thread tens of thousands of times
//! while it calls wrappers in a loop.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[macro_use]
mod engine_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy_host::engine::{Engine, EngineConfig};

type Bin = extern "C" fn(u64, u64) -> u64;

extern "C" fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

/// The wrapper the handler calls, and how often it did.
static HANDLER_WRAPPER: OnceLock<usize> = OnceLock::new();
static HANDLER_CALLS: AtomicU64 = AtomicU64::new(0);
static HANDLER_WRONG: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(&address) = HANDLER_WRAPPER.get() {
        // SAFETY: the wrapper forwards to `add` (a `Bin`).
        let f: Bin = unsafe { core::mem::transmute::<usize, Bin>(address) };
        if f(1000, 7) != 1007 {
            HANDLER_WRONG.fetch_add(1, Ordering::Relaxed);
        }
        HANDLER_CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_wrapper_called_from_a_signal_handler_inside_a_wrapper_call_leaves_the_interrupted_call_intact()
{
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let outer = engine.add_endpoint(code!(add)).unwrap();
    let inner = engine.add_endpoint(code!(add)).unwrap();
    HANDLER_WRAPPER.set(engine.wrapper_address(inner)).unwrap();
    // SAFETY: installing a handler that only calls a wrapper (async-signal-safe here: the
    // wrapper's fast path touches only this thread's block) and atomics.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&raw mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &raw const action, core::ptr::null_mut()),
            0
        );
    }
    // SAFETY: the wrapper forwards to `add`.
    let f: Bin = unsafe { engine_common::wrapper(&engine, outer) };
    let done = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicU64::new(0));
    let sender = {
        let (done, target) = (done.clone(), target.clone());
        thread::spawn(move || {
            while target.load(Ordering::Acquire) == 0 {
                thread::yield_now();
            }
            let thread: libc::pthread_t = target.load(Ordering::Acquire);
            let mut sent = 0u64;
            while !done.load(Ordering::Acquire) {
                // SAFETY: the target thread is alive until `done` is set.
                unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
                sent += 1;
                if sent.is_multiple_of(64) {
                    thread::yield_now();
                }
            }
            sent
        })
    };
    // The thread's first wrapper call registers it (an allocation): make it before any signal
    // can arrive, so the handler only ever takes the wrappers' fast path.
    assert_eq!(f(1, 2), 3);
    // SAFETY: pthread_self has no preconditions.
    target.store(unsafe { libc::pthread_self() }, Ordering::Release);
    let start = Instant::now();
    let mut calls = 0u64;
    let mut wrong = 0u64;
    while HANDLER_CALLS.load(Ordering::Relaxed) < 20_000
        && start.elapsed() < Duration::from_secs(20)
    {
        for i in 0..1000u64 {
            if f(i, calls) != i.wrapping_add(calls) {
                wrong += 1;
            }
            calls += 1;
        }
    }
    done.store(true, Ordering::Release);
    let sent = sender.join().unwrap();
    let handled = HANDLER_CALLS.load(Ordering::Relaxed);
    println!("{calls} calls, {sent} signals sent, {handled} handled inside the loop's thread");
    assert!(
        handled >= 1_000,
        "the signal reached the calling thread ({handled})"
    );
    assert_eq!(wrong, 0, "interrupted calls answered wrongly");
    assert_eq!(
        HANDLER_WRONG.load(Ordering::Relaxed),
        0,
        "handler calls answered wrongly"
    );
    assert_eq!(engine.in_flight(), 0, "every call counted out");
}
