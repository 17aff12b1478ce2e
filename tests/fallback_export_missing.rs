//! On a kernel without the DriverProxy exports (every Windows before 24H2; here the host
//! kernel with its seven DriverProxy exports hidden), a driver built on driver-proxy still
//! loads and runs: wrappers are the endpoints themselves, registration is a no-op, worker
//! threads are plain system threads running the library's loop, and the API says why. The
//! other routines the library resolves are hidden one at a time in
//! `fallback_kernel_routine_missing.rs`.
//!
//! The library resolves its routines once per process, on its first call, so every test
//! starts with [`kernel_without_driver_proxy`], which hides the exports before anything else
//! in this binary can call the library.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};

use driver_proxy::{
    DriverObject, EndpointEntry, EndpointId, EndpointTable, EventKind, HotSwap, LookupError,
    NtStatus, Phase, Timeout, Unavailable, Wake, WorkerError, WorkerRef, WorkerRoutine, probe, sys,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control;

use common::{driver, leak, thread_of, wait_until};

type Handler = extern "system" fn(u64, u64) -> u64;
extern "system" fn add(a: u64, b: u64) -> u64 {
    a + b
}
const ADD: EndpointId<Handler> = EndpointId::new(7);

/// Hides the DriverProxy exports, once per process, before the library's first call.
fn kernel_without_driver_proxy() {
    static HIDE: Once = Once::new();
    HIDE.call_once(|| {
        for name in [
            sys::names::IO_GET_DRIVER_PROXY_FEATURES,
            sys::names::IO_CREATE_DRIVER_PROXY_EXTENSION,
            sys::names::IO_GET_DRIVER_PROXY_EXTENSION_FROM_DRIVER_OBJECT,
            sys::names::IO_REGISTER_DRIVER_PROXY_ENDPOINTS,
            sys::names::IO_GET_DRIVER_PROXY_ENDPOINT_WRAPPER,
            sys::names::IOF_GET_DRIVER_PROXY_WRAPPER_FROM_ENDPOINT,
            sys::names::IO_DRIVER_PROXY_CREATE_HOT_SWAPPABLE_WORKER_THREAD,
        ] {
            driver_proxy_host::hide_export(name.ascii);
        }
    });
}

#[test]
fn a_missing_features_export_means_hot_swap_unavailable_not_a_failed_load() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).expect("fallback is not an error");
    assert_eq!(
        hotswap.unavailable(),
        Some(Unavailable::ExportMissing("IoGetDriverProxyFeatures"))
    );
    assert!(!hotswap.is_hot_swappable());
    assert!(hotswap.raw_extension().is_none());
    assert_eq!(
        probe(None),
        Err(Unavailable::ExportMissing("IoGetDriverProxyFeatures"))
    );
}

#[test]
fn fallback_wrap_returns_the_endpoint_itself() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let wrapped = hotswap.wrap(add as Handler).unwrap();
    assert_eq!(wrapped.address(), add as Handler as usize);
    assert_eq!(wrapped.get()(40, 2), 42);
}

#[test]
fn fallback_registration_succeeds_without_calling_back_and_lookup_by_id_gives_the_endpoint() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let table = EndpointTable::new([EndpointEntry::new(ADD, add as Handler)]).unwrap();
    let mut phases = Vec::new();
    let mut callback = |phase: Phase| {
        phases.push(phase);
        Ok(())
    };
    hotswap.register(&table, Some(&mut callback)).unwrap();
    assert!(phases.is_empty(), "nothing is swapped in fallback");
    let wrapped = hotswap.wrapper(&table, ADD).unwrap();
    assert_eq!(wrapped.address(), add as Handler as usize);
    assert_eq!(wrapped.get()(1, 2), 3);
    assert_eq!(
        hotswap.wrapper(&table, EndpointId::<Handler>::new(8)),
        Err(LookupError::UnknownId(8))
    );
}

/// The entry of a new image taking over from a loaded one never fails because of it either.
#[test]
fn taking_over_from_a_driver_object_falls_back_and_names_the_missing_export() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::from_driver_object(driver(&mut storage)).unwrap();
    let missing = Unavailable::ExportMissing("IoGetDriverProxyFeatures");
    assert_eq!(hotswap.unavailable(), Some(missing));
    assert_eq!(
        NtStatus::from(missing),
        NtStatus::NOT_SUPPORTED,
        "for a driver that cannot do without"
    );
}

#[test]
fn a_null_driver_object_is_a_documented_error() {
    kernel_without_driver_proxy();
    // SAFETY: null is the bad input under test; it is rejected, never dereferenced.
    let error = unsafe { DriverObject::from_raw(std::ptr::null_mut()) }.unwrap_err();
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER);
}

/// Pool accounting is per process: the tests that start workers take turns, so that each
/// sees only its own `DPwk` blocks.
fn worker_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pool tag of the library's worker storage.
const DPWK: u32 = u32::from_le_bytes(*b"DPwk");

/// What a worker routine saw: the wait status and wake of every call (shared with the test,
/// which reads it after the library dropped the context).
#[derive(Default)]
struct Seen(Mutex<Vec<(NtStatus, Wake)>>);

impl Seen {
    fn get(&self) -> Vec<(NtStatus, Wake)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A worker's context: where it records, and a count of its drops where a test asks.
#[derive(Default)]
struct Calls {
    seen: Arc<Seen>,
    drops: Option<&'static AtomicUsize>,
}

impl Drop for Calls {
    fn drop(&mut self) {
        if let Some(drops) = self.drops {
            drops.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A worker with one event of its own (a kick).
type Worker = WorkerRoutine<Calls, 1>;

extern "system" fn recording_routine(worker: WorkerRef<Calls, 1>, status: NtStatus) -> bool {
    let wake = worker.wake(status);
    worker.with(|calls| {
        calls
            .seen
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((status, wake));
    });
    wake != Wake::Stop
}

#[test]
fn without_driver_proxy_a_worker_thread_is_a_plain_system_thread_running_the_same_loop() {
    kernel_without_driver_proxy();
    let _turn = worker_turn();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(
        hotswap.worker_threads(),
        Ok(()),
        "known before any is started"
    );
    assert_eq!(
        storage.control().driver_object_extensions(),
        0,
        "no endpoint record without hot swap"
    );
    let before = control::pool_usage(DPWK);
    let routine = hotswap.wrap(recording_routine as Worker).unwrap();
    assert_eq!(routine.address(), recording_routine as Worker as usize);
    let thread = hotswap
        .worker_thread(routine, Calls::default())
        .events([EventKind::Synchronization])
        .timeout(Timeout::from_millis(20))
        .spawn()
        .expect("the fallback thread starts");
    assert!(!thread.is_hot_swappable(), "the library's own loop");
    assert_eq!(
        control::pool_usage(DPWK).outstanding,
        before.outstanding + 2,
        "the context and events, and the loop's state: two pool blocks of the library's"
    );
    assert_eq!(storage.control().driver_object_extensions(), 0);
    thread.event(0).unwrap().set();
    let calls = thread.get().seen.clone();
    wait_until("a call on the kick, then one on the timeout", || {
        calls.get().len() >= 2
    });
    let ended = thread_of(thread.handle());
    thread.stop_and_join().unwrap();
    assert!(ended.has_ended());
    let seen = calls.get();
    assert_eq!(
        seen[0],
        (NtStatus(sys::STATUS_WAIT_1), Wake::Event(0)),
        "the kick (object 1, after the stop event) woke it first"
    );
    assert_eq!(
        seen[seen.len() - 1],
        (NtStatus::WAIT_0, Wake::Stop),
        "the stop event (object 0) woke it last, and the loop ended on FALSE: {seen:x?}"
    );
    assert!(
        seen.len() >= 3
            && seen[1..seen.len() - 1]
                .iter()
                .all(|&call| call == (NtStatus::TIMEOUT, Wake::Timeout)),
        "in between, only timeouts (the kick is a synchronization event: its wait reset it): {seen:x?}"
    );
    let after = control::pool_usage(DPWK);
    assert_eq!(
        after.outstanding, before.outstanding,
        "both blocks freed once the thread ended: the loop's by the thread, the context's by stop_and_join"
    );
    assert_eq!(after.freed, before.freed + 2);
}

#[test]
fn without_driver_proxy_dropping_a_worker_thread_stops_and_joins_it() {
    kernel_without_driver_proxy();
    let _turn = worker_turn();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let routine = hotswap.wrap(recording_routine as Worker).unwrap();
    let before = control::pool_usage(DPWK);
    let drops = leak(AtomicUsize::new(0));
    let thread = hotswap
        .worker_thread(
            routine,
            Calls {
                seen: Arc::default(),
                drops: Some(drops),
            },
        )
        .spawn()
        .unwrap();
    let (calls, ended) = (thread.get().seen.clone(), thread_of(thread.handle()));
    drop(thread);
    assert!(ended.has_ended());
    assert_eq!(calls.get(), [(NtStatus::WAIT_0, Wake::Stop)]);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the context was dropped");
    assert_eq!(
        control::pool_usage(DPWK).outstanding,
        before.outstanding,
        "and both blocks freed"
    );
}

#[test]
fn without_driver_proxy_a_failed_thread_creation_is_an_error_and_drops_the_context() {
    kernel_without_driver_proxy();
    let _turn = worker_turn();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let routine = hotswap.wrap(recording_routine as Worker).unwrap();
    let drops = leak(AtomicUsize::new(0));
    let spawn = || {
        hotswap
            .worker_thread(
                routine,
                Calls {
                    seen: Arc::default(),
                    drops: Some(drops),
                },
            )
            .events([EventKind::Synchronization])
            .spawn()
            .map(drop)
    };
    let before = control::pool_usage(DPWK);

    control::fail_thread_creation(1);
    assert_eq!(spawn(), Err(WorkerError::InsufficientResources));
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the context was dropped");
    let after = control::pool_usage(DPWK);
    assert_eq!(
        (after.outstanding, after.allocated, after.freed),
        (before.outstanding, before.allocated + 2, before.freed + 2),
        "both blocks were allocated, and both freed"
    );

    // The context's block.
    control::fail_pool_allocation(1);
    assert_eq!(spawn(), Err(WorkerError::InsufficientResources));
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert_eq!(control::pool_usage(DPWK), after, "no block");

    // The loop's block.
    control::fail_pool_allocation(2);
    assert_eq!(spawn(), Err(WorkerError::InsufficientResources));
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    let last = control::pool_usage(DPWK);
    assert_eq!(
        (last.outstanding, last.allocated, last.freed),
        (after.outstanding, after.allocated + 1, after.freed + 1),
        "the context's block was freed"
    );
}
