//! A worker thread's storage and ownership (crate docs, "Soundness" 3–5; `WorkerRef`,
//! `WorkerThread`): the context and events the kernel uses are storage the library allocates
//! (non-paged pool, tag `DPwk`: one block, and in fallback a second one for the library's loop,
//! which that thread frees), not the image's statics and not the driver object's; the routine
//! gets exactly that storage; and a `WorkerThread` stops and joins its thread before it drops
//! the context and frees the storage: `stop_and_join`, drop, or handed on explicitly with
//! `into_raw` and taken back with `from_raw`. A spawn that fails leaves no block behind.
//!
//! Pool accounting is per process: every test of this binary takes its turn ([`turn`]), so
//! that the `DPwk` counts it reads are its own.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, EventKind, HotSwap, NtStatus, Unavailable, Wake,
    WorkerError, WorkerRef, WorkerRoutine, WorkerThread, Wrapped,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{self, DriverFeatures, PoolUsage, ThreadControl};

use common::{driver, extension, hotswap, thread_of, wait_until};

/// The pool tag of the library's worker storage (`'kwPD'` in C).
const DPWK: u32 = u32::from_le_bytes(*b"DPwk");

/// This binary's turn: pool accounting is per process.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn dpwk() -> PoolUsage {
    control::pool_usage(DPWK)
}

/// What the routine saw of its context, shared with the test (which reads it after the library
/// dropped the context).
#[derive(Default)]
struct Shared {
    /// The address of the context value (`WorkerRef::get`) the routine was called with.
    context: AtomicUsize,
    calls: AtomicUsize,
    stopped: AtomicUsize,
    drops: AtomicUsize,
    /// The thread, once started (set by the test).
    thread: Mutex<Option<ThreadControl>>,
    /// Whether the thread had ended when the context was dropped, per drop.
    ended_at_drop: Mutex<Vec<bool>>,
}

impl Shared {
    fn ended_at_drop(&self) -> Vec<bool> {
        self.ended_at_drop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The context of this file's worker: a marker the routine checks, and the shared record.
struct Seen {
    marker: u64,
    shared: Arc<Shared>,
}

impl Seen {
    fn new(marker: u64) -> Self {
        Self {
            marker,
            shared: Arc::default(),
        }
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(thread) = thread {
            self.shared
                .ended_at_drop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(thread.has_ended());
        }
        self.shared.drops.fetch_add(1, Ordering::SeqCst);
    }
}

type Worker = WorkerRoutine<Seen, 1>;

/// The body of both versions.
fn body(worker: &WorkerRef<Seen, 1>, status: NtStatus) -> bool {
    let stop = worker.wake(status) == Wake::Stop;
    worker.with(|seen| seen_by(seen, stop))
}

/// What the body does with the context.
fn seen_by(seen: &Seen, stop: bool) -> bool {
    assert_eq!(
        seen.marker, 0x5EE5,
        "the context the thread was started with"
    );
    seen.shared
        .context
        .store(std::ptr::from_ref(seen) as usize, Ordering::SeqCst);
    if stop {
        seen.shared.stopped.fetch_add(1, Ordering::SeqCst);
        return false;
    }
    seen.shared.calls.fetch_add(1, Ordering::SeqCst);
    true
}

extern "system" fn worker(worker: WorkerRef<Seen, 1>, status: NtStatus) -> bool {
    body(&worker, status)
}

/// A new version of [`worker`]: counts in hundreds.
extern "system" fn worker_v2(worker: WorkerRef<Seen, 1>, status: NtStatus) -> bool {
    let answer = body(&worker, status);
    worker.with(|seen| seen.shared.calls.fetch_add(100, Ordering::SeqCst));
    answer
}

const WORKER: EndpointId<Worker> = EndpointId::new(1);

/// The worker's routine for `hotswap` (registered when hot-swap is available).
fn routine(hotswap: HotSwap) -> Wrapped<Worker> {
    let table = EndpointTable::new([EndpointEntry::new(WORKER, worker as Worker)]).unwrap();
    hotswap.register(&table, None).unwrap();
    hotswap.wrapper(&table, WORKER).unwrap()
}

/// Starts a worker for `hotswap`; its shared record knows the thread.
fn start(hotswap: HotSwap) -> (WorkerThread<Seen, 1>, Arc<Shared>) {
    let thread = hotswap
        .worker_thread(routine(hotswap), Seen::new(0x5EE5))
        .events([EventKind::Synchronization])
        .spawn()
        .unwrap();
    let shared = Arc::clone(&thread.get().shared);
    *shared.thread.lock().unwrap_or_else(PoisonError::into_inner) =
        Some(thread_of(thread.handle()));
    (thread, shared)
}

/// A fallback handle: DriverProxy disabled for the driver object.
fn fallback(storage: &mut HostDriverObject) -> HotSwap {
    storage.control().set_features(DriverFeatures::Disabled);
    let hotswap = HotSwap::new(driver(storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    hotswap
}

/// Wakes the thread through its event and waits for the call.
fn kick(thread: &WorkerThread<Seen, 1>) {
    let calls = &thread.get().shared.calls;
    let before = calls.load(Ordering::SeqCst);
    thread.event(0).unwrap().set();
    wait_until("the routine ran", || calls.load(Ordering::SeqCst) > before);
}

/// The address of `thread`'s storage (`into_raw`), keeping ownership.
fn storage_address(thread: WorkerThread<Seen, 1>) -> (WorkerThread<Seen, 1>, usize) {
    let raw = thread.into_raw();
    // SAFETY: the address `into_raw` just gave, taken back once.
    let thread = unsafe { WorkerThread::<Seen, 1>::from_raw(raw) }.unwrap();
    (thread, raw.as_ptr() as usize)
}

/// Checks that the routine ran on `thread`'s own storage, a `DPwk` block of `size` bytes.
fn assert_runs_on_its_storage(thread: WorkerThread<Seen, 1>, size: usize) -> WorkerThread<Seen, 1> {
    kick(&thread);
    let (thread, block) = storage_address(thread);
    let storage = block..block + size;
    let value = std::ptr::from_ref(thread.get()) as usize;
    assert_eq!(
        thread.get().shared.context.load(Ordering::SeqCst),
        value,
        "the routine got the context the thread owns"
    );
    assert!(storage.contains(&value), "in the library's block");
    let event = thread.event(0).unwrap().as_raw() as usize;
    assert!(storage.contains(&event), "its event is in that block too");
    thread
}

#[test]
fn the_context_the_routine_gets_is_a_pool_block_of_the_library_freed_after_the_join() {
    let _turn = turn();
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let control = storage.control();
    assert_eq!(control.driver_object_extensions(), 1, "the endpoint record");
    let before = dpwk();
    let (thread, shared) = start(hotswap);
    assert!(thread.is_hot_swappable());
    let spawned = dpwk();
    assert_eq!(
        (spawned.outstanding, spawned.allocated),
        (before.outstanding + 1, before.allocated + 1),
        "one block for the thread's context and events (the kernel runs the loop)"
    );
    assert_eq!(
        control.driver_object_extensions(),
        1,
        "nothing of the driver object's"
    );
    let size = spawned.bytes - before.bytes;
    let thread = assert_runs_on_its_storage(thread, size);
    // A swap to a new implementation: the new code is called with the same storage.
    let v2 = EndpointTable::new([EndpointEntry::new(WORKER, worker_v2 as Worker)]).unwrap();
    hotswap.register(&v2, None).unwrap();
    kick(&thread);
    assert!(shared.calls.load(Ordering::SeqCst) > 100, "v2 ran");
    assert_eq!(
        shared.context.load(Ordering::SeqCst),
        std::ptr::from_ref(thread.get()) as usize
    );
    thread.stop_and_join().unwrap();
    assert_eq!(shared.stopped.load(Ordering::SeqCst), 1);
    assert_eq!(
        shared.ended_at_drop(),
        [true],
        "the context was dropped once, after the thread had ended"
    );
    let stopped = dpwk();
    assert_eq!(
        (stopped.outstanding, stopped.freed),
        (before.outstanding, before.freed + 1),
        "and its block freed"
    );
    drop(storage);
    assert_eq!(control.driver_object_extensions(), 0);
}

#[test]
fn a_fallback_worker_thread_has_two_blocks_both_freed_once_it_ended() {
    let _turn = turn();
    let mut storage = HostDriverObject::new();
    let hotswap = fallback(&mut storage);
    assert_eq!(
        storage.control().driver_object_extensions(),
        0,
        "no endpoint record without hot swap"
    );
    let before = dpwk();
    let (thread, shared) = start(hotswap);
    assert!(!thread.is_hot_swappable());
    let spawned = dpwk();
    assert_eq!(
        (spawned.outstanding, spawned.allocated),
        (before.outstanding + 2, before.allocated + 2),
        "the context and events, and the library's loop state"
    );
    assert_eq!(storage.control().driver_object_extensions(), 0);
    // The context's block is the first one; the loop's size is not known here: the block
    // is at most everything the spawn allocated.
    let thread = assert_runs_on_its_storage(thread, spawned.bytes - before.bytes);
    let ended = thread_of(thread.handle());
    thread.stop_and_join().unwrap();
    assert!(ended.has_ended());
    assert_eq!(shared.ended_at_drop(), [true]);
    let stopped = dpwk();
    assert_eq!(
        (stopped.outstanding, stopped.freed),
        (before.outstanding, before.freed + 2),
        "the loop's block freed by the thread, the context's by stop_and_join"
    );
}

#[test]
fn stop_and_join_ends_the_thread_before_it_returns() {
    let _turn = turn();
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let (thread, shared) = start(hotswap);
    kick(&thread);
    let ended = thread_of(thread.handle());
    assert!(!ended.has_ended());
    assert_eq!(extension(&hotswap).worker_threads(), 1);
    thread.stop_and_join().unwrap();
    assert!(ended.has_ended(), "joined");
    assert_eq!(shared.stopped.load(Ordering::SeqCst), 1);
    assert_eq!(shared.ended_at_drop(), [true]);
    assert_eq!(extension(&hotswap).worker_threads(), 0);
}

#[test]
fn dropping_a_worker_thread_stops_and_joins_it_then_frees_its_storage() {
    let _turn = turn();
    for fallback_thread in [false, true] {
        let mut storage = HostDriverObject::new();
        let hotswap = if fallback_thread {
            fallback(&mut storage)
        } else {
            hotswap(&mut storage)
        };
        let before = dpwk();
        let (thread, shared) = start(hotswap);
        let ended = thread_of(thread.handle());
        kick(&thread);
        drop(thread);
        assert!(ended.has_ended(), "joined by the drop");
        assert_eq!(shared.stopped.load(Ordering::SeqCst), 1);
        assert_eq!(shared.ended_at_drop(), [true]);
        let after = dpwk();
        assert_eq!(
            (after.outstanding, after.freed),
            (
                before.outstanding,
                before.freed + if fallback_thread { 2 } else { 1 }
            ),
            "fallback: {fallback_thread}"
        );
        if !fallback_thread {
            assert_eq!(extension(&hotswap).worker_threads(), 0);
        }
    }
}

#[test]
fn into_raw_hands_the_running_thread_on_and_from_raw_takes_it_back() {
    let _turn = turn();
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let before = dpwk();
    let (thread, shared) = start(hotswap);
    let (value, handle) = (std::ptr::from_ref(thread.get()) as usize, thread.handle());
    let kick_event = thread.event(0).unwrap().as_raw();
    let ended = thread_of(handle);
    let raw = thread.into_raw();
    // Not stopped: it still runs, owned by nobody but the raw pointer, on its storage (its
    // event is in the block, which nothing frees while only `raw` owns it).
    common::set(kick_event);
    wait_until("the routine ran", || {
        shared.calls.load(Ordering::SeqCst) == 1
    });
    assert!(!ended.has_ended());
    assert_eq!(shared.drops.load(Ordering::SeqCst), 0);
    assert_eq!(dpwk().outstanding, before.outstanding + 1, "not freed");

    // SAFETY: `raw` comes from `into_raw` for this driver object and nothing owns the thread;
    // a type other than the thread's is refused without taking ownership.
    let wrong_type = unsafe { WorkerThread::<u64, 1>::from_raw(raw) };
    assert_eq!(wrong_type.unwrap_err(), WorkerError::NotAWorkerThread);
    // SAFETY: as above (another event count).
    let wrong_events = unsafe { WorkerThread::<Seen, 2>::from_raw(raw) };
    assert_eq!(wrong_events.unwrap_err(), WorkerError::NotAWorkerThread);
    assert_eq!(
        NtStatus::from(WorkerError::NotAWorkerThread),
        NtStatus::INVALID_PARAMETER
    );
    assert!(!ended.has_ended(), "a refused from_raw does not stop it");
    assert_eq!(shared.drops.load(Ordering::SeqCst), 0);
    assert_eq!(dpwk().outstanding, before.outstanding + 1, "nor frees it");

    // SAFETY: as above, with the thread's own type; taken back once.
    let thread = unsafe { WorkerThread::<Seen, 1>::from_raw(raw) }.unwrap();
    assert_eq!(std::ptr::from_ref(thread.get()) as usize, value);
    assert_eq!(thread.handle(), handle);
    assert!(thread.is_hot_swappable());
    kick(&thread);
    assert_eq!(shared.calls.load(Ordering::SeqCst), 2);
    thread.stop_and_join().unwrap();
    assert!(ended.has_ended());
    assert_eq!(shared.stopped.load(Ordering::SeqCst), 1);
    assert_eq!(shared.ended_at_drop(), [true]);
    assert_eq!(dpwk().outstanding, before.outstanding, "freed");
}

/// Spawns a worker that must fail with `expected`; returns how the `DPwk` usage changed
/// (allocated, freed) and checks that nothing is left outstanding and the context was dropped.
fn failed_spawn(
    hotswap: HotSwap,
    routine: Wrapped<Worker>,
    expected: WorkerError,
    arm: impl FnOnce(),
) -> (u64, u64) {
    let before = dpwk();
    let context = Seen::new(0x5EE5);
    let shared = Arc::clone(&context.shared);
    arm();
    let error = hotswap
        .worker_thread(routine, context)
        .events([EventKind::Synchronization])
        .spawn()
        .map(drop)
        .unwrap_err();
    assert_eq!(error, expected);
    assert_eq!(
        shared.drops.load(Ordering::SeqCst),
        1,
        "the context was dropped"
    );
    assert_eq!(shared.calls.load(Ordering::SeqCst), 0, "never called");
    let after = dpwk();
    assert_eq!(after.outstanding, before.outstanding, "no block left");
    (
        after.allocated - before.allocated,
        after.freed - before.freed,
    )
}

#[test]
fn a_failed_spawn_leaves_no_block() {
    let _turn = turn();
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let routine = routine(hotswap);
    let insufficient = WorkerError::InsufficientResources;
    // The storage itself: nothing allocated.
    let pool = || control::fail_pool_allocation(1);
    assert_eq!(failed_spawn(hotswap, routine, insufficient, pool), (0, 0));
    // The kernel's allocation for the worker thread: the block allocated, then freed.
    let kernel = || storage.control().fail_allocation(1);
    assert_eq!(failed_spawn(hotswap, routine, insufficient, kernel), (1, 1));
    // The thread.
    let thread = || control::fail_thread_creation(1);
    assert_eq!(failed_spawn(hotswap, routine, insufficient, thread), (1, 1));
    // The kernel refuses the routine (a wrapper of another driver's extension).
    let mut theirs = HostDriverObject::new();
    let their_routine = self::routine(common::hotswap(&mut theirs));
    let refused = WorkerError::InvalidParameter;
    assert_eq!(failed_spawn(hotswap, their_routine, refused, || ()), (1, 1));
    assert_eq!(extension(&hotswap).worker_threads(), 0);

    // In fallback: the context's block, the loop's block, the thread.
    let mut disabled = HostDriverObject::new();
    let fallback = fallback(&mut disabled);
    let routine = self::routine(fallback);
    let first = || control::fail_pool_allocation(1);
    assert_eq!(failed_spawn(fallback, routine, insufficient, first), (0, 0));
    let second = || control::fail_pool_allocation(2);
    assert_eq!(
        failed_spawn(fallback, routine, insufficient, second),
        (1, 1)
    );
    let thread = || control::fail_thread_creation(1);
    assert_eq!(
        failed_spawn(fallback, routine, insufficient, thread),
        (2, 2)
    );
}
