//! `IoDriverProxyCreateHotSwappableWorkerThread`
//! (`docs/ddi.md#iodriverproxycreatehotswappableworkerthread`, and the sections it links: the
//! worker routine, the start context): a real
//! thread that waits on the events, calls the routine through its wrapper with the wait
//! status, loops while it returns TRUE, and runs the new implementation after a swap.
//!
//! Through the library, the thread's context and events live in storage the library
//! allocates, and index 0 of the kernel's wait is the library's stop event: the routine's own
//! event `i` wakes it with `STATUS_WAIT_0 + 1 + i`, which [`WorkerRef::wake`] reads as
//! [`Wake::Event`]`(i)`. Start contexts the typed API makes impossible (NULL routine, zero or
//! 65 events, raw routines, uninitialised events, unknown wait types) are given to the kernel
//! routine directly in `host/tests/kernel_proxy.rs`.
//! What the library does with that storage (pool, freed after the join) is tested in
//! `worker_thread_storage.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, EventKind, HotSwap, MAX_WORKER_EVENTS, NtStatus,
    Timeout, WaitType, Wake, WorkerError, WorkerRef, WorkerRoutine, Wrapped, sys,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control;

use common::{extension, hotswap, image_hotswap, join, leak, thread_of, wait_until};

/// What a worker routine saw, shared between the thread's context ([`Log`]) and the test, so
/// that the test can read it after the library has dropped the context (`stop_and_join`).
#[derive(Default)]
struct Seen {
    /// (version, wait status, wake) per call.
    calls: Mutex<Vec<(u8, NtStatus, Wake)>>,
    /// On the call that saw `Wake::Stop`: whether a stop was requested, and how the routine
    /// then read `STATUS_WAIT_1` and `STATUS_TIMEOUT`.
    on_stop: Mutex<Option<(bool, Wake, Wake)>>,
    /// Whether the routine's view said the thread is hot-swappable (each call).
    hot_swappable: Mutex<Vec<bool>>,
}

impl Seen {
    fn calls(&self) -> Vec<(u8, NtStatus, Wake)> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn len(&self) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn on_stop(&self) -> Option<(bool, Wake, Wake)> {
        *self.on_stop.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hot_swappable(&self) -> Vec<bool> {
        self.hot_swappable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The context of every typed worker of this file: where to record, and when to end.
struct Log {
    seen: Arc<Seen>,
    /// The routine returns FALSE on this wake (it always does on `Wake::Stop`).
    end_on: Option<Wake>,
    /// ... and once it has been called this many times.
    max_calls: usize,
    /// Counts drops of the log, where a test asks.
    drops: Option<&'static AtomicUsize>,
}

impl Log {
    fn new(end_on: Option<Wake>, max_calls: usize) -> Self {
        Self {
            seen: Arc::default(),
            end_on,
            max_calls,
            drops: None,
        }
    }

    /// A log that ends the thread only when asked to stop.
    fn until_stopped() -> Self {
        Self::new(None, usize::MAX)
    }

    fn counting_drops(mut self, drops: &'static AtomicUsize) -> Self {
        self.drops = Some(drops);
        self
    }

    /// What the routine saw, for the test to keep.
    fn seen(&self) -> Arc<Seen> {
        Arc::clone(&self.seen)
    }

    fn record<const N: usize>(
        &self,
        version: u8,
        worker: &WorkerRef<Self, N>,
        status: NtStatus,
    ) -> bool {
        let wake = worker.wake(status);
        self.seen
            .hot_swappable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(worker.is_hot_swappable());
        if wake == Wake::Stop {
            *self
                .seen
                .on_stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((
                worker.stop_requested(),
                worker.wake(wait(1)),
                worker.wake(NtStatus::TIMEOUT),
            ));
        }
        let mut calls = self
            .seen
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        calls.push((version, status, wake));
        wake != Wake::Stop && Some(wake) != self.end_on && calls.len() < self.max_calls
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Some(drops) = self.drops {
            drops.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A worker of this file with `N` events of its own.
type Worker<const N: usize> = WorkerRoutine<Log, N>;

extern "system" fn worker_v1<const N: usize>(worker: WorkerRef<Log, N>, status: NtStatus) -> bool {
    worker.with(|log| log.record(1, &worker, status))
}

extern "system" fn worker_v2<const N: usize>(worker: WorkerRef<Log, N>, status: NtStatus) -> bool {
    worker.with(|log| log.record(2, &worker, status))
}

const WORKER: u32 = 1;

/// `STATUS_WAIT_0 + index`: the kernel's status for wait object `index`.
fn wait(index: i32) -> NtStatus {
    NtStatus(sys::STATUS_WAIT_0 + index)
}

/// The table registering `routine` as the worker with `N` events.
fn table<const N: usize>(routine: Worker<N>) -> EndpointTable<1> {
    EndpointTable::new([EndpointEntry::new(
        EndpointId::<Worker<N>>::new(WORKER),
        routine,
    )])
    .unwrap()
}

/// A hot-swap handle with `worker_v1::<N>` registered, and its wrapper.
fn registered<const N: usize>(storage: &mut HostDriverObject) -> (HotSwap, Wrapped<Worker<N>>) {
    let hotswap = hotswap(storage);
    let table = table(worker_v1::<N> as Worker<N>);
    hotswap.register(&table, None).unwrap();
    let wrapper = hotswap.wrapper(&table, EndpointId::new(WORKER)).unwrap();
    (hotswap, wrapper)
}

#[test]
fn the_worker_waits_on_its_events_and_calls_the_routine_with_status_wait_0_plus_the_index() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<3>(&mut storage);
    let worker = hotswap
        .worker_thread(routine, Log::new(Some(Wake::Event(2)), usize::MAX))
        .events([EventKind::Synchronization; 3])
        .spawn()
        .unwrap();
    assert!(worker.is_hot_swappable());
    assert_eq!(extension(&hotswap).worker_threads(), 1);
    let log = worker.get().seen();
    worker.event(1).unwrap().set();
    wait_until("the first call", || log.len() == 1);
    worker.event(0).unwrap().set();
    wait_until("the second call", || log.len() == 2);
    worker.event(2).unwrap().set();
    join(worker.handle());
    assert_eq!(
        log.calls(),
        [
            (1, wait(2), Wake::Event(1)),
            (1, wait(1), Wake::Event(0)),
            (1, wait(3), Wake::Event(2)),
        ],
        "index 0 of the kernel's wait is the stop event"
    );
    assert_eq!(
        log.hot_swappable(),
        [true; 3],
        "the routine's view says so too"
    );
    assert_eq!(extension(&hotswap).worker_threads(), 0);
    assert!(worker.event(3).is_none(), "three events, no more");
}

#[test]
fn with_a_timeout_and_no_event_signalled_the_routine_sees_status_timeout() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<1>(&mut storage);
    let worker = hotswap
        .worker_thread(routine, Log::new(None, 3))
        .events([EventKind::Notification])
        .timeout(Timeout::from_millis(2))
        .spawn()
        .unwrap();
    join(worker.handle());
    assert_eq!(
        worker.get().seen().calls(),
        [(1, NtStatus::TIMEOUT, Wake::Timeout); 3]
    );
}

/// The type system now makes a worker without events of its own a valid worker (the 0.1
/// builder refused it with `NoEvents`): its kernel wait still has the stop event, so it wakes
/// on its timeout and when asked to stop.
#[test]
fn a_worker_without_events_of_its_own_waits_on_the_stop_event_and_its_timeout() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<0>(&mut storage);
    let worker = hotswap
        .worker_thread(routine, Log::until_stopped())
        .timeout(Timeout::from_millis(2))
        .spawn()
        .unwrap();
    let log = worker.get().seen();
    wait_until("two timeouts", || log.len() >= 2);
    let thread = thread_of(worker.handle());
    worker.stop_and_join().unwrap();
    assert!(thread.has_ended());
    let calls = log.calls();
    let (last, timeouts) = calls.split_last().unwrap();
    assert_eq!(*last, (1, wait(0), Wake::Stop), "woken by the stop event");
    assert!(
        timeouts
            .iter()
            .all(|&call| call == (1, NtStatus::TIMEOUT, Wake::Timeout)),
        "{calls:?}"
    );

    // Without a timeout either, it sleeps until asked to stop.
    let idle = hotswap
        .worker_thread(routine, Log::until_stopped())
        .spawn()
        .unwrap();
    let idle_log = idle.get().seen();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(idle_log.len(), 0);
    idle.stop_and_join().unwrap();
    assert_eq!(idle_log.calls(), [(1, wait(0), Wake::Stop)]);
}

#[test]
fn stop_and_join_signals_the_stop_event_waits_for_the_thread_and_closes_its_handle() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<2>(&mut storage);
    let drops = leak(AtomicUsize::new(0));
    let worker = hotswap
        .worker_thread(routine, Log::until_stopped().counting_drops(drops))
        .events([EventKind::Synchronization, EventKind::Notification])
        .spawn()
        .unwrap();
    let log = worker.get().seen();
    worker.event(0).unwrap().set();
    wait_until("the first call", || log.len() == 1);
    assert_eq!(log.on_stop(), None, "not asked to stop yet");
    let thread = thread_of(worker.handle());
    let handle = worker.handle();
    worker.stop_and_join().unwrap();
    assert!(thread.has_ended(), "joined");
    assert!(control::thread(handle).is_none(), "the handle is closed");
    assert_eq!(extension(&hotswap).worker_threads(), 0);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "then the context was dropped"
    );
    assert_eq!(
        log.calls(),
        [(1, wait(1), Wake::Event(0)), (1, wait(0), Wake::Stop)]
    );
    // Once asked to stop, the routine reads every status as Stop.
    assert_eq!(log.on_stop(), Some((true, Wake::Stop, Wake::Stop)));
}

#[test]
fn the_loop_continues_while_the_routine_returns_true_and_the_thread_ends_when_it_returns_false() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<1>(&mut storage);
    let worker = hotswap
        .worker_thread(routine, Log::new(None, 50))
        .events([EventKind::Notification])
        .spawn()
        .unwrap();
    assert!(
        !worker.event(0).unwrap().is_set(),
        "no event is signalled at the start"
    );
    // A notification event stays signalled: every wait is satisfied at once.
    worker.event(0).unwrap().set();
    join(worker.handle());
    let log = worker.get().seen();
    assert_eq!(
        log.len(),
        50,
        "called until it returned FALSE, then no more"
    );
    assert!(thread_of(worker.handle()).has_ended());
    assert_eq!(
        log.on_stop(),
        None,
        "it ended on its own, not because it was asked to"
    );
}

#[test]
fn a_swap_between_iterations_takes_effect_at_the_next_iteration() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<2>(&mut storage);
    let worker = hotswap
        .worker_thread(routine, Log::new(Some(Wake::Event(1)), usize::MAX))
        .events([EventKind::Synchronization; 2])
        .spawn()
        .unwrap();
    let (log, work, done) = (
        worker.get().seen(),
        worker.event(0).unwrap(),
        worker.event(1).unwrap(),
    );
    work.set();
    wait_until("the first iteration", || log.len() == 1);
    // The thread is waiting in the kernel, not in driver code: the swap does not wait for it.
    hotswap.register(&table(worker_v2::<2>), None).unwrap();
    work.set();
    wait_until("the second iteration", || log.len() == 2);
    done.set();
    join(worker.handle());
    assert_eq!(
        log.calls(),
        [
            (1, wait(1), Wake::Event(0)),
            (2, wait(1), Wake::Event(0)),
            (2, wait(2), Wake::Event(1)),
        ]
    );
}

#[test]
fn wait_all_calls_the_routine_only_when_every_event_is_signalled() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<2>(&mut storage);
    let worker = hotswap
        .worker_thread(routine, Log::new(None, 1))
        .wait_type(WaitType::All)
        .events([EventKind::Synchronization, EventKind::Notification])
        .spawn()
        .unwrap();
    let (log, first, second) = (
        worker.get().seen(),
        worker.event(0).unwrap(),
        worker.event(1).unwrap(),
    );
    first.set();
    thread::sleep(Duration::from_millis(30));
    assert_eq!(log.len(), 0, "one of two is not enough");
    second.set();
    assert!(
        thread_of(worker.handle()).wait(Duration::from_secs(2)),
        "both events signalled: the routine must run (and end the thread)"
    );
    assert_eq!(log.calls(), [(1, NtStatus::WAIT_0, Wake::All)]);
    assert!(!first.is_set(), "the synchronization event was consumed");
    assert!(second.is_set(), "the notification event stays signalled");
}

#[test]
fn a_wait_all_worker_is_stopped_by_stop_and_join() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<2>(&mut storage);
    let worker = hotswap
        .worker_thread(routine, Log::until_stopped())
        .wait_type(WaitType::All)
        .events([EventKind::Synchronization, EventKind::Notification])
        .spawn()
        .unwrap();
    let (log, thread) = (worker.get().seen(), thread_of(worker.handle()));
    worker.stop_and_join().unwrap();
    assert!(thread.has_ended());
    assert_eq!(log.calls().last(), Some(&(1, NtStatus::WAIT_0, Wake::Stop)));
}

#[test]
fn a_worker_can_wait_on_63_events_of_its_own_and_the_stop_event() {
    const MAX: usize = MAX_WORKER_EVENTS;
    assert_eq!(MAX + 1, sys::MAXIMUM_WAIT_OBJECTS as usize);
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<MAX>(&mut storage);
    let worker = hotswap
        .worker_thread(routine, Log::until_stopped())
        .events([EventKind::Synchronization; MAX])
        .spawn()
        .unwrap();
    let log = worker.get().seen();
    worker.event(MAX - 1).unwrap().set();
    wait_until("the last event's call", || log.len() == 1);
    worker.event(0).unwrap().set();
    wait_until("the first event's call", || log.len() == 2);
    worker.stop_and_join().unwrap();
    assert_eq!(
        log.calls(),
        [
            (1, NtStatus(sys::STATUS_WAIT_63), Wake::Event(MAX - 1)),
            (1, wait(1), Wake::Event(0)),
            (1, wait(0), Wake::Stop),
        ]
    );
}

#[test]
fn a_wrapper_of_an_image_endpoint_can_be_the_worker_routine() {
    let mut storage = HostDriverObject::new();
    let hotswap = image_hotswap(&mut storage, &[worker_v2::<1> as Worker<1> as usize]);
    let routine = hotswap.wrap(worker_v2::<1> as Worker<1>).unwrap();
    let worker = hotswap
        .worker_thread(routine, Log::new(Some(Wake::Event(0)), usize::MAX))
        .events([EventKind::Notification])
        .spawn()
        .unwrap();
    worker.event(0).unwrap().set();
    join(worker.handle());
    assert_eq!(worker.get().seen().calls(), [(2, wait(1), Wake::Event(0))]);
}

#[test]
fn a_wrapper_of_another_extension_returns_status_invalid_parameter() {
    let mut mine = HostDriverObject::new();
    let mut theirs = HostDriverObject::new();
    let (hotswap, _) = registered::<1>(&mut mine);
    let (_, their_routine) = registered::<1>(&mut theirs);
    let drops = leak(AtomicUsize::new(0));
    let error = hotswap
        .worker_thread(their_routine, Log::until_stopped().counting_drops(drops))
        .events([EventKind::Notification])
        .spawn()
        .unwrap_err();
    assert_eq!(error, WorkerError::InvalidParameter);
    assert_eq!(NtStatus::from(error), NtStatus::INVALID_PARAMETER);
    assert_eq!(extension(&hotswap).worker_threads(), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the context was dropped");
}

/// That a failed spawn leaves no storage (no `DPwk` block) is checked in
/// `worker_thread_storage.rs`, whose tests take turns (pool accounting is per process).
#[test]
fn out_of_resources_returns_status_insufficient_resources_and_starts_nothing() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered::<1>(&mut storage);
    let drops = leak(AtomicUsize::new(0));
    let spawn = || {
        hotswap
            .worker_thread(routine, Log::until_stopped().counting_drops(drops))
            .events([EventKind::Notification])
            .spawn()
            .map(drop)
    };
    // The thread's storage (a pool block of the library's).
    control::fail_pool_allocation(1);
    assert_eq!(spawn(), Err(WorkerError::InsufficientResources));
    // The kernel's allocation for the worker thread.
    storage.control().fail_allocation(1);
    assert_eq!(spawn(), Err(WorkerError::InsufficientResources));
    // The thread itself.
    control::fail_thread_creation(1);
    assert_eq!(spawn(), Err(WorkerError::InsufficientResources));
    assert_eq!(extension(&hotswap).worker_threads(), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 3, "every context was dropped");
}
