//! A worker thread's storage and ownership (crate docs, "Soundness" 3–5; `WorkerContext`,
//! `WorkerThread`): the context and events the kernel uses are storage the library allocates
//! for the driver object (a driver-object extension, which outlives every image of the driver,
//! unlike the image's statics), the routine gets exactly that storage, and a `WorkerThread`
//! stops and joins its thread before it is forgotten: `stop_and_join`, drop, or handed on
//! explicitly with `into_raw` and taken back with `from_raw`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, EventKind, HotSwap, NtStatus, Wake, WorkerContext,
    WorkerError, WorkerRoutine, WorkerThread,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::DriverFeatures;

use common::{driver, extension, hotswap, leak, thread_of, wait_until};

/// What the routine saw of its context: where it was, how often it ran, how it last woke.
struct Seen {
    marker: u64,
    /// The address of the `WorkerContext` the routine was called with (each call).
    context: AtomicUsize,
    calls: AtomicUsize,
    stopped: AtomicUsize,
    drops: &'static AtomicUsize,
}

impl Seen {
    fn new(marker: u64) -> Self {
        Self {
            marker,
            context: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            stopped: AtomicUsize::new(0),
            drops: leak(AtomicUsize::new(0)),
        }
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

type Worker = WorkerRoutine<Seen, 1>;

extern "system" fn worker(worker: &'static WorkerContext<Seen, 1>, status: NtStatus) -> bool {
    let seen = worker.get();
    assert_eq!(
        seen.marker, 0x5EE5,
        "the context the thread was started with"
    );
    seen.context
        .store(std::ptr::from_ref(worker) as usize, Ordering::SeqCst);
    if worker.wake(status) == Wake::Stop {
        seen.stopped.fetch_add(1, Ordering::SeqCst);
        return false;
    }
    seen.calls.fetch_add(1, Ordering::SeqCst);
    true
}

/// A new version of [`worker`]: counts in hundreds.
extern "system" fn worker_v2(worker: &'static WorkerContext<Seen, 1>, status: NtStatus) -> bool {
    let answer = self::worker(worker, status);
    worker.get().calls.fetch_add(100, Ordering::SeqCst);
    answer
}

const WORKER: EndpointId<Worker> = EndpointId::new(1);

/// Starts a worker for `hotswap` (registering its routine when hot-swap is available).
fn start(hotswap: HotSwap) -> WorkerThread<Seen, 1> {
    let table = EndpointTable::new([EndpointEntry::new(WORKER, worker as Worker)]).unwrap();
    hotswap.register(&table, None).unwrap();
    hotswap
        .worker_thread(hotswap.wrapper(&table, WORKER).unwrap(), Seen::new(0x5EE5))
        .events([EventKind::Synchronization])
        .spawn()
        .unwrap()
}

/// Wakes the thread through its event and waits for the call.
fn kick(context: &WorkerContext<Seen, 1>) {
    let before = context.get().calls.load(Ordering::SeqCst);
    context.event(0).unwrap().set();
    wait_until("the routine ran", || {
        context.get().calls.load(Ordering::SeqCst) > before
    });
}

/// Checks that the routine ran on `thread`'s own storage, a block of the driver object.
fn assert_runs_on_its_storage(thread: &WorkerThread<Seen, 1>) {
    let context = thread.context();
    kick(context);
    let address = std::ptr::from_ref(context) as usize;
    assert_eq!(
        context.get().context.load(Ordering::SeqCst),
        address,
        "the routine got the storage the library allocated"
    );
    let event = thread.event(0).unwrap().as_raw() as usize;
    assert!(
        (address..address + size_of::<WorkerContext<Seen, 1>>()).contains(&event),
        "its event is in that storage too"
    );
}

#[test]
fn the_context_the_routine_gets_is_the_storage_the_library_allocated_for_the_driver_object() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let control = storage.control();
    assert_eq!(control.driver_object_extensions(), 1, "the endpoint record");
    let thread = start(hotswap);
    assert!(thread.is_hot_swappable());
    assert_eq!(
        control.driver_object_extensions(),
        2,
        "one block for the thread's context and events"
    );
    assert_runs_on_its_storage(&thread);
    let context = thread.context();
    // A swap to a new implementation: the new code is called with the same storage.
    let v2 = EndpointTable::new([EndpointEntry::new(WORKER, worker_v2 as Worker)]).unwrap();
    hotswap.register(&v2, None).unwrap();
    kick(context);
    assert!(context.get().calls.load(Ordering::SeqCst) > 100, "v2 ran");
    assert_eq!(
        context.get().context.load(Ordering::SeqCst),
        std::ptr::from_ref(context) as usize
    );
    thread.stop_and_join().unwrap();
    assert_eq!(
        context.get().drops.load(Ordering::SeqCst),
        0,
        "a context lives as long as the driver: never dropped"
    );
    assert_eq!(control.driver_object_extensions(), 2, "nor freed");
    drop(storage);
    assert_eq!(
        control.driver_object_extensions(),
        0,
        "the I/O manager frees it with the driver object"
    );
}

#[test]
fn a_fallback_worker_threads_storage_belongs_to_the_driver_object_too() {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Disabled);
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert!(!hotswap.is_hot_swappable());
    let blocks = storage.control().driver_object_extensions();
    let thread = start(hotswap);
    assert!(!thread.is_hot_swappable());
    assert_eq!(
        storage.control().driver_object_extensions(),
        blocks + 2,
        "the context and events, and the library's loop state"
    );
    assert_runs_on_its_storage(&thread);
    let ended = thread_of(thread.handle());
    thread.stop_and_join().unwrap();
    assert!(ended.has_ended());
}

#[test]
fn stop_and_join_ends_the_thread_before_it_returns() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let thread = start(hotswap);
    let context = thread.context();
    kick(context);
    let ended = thread_of(thread.handle());
    assert!(!ended.has_ended());
    assert_eq!(extension(&hotswap).worker_threads(), 1);
    thread.stop_and_join().unwrap();
    assert!(ended.has_ended(), "joined");
    assert_eq!(context.get().stopped.load(Ordering::SeqCst), 1);
    assert_eq!(extension(&hotswap).worker_threads(), 0);
}

#[test]
fn dropping_a_worker_thread_stops_and_joins_it() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let thread = start(hotswap);
    let (context, ended) = (thread.context(), thread_of(thread.handle()));
    kick(context);
    drop(thread);
    assert!(ended.has_ended(), "joined by the drop");
    assert!(context.stop_requested());
    assert_eq!(context.get().stopped.load(Ordering::SeqCst), 1);
    assert_eq!(extension(&hotswap).worker_threads(), 0);
}

#[test]
fn into_raw_hands_the_running_thread_on_and_from_raw_takes_it_back() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let thread = start(hotswap);
    let (context, handle) = (thread.context(), thread.handle());
    let ended = thread_of(handle);
    let raw = thread.into_raw();
    assert_eq!(
        raw.as_ptr() as usize,
        std::ptr::from_ref(context) as usize,
        "the storage's address"
    );
    // Not stopped: it still runs, owned by nobody but the raw pointer.
    kick(context);
    assert!(!ended.has_ended());
    assert!(!context.stop_requested());

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

    // SAFETY: as above, with the thread's own type; taken back once.
    let thread = unsafe { WorkerThread::<Seen, 1>::from_raw(raw) }.unwrap();
    assert_eq!(
        std::ptr::from_ref(thread.context()) as usize,
        std::ptr::from_ref(context) as usize
    );
    assert_eq!(thread.handle(), handle);
    assert!(thread.is_hot_swappable());
    kick(context);
    thread.stop_and_join().unwrap();
    assert!(ended.has_ended());
    assert_eq!(context.get().stopped.load(Ordering::SeqCst), 1);
}
