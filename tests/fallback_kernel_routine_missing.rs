//! On a kernel that lacks one of the general routines the library resolves (besides the seven
//! DriverProxy ones, which `fallback_export_missing.rs` hides), a driver built on driver-proxy
//! still loads and runs, and the library names the missing routine where it matters:
//!
//! | hidden | `HotSwap::new` | worker threads |
//! |---|---|---|
//! | `IoAllocateDriverObjectExtension`, `IoGetDriverObjectExtension` (the endpoint record's storage) | falls back: [`HotSwap::unavailable`] names it | run, as the library's fallback threads (their storage is pool) |
//! | the five `Ke*Event` routines, `ZwWaitForSingleObject`, `ZwClose` | hot-swap available | [`HotSwap::worker_threads`] names it |
//! | `PsCreateSystemThread`, `KeWaitForMultipleObjects` | hot-swap available | run hot-swappable; in fallback, `worker_threads` names it |
//! | `ExAllocatePool2` | hot-swap available | run, their storage from `ExAllocatePoolWithTag`, zeroed by the library |
//! | `ExAllocatePoolWithTag` | nothing changes (`ExAllocatePool2` is used) | |
//! | `ExAllocatePool2` and `ExAllocatePoolWithTag` | hot-swap available | `worker_threads` names `ExAllocatePoolWithTag` |
//! | `ExFreePoolWithTag` | hot-swap available | `worker_threads` names it |
//!
//! Where `worker_threads` names a routine, `spawn` fails with
//! `WorkerError::Unavailable(Unavailable::ExportMissing(name))` without calling the kernel (no
//! storage allocated, no thread created) and drops the context. Where workers run, their
//! storage (pool tag `DPwk`) is freed once they are stopped.
//!
//! Hiding an export is process-wide and the library resolves its routines once per process,
//! so each configuration runs in a child process of this test binary: every test below
//! re-runs the binary's ignored test [`child`] with the routines to hide in the environment
//! (the child runs alone in its process, so its `DPwk` counts are its own).

mod common;

use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, Event, EventError, EventKind, HotSwap, NtStatus,
    Phase, Unavailable, Wake, WorkerError, WorkerRef, WorkerRoutine, probe, sys,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{self, DriverFeatures};

use common::{driver, leak, wait_until};

/// The environment variable that tells [`child`] which exports to hide (comma-separated).
const HIDE: &str = "DRIVER_PROXY_TEST_HIDE";

/// Runs [`child`] in a child process of this test binary with `names` hidden.
fn run_with_hidden(names: &[&str]) {
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HIDE, names.join(","))
        .output()
        .expect("run the child process");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "with {names:?} hidden: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("test child ... ok"),
        "the child ran its checks:\n{stdout}"
    );
}

/// The checks of one configuration, in a process of its own (see [`run_with_hidden`]).
#[test]
#[ignore = "run in a child process by the other tests of this file"]
fn child() {
    let Ok(hidden) = std::env::var(HIDE) else {
        eprintln!("{HIDE} is not set: nothing to check outside a child process");
        return;
    };
    let names: Vec<&'static str> = hidden
        .split(',')
        .map(|name| &*String::leak(name.to_owned()))
        .collect();
    // Before anything else in this process calls the library.
    for name in &names {
        driver_proxy_host::hide_export(name);
    }
    let name = names[0];
    match hidden.as_str() {
        "IoAllocateDriverObjectExtension" | "IoGetDriverObjectExtension" => {
            without_storage(name);
        }
        "KeInitializeEvent" | "KeSetEvent" | "KeClearEvent" | "KeResetEvent"
        | "KeReadStateEvent" => without_event_routine(name),
        "ZwWaitForSingleObject" | "ZwClose" | "ExFreePoolWithTag" => {
            without_worker_routine(name);
        }
        "PsCreateSystemThread" | "KeWaitForMultipleObjects" => {
            without_fallback_thread_routine(name);
        }
        "ExAllocatePool2" => without_pool2(),
        "ExAllocatePoolWithTag" => without_pool_with_tag(),
        "ExAllocatePool2,ExAllocatePoolWithTag" => without_either_allocator(),
        other => panic!("no checks for {other}"),
    }
}

#[test]
fn without_io_allocate_driver_object_extension_hot_swap_falls_back_naming_it_and_workers_run() {
    run_with_hidden(&["IoAllocateDriverObjectExtension"]);
}

#[test]
fn without_io_get_driver_object_extension_hot_swap_falls_back_naming_it_and_workers_run() {
    run_with_hidden(&["IoGetDriverObjectExtension"]);
}

#[test]
fn without_ke_initialize_event_hot_swap_works_and_worker_threads_name_it() {
    run_with_hidden(&["KeInitializeEvent"]);
}

#[test]
fn without_ke_set_event_hot_swap_works_and_worker_threads_name_it() {
    run_with_hidden(&["KeSetEvent"]);
}

#[test]
fn without_ke_clear_event_hot_swap_works_and_worker_threads_name_it() {
    run_with_hidden(&["KeClearEvent"]);
}

#[test]
fn without_ke_reset_event_hot_swap_works_and_worker_threads_name_it() {
    run_with_hidden(&["KeResetEvent"]);
}

#[test]
fn without_ke_read_state_event_hot_swap_works_and_worker_threads_name_it() {
    run_with_hidden(&["KeReadStateEvent"]);
}

#[test]
fn without_zw_wait_for_single_object_hot_swap_works_and_worker_threads_name_it() {
    run_with_hidden(&["ZwWaitForSingleObject"]);
}

#[test]
fn without_zw_close_hot_swap_works_and_worker_threads_name_it() {
    run_with_hidden(&["ZwClose"]);
}

#[test]
fn without_ps_create_system_thread_workers_run_hot_swappable_and_only_fallback_names_it() {
    run_with_hidden(&["PsCreateSystemThread"]);
}

#[test]
fn without_ke_wait_for_multiple_objects_workers_run_hot_swappable_and_only_fallback_names_it() {
    run_with_hidden(&["KeWaitForMultipleObjects"]);
}

#[test]
fn without_ex_allocate_pool2_workers_use_the_down_level_allocator() {
    run_with_hidden(&["ExAllocatePool2"]);
}

#[test]
fn without_ex_allocate_pool_with_tag_nothing_changes() {
    run_with_hidden(&["ExAllocatePoolWithTag"]);
}

#[test]
fn without_either_allocator_hot_swap_works_and_worker_threads_name_ex_allocate_pool_with_tag() {
    run_with_hidden(&["ExAllocatePool2", "ExAllocatePoolWithTag"]);
}

#[test]
fn without_ex_free_pool_with_tag_hot_swap_works_and_worker_threads_name_it() {
    run_with_hidden(&["ExFreePoolWithTag"]);
}

// What the child checks.

type Op = extern "system" fn(u64) -> u64;
extern "system" fn plus_one(x: u64) -> u64 {
    x + 1
}
extern "system" fn plus_two(x: u64) -> u64 {
    x + 2
}

/// A worker's context: its calls, and a count of its drops. All zero at the start: a worker
/// whose storage were not zeroed, or not written, would count from garbage.
struct Ticks {
    calls: AtomicUsize,
    drops: &'static AtomicUsize,
}

impl Ticks {
    fn new() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            drops: leak(AtomicUsize::new(0)),
        }
    }
}

impl Drop for Ticks {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

type Worker = WorkerRoutine<Ticks, 1>;
extern "system" fn worker(worker: WorkerRef<Ticks, 1>, status: NtStatus) -> bool {
    if worker.wake(status) == Wake::Stop {
        return false;
    }
    worker.with(|ticks| ticks.calls.fetch_add(1, Ordering::SeqCst));
    true
}

const OP: EndpointId<Op> = EndpointId::new(1);
const WORKER: EndpointId<Worker> = EndpointId::new(2);

/// The pool tag of the library's worker storage.
const DPWK: u32 = u32::from_le_bytes(*b"DPwk");

fn table(op: Op) -> EndpointTable<2> {
    EndpointTable::new([
        EndpointEntry::new(OP, op),
        EndpointEntry::new(WORKER, worker as Worker),
    ])
    .unwrap()
}

/// Registration runs the swap protocol and lookups give real wrappers.
fn assert_hot_swap_works(hotswap: HotSwap) {
    assert!(hotswap.is_hot_swappable());
    let v1 = table(plus_one);
    let mut phases = Vec::new();
    hotswap
        .register(
            &v1,
            Some(&mut |phase: Phase| {
                phases.push(phase);
                Ok(())
            }),
        )
        .unwrap();
    assert_eq!(
        phases,
        [Phase::PreProcess, Phase::ProxyStalled, Phase::PostProcess]
    );
    let wrapper = hotswap.wrapper(&v1, OP).unwrap();
    assert_ne!(wrapper.address(), plus_one as Op as usize, "a real wrapper");
    assert_eq!(wrapper.get()(1), 2);
    hotswap.register(&table(plus_two), None).unwrap();
    assert_eq!(wrapper.get()(1), 3, "swapped");
    assert_eq!(hotswap.wrap(plus_two as Op), Ok(wrapper));
}

/// Registration does nothing and lookups give the endpoints themselves.
fn assert_pass_through(hotswap: HotSwap) {
    assert!(!hotswap.is_hot_swappable());
    let v1 = table(plus_one);
    let mut phases = 0;
    hotswap
        .register(
            &v1,
            Some(&mut |_: Phase| {
                phases += 1;
                Ok(())
            }),
        )
        .unwrap();
    assert_eq!(phases, 0, "nothing is swapped in fallback");
    let wrapper = hotswap.wrapper(&v1, OP).unwrap();
    assert_eq!(wrapper.address(), plus_one as Op as usize);
    assert_eq!(wrapper.get()(1), 2);
    assert_eq!(
        hotswap.wrap(plus_two as Op).unwrap().address(),
        plus_two as Op as usize
    );
}

/// A `KSTART_ROUTINE` that does nothing.
unsafe extern "system" fn nothing(_: sys::PVOID) {}

/// Runs `f` with the calling thread's next pool allocation and next thread creation armed to
/// fail, then checks that both faults are still armed: `f` asked the kernel for neither (and
/// no `DPwk` block was allocated).
fn without_kernel_calls<R>(f: impl FnOnce() -> R) -> R {
    let before = control::pool_usage(DPWK);
    control::fail_pool_allocation(1);
    control::fail_thread_creation(1);
    let result = f();
    assert_eq!(control::pool_usage(DPWK), before, "no worker storage");
    // SAFETY: a valid flag and size; the block, if any, is freed below.
    let block =
        unsafe { driver_proxy_host::kernel::ExAllocatePool2(sys::POOL_FLAG_NON_PAGED, 8, 0x1234) };
    if !block.is_null() {
        // SAFETY: allocated just above with this tag.
        unsafe { driver_proxy_host::kernel::ExFreePoolWithTag(block, 0x1234) };
    }
    assert!(block.is_null(), "no pool was allocated");
    let mut handle = std::ptr::null_mut();
    // SAFETY: valid out-pointer; the routine does nothing.
    let status = unsafe {
        driver_proxy_host::kernel::PsCreateSystemThread(
            &raw mut handle,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            Some(nothing),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(
        status,
        sys::STATUS_INSUFFICIENT_RESOURCES,
        "no thread was created"
    );
    result
}

/// `worker_threads` names `name`; `spawn` fails with it, without calling the kernel, and drops
/// the context. `hotswap` has `table(plus_one)` registered (or is a fallback).
fn assert_workers_unavailable(
    hotswap: HotSwap,
    storage: &mut HostDriverObject,
    name: &'static str,
) {
    let missing = Unavailable::ExportMissing(name);
    assert_eq!(hotswap.worker_threads(), Err(missing));
    let routine = hotswap
        .wrapper(&table(plus_one), WORKER)
        .expect("lookups work without worker threads");
    let blocks = storage.control().driver_object_extensions();
    let context = Ticks::new();
    let drops = context.drops;
    let error = without_kernel_calls(|| {
        hotswap
            .worker_thread(routine, context)
            .events([EventKind::Synchronization])
            .spawn()
            .unwrap_err()
    });
    assert_eq!(error, WorkerError::Unavailable(missing));
    assert_eq!(NtStatus::from(error), NtStatus::NOT_SUPPORTED);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the context was dropped");
    assert_eq!(storage.control().driver_object_extensions(), blocks);
    if let Some(extension) = storage.control().extension() {
        assert_eq!(extension.worker_threads(), 0);
    }
}

/// A worker thread starts (its storage: one `DPwk` block, two in fallback), starts from its
/// context as given and with its event not signalled, runs its routine on its event, and
/// stops; then the context is dropped and the storage freed.
fn assert_worker_runs(hotswap: HotSwap, hot_swappable: bool) {
    assert_eq!(hotswap.worker_threads(), Ok(()));
    let routine = hotswap.wrapper(&table(plus_one), WORKER).unwrap();
    let before = control::pool_usage(DPWK);
    let context = Ticks::new();
    let drops = context.drops;
    let thread = hotswap
        .worker_thread(routine, context)
        .events([EventKind::Synchronization])
        .spawn()
        .expect("the worker starts");
    assert_eq!(thread.is_hot_swappable(), hot_swappable);
    let blocks = if hot_swappable { 1 } else { 2 };
    let spawned = control::pool_usage(DPWK);
    assert_eq!(
        (spawned.outstanding, spawned.allocated),
        (before.outstanding + blocks, before.allocated + blocks),
        "its storage is the library's pool"
    );
    assert_eq!(thread.get().calls.load(Ordering::SeqCst), 0);
    assert!(
        !thread.event(0).unwrap().is_set(),
        "not signalled at the start"
    );
    thread.event(0).unwrap().set();
    wait_until("the routine ran", || {
        thread.get().calls.load(Ordering::SeqCst) == 1
    });
    let handle = common::thread_of(thread.handle());
    thread.stop_and_join().unwrap();
    assert!(handle.has_ended());
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the context was dropped");
    let stopped = control::pool_usage(DPWK);
    assert_eq!(
        (stopped.outstanding, stopped.freed),
        (before.outstanding, before.freed + blocks),
        "and the storage freed"
    );
}

/// A fallback handle for a driver object whose features say DriverProxy is disabled.
fn disabled_driver() -> (HostDriverObject, HotSwap) {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Disabled);
    let hotswap = HotSwap::new(driver(&mut storage)).expect("fallback is not an error");
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    (storage, hotswap)
}

/// A driver's own event works (the event routines are all there).
fn assert_events_work() {
    let event = common::event(EventKind::Notification, false);
    assert!(!event.set());
    assert!(event.is_set());
    assert!(event.reset());
}

/// Without the endpoint record's storage, hot swap is unavailable (named), but nothing else
/// needs that storage: worker threads run as the library's fallback threads.
fn without_storage(name: &'static str) {
    let missing = Unavailable::ExportMissing(name);
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).expect("fallback is not an error");
    assert_eq!(hotswap.unavailable(), Some(missing));
    assert_eq!(NtStatus::from(missing), NtStatus::NOT_SUPPORTED);
    assert!(hotswap.raw_extension().is_none());
    assert!(
        storage.control().extension().is_none(),
        "no DriverProxy extension without the endpoint record"
    );
    assert_eq!(storage.control().driver_object_extensions(), 0);
    assert!(
        probe(Some(driver(&mut storage))).unwrap().enabled(),
        "the kernel itself has Driver Hot-Swap"
    );
    let next_image = HotSwap::from_driver_object(driver(&mut storage)).unwrap();
    assert_eq!(next_image.unavailable(), Some(missing));
    assert_pass_through(hotswap);
    assert_worker_runs(hotswap, false);
    let fallback = HotSwap::fallback(driver(&mut storage), Unavailable::NotSupported);
    assert_eq!(fallback.unavailable(), Some(Unavailable::NotSupported));
    assert_eq!(fallback.worker_threads(), Ok(()));
    assert_eq!(
        storage.control().driver_object_extensions(),
        0,
        "no driver-object extension at all"
    );
    assert_events_work();
}

fn without_event_routine(name: &'static str) {
    let missing = Unavailable::ExportMissing(name);
    let mut storage = HostDriverObject::new();
    let hotswap = common::hotswap(&mut storage);
    assert_hot_swap_works(hotswap);
    assert_workers_unavailable(hotswap, &mut storage, name);
    let event: &'static Event = leak(Event::new());
    assert_eq!(
        Pin::static_ref(event)
            .initialize(EventKind::Notification, false)
            .unwrap_err(),
        EventError::ExportMissing(name)
    );
    assert!(event.get().is_none(), "nothing initialised");
    let (mut disabled, fallback) = disabled_driver();
    assert_eq!(fallback.worker_threads(), Err(missing));
    assert_pass_through(fallback);
    assert_workers_unavailable(fallback, &mut disabled, name);
}

/// A routine every worker needs besides the events: waiting for and closing the thread's
/// handle, freeing its storage.
fn without_worker_routine(name: &'static str) {
    let missing = Unavailable::ExportMissing(name);
    let mut storage = HostDriverObject::new();
    let hotswap = common::hotswap(&mut storage);
    assert_hot_swap_works(hotswap);
    assert_workers_unavailable(hotswap, &mut storage, name);
    assert_events_work();
    let (mut disabled, fallback) = disabled_driver();
    assert_eq!(fallback.worker_threads(), Err(missing));
    assert_pass_through(fallback);
    assert_workers_unavailable(fallback, &mut disabled, name);
}

fn without_fallback_thread_routine(name: &'static str) {
    let missing = Unavailable::ExportMissing(name);
    let mut storage = HostDriverObject::new();
    let hotswap = common::hotswap(&mut storage);
    assert_hot_swap_works(hotswap);
    // The kernel runs a hot-swappable worker's loop: the library needs neither routine.
    assert_worker_runs(hotswap, true);
    let (mut disabled, fallback) = disabled_driver();
    assert_eq!(fallback.worker_threads(), Err(missing));
    assert_pass_through(fallback);
    assert_workers_unavailable(fallback, &mut disabled, name);
    let explicit = HotSwap::fallback(driver(&mut storage), Unavailable::DriverBlocked);
    assert_eq!(explicit.worker_threads(), Err(missing));
    assert_events_work();
}

/// Without `ExAllocatePool2` (Windows before 10 2004), the library allocates with
/// `ExAllocatePoolWithTag`, which does not zero (the host fills its blocks with `0xA5`): the
/// workers run all the same, from their contexts as given (all counters zero), with their
/// events not signalled, and free their storage.
fn without_pool2() {
    // SAFETY: a valid pool type and size; freed below.
    let block = unsafe {
        driver_proxy_host::kernel::ExAllocatePoolWithTag(sys::NonPagedPoolNx, 64, 0x1234)
    };
    assert!(!block.is_null());
    // SAFETY: a live block of 64 bytes, written by the allocator (its fill).
    let fill = unsafe { std::slice::from_raw_parts(block.cast::<u8>(), 64) }.to_vec();
    // SAFETY: allocated above with this tag.
    unsafe { driver_proxy_host::kernel::ExFreePoolWithTag(block, 0x1234) };
    assert!(
        fill.iter().all(|&b| b == 0xA5),
        "the down-level allocator's blocks are not zeroed"
    );
    let mut storage = HostDriverObject::new();
    let hotswap = common::hotswap(&mut storage);
    assert_hot_swap_works(hotswap);
    assert_worker_runs(hotswap, true);
    let (_disabled, fallback) = disabled_driver();
    assert_pass_through(fallback);
    assert_worker_runs(fallback, false);
    assert_events_work();
}

/// `ExAllocatePool2` is used where the kernel has it: the down-level allocator is not needed.
fn without_pool_with_tag() {
    let mut storage = HostDriverObject::new();
    let hotswap = common::hotswap(&mut storage);
    assert_hot_swap_works(hotswap);
    assert_worker_runs(hotswap, true);
    let (_disabled, fallback) = disabled_driver();
    assert_pass_through(fallback);
    assert_worker_runs(fallback, false);
    assert_events_work();
}

/// With neither allocator, workers have no storage: named by the down-level routine's name.
fn without_either_allocator() {
    without_worker_routine("ExAllocatePoolWithTag");
}
