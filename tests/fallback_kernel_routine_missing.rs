//! On a kernel that lacks one of the general routines the library resolves (besides the seven
//! DriverProxy ones, which `fallback_export_missing.rs` hides), a driver built on driver-proxy
//! still loads and runs, and the library names the missing routine where it matters:
//!
//! | hidden | `HotSwap::new` | worker threads |
//! |---|---|---|
//! | `IoAllocateDriverObjectExtension`, `IoGetDriverObjectExtension` (the endpoint record's storage) | falls back: [`HotSwap::unavailable`] names it | [`HotSwap::worker_threads`] names it |
//! | the five `Ke*Event` routines, `ZwWaitForSingleObject`, `ZwClose` | hot-swap available | `worker_threads` names it |
//! | `PsCreateSystemThread`, `KeWaitForMultipleObjects` | hot-swap available | run hot-swappable; in fallback, `worker_threads` names it |
//! | `ExAllocatePool2` and `ExFreePoolWithTag` | nothing changes: the library allocates no pool | |
//!
//! Where `worker_threads` names a routine, `spawn` fails with
//! `WorkerError::Unavailable(Unavailable::ExportMissing(name))` without calling the kernel (no
//! storage allocated, no thread created) and drops the context.
//!
//! Hiding an export is process-wide and the library resolves its routines once per process,
//! so each configuration runs in a child process of this test binary: every test below
//! re-runs the binary's ignored test [`child`] with the routine to hide in the environment.

mod common;

use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, Event, EventError, EventKind, HotSwap, NtStatus,
    Phase, Unavailable, Wake, WorkerContext, WorkerError, WorkerRoutine, probe, sys,
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
    match name {
        "IoAllocateDriverObjectExtension" | "IoGetDriverObjectExtension" => {
            without_storage(name);
        }
        "KeInitializeEvent" | "KeSetEvent" | "KeClearEvent" | "KeResetEvent"
        | "KeReadStateEvent" => without_event_routine(name),
        "ZwWaitForSingleObject" | "ZwClose" => without_thread_handle_routine(name),
        "PsCreateSystemThread" | "KeWaitForMultipleObjects" => {
            without_fallback_thread_routine(name);
        }
        "ExAllocatePool2" => without_pool(),
        other => panic!("no checks for {other}"),
    }
}

#[test]
fn without_io_allocate_driver_object_extension_hot_swap_falls_back_and_names_it() {
    run_with_hidden(&["IoAllocateDriverObjectExtension"]);
}

#[test]
fn without_io_get_driver_object_extension_hot_swap_falls_back_and_names_it() {
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
fn without_the_pool_routines_nothing_changes() {
    run_with_hidden(&["ExAllocatePool2", "ExFreePoolWithTag"]);
}

// What the child checks.

type Op = extern "system" fn(u64) -> u64;
extern "system" fn plus_one(x: u64) -> u64 {
    x + 1
}
extern "system" fn plus_two(x: u64) -> u64 {
    x + 2
}

/// A worker's context: its calls, and a count of its drops.
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
extern "system" fn worker(worker: &'static WorkerContext<Ticks, 1>, status: NtStatus) -> bool {
    if worker.wake(status) == Wake::Stop {
        return false;
    }
    worker.get().calls.fetch_add(1, Ordering::SeqCst);
    true
}

const OP: EndpointId<Op> = EndpointId::new(1);
const WORKER: EndpointId<Worker> = EndpointId::new(2);

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

/// Runs `f` with the calling thread's next driver-object-extension allocation and next thread
/// creation armed to fail, then checks that both faults are still armed: `f` asked the kernel
/// for neither.
fn without_kernel_calls<R>(f: impl FnOnce() -> R) -> R {
    control::fail_pool_allocation(1);
    control::fail_thread_creation(1);
    let result = f();
    let mut probe_driver = HostDriverObject::new();
    let mut block = std::ptr::null_mut();
    // SAFETY: a live driver object; `block` is a valid local.
    let status = unsafe {
        driver_proxy_host::kernel::IoAllocateDriverObjectExtension(
            probe_driver.as_raw(),
            0x1234 as sys::PVOID,
            8,
            &raw mut block,
        )
    };
    assert_eq!(
        status,
        sys::STATUS_INSUFFICIENT_RESOURCES,
        "no storage was allocated"
    );
    let mut handle = std::ptr::null_mut();
    // SAFETY: valid out-pointer; the routine does nothing.
    let status = unsafe {
        driver_proxy_host::kernel::PsCreateSystemThread(
            &raw mut handle,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            nothing,
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

/// A worker thread starts, runs its routine on its event, and stops.
fn assert_worker_runs(hotswap: HotSwap, hot_swappable: bool) {
    assert_eq!(hotswap.worker_threads(), Ok(()));
    let routine = hotswap.wrapper(&table(plus_one), WORKER).unwrap();
    let thread = hotswap
        .worker_thread(routine, Ticks::new())
        .events([EventKind::Synchronization])
        .spawn()
        .expect("the worker starts");
    assert_eq!(thread.is_hot_swappable(), hot_swappable);
    thread.event(0).unwrap().set();
    let context = thread.context();
    wait_until("the routine ran", || {
        context.get().calls.load(Ordering::SeqCst) == 1
    });
    let handle = common::thread_of(thread.handle());
    thread.stop_and_join().unwrap();
    assert!(handle.has_ended());
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
    assert_workers_unavailable(hotswap, &mut storage, name);
    let fallback = HotSwap::fallback(driver(&mut storage), Unavailable::NotSupported).unwrap();
    assert_eq!(fallback.unavailable(), Some(Unavailable::NotSupported));
    assert_eq!(fallback.worker_threads(), Err(missing));
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

fn without_thread_handle_routine(name: &'static str) {
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
    let explicit = HotSwap::fallback(driver(&mut storage), Unavailable::DriverBlocked).unwrap();
    assert_eq!(explicit.worker_threads(), Err(missing));
    assert_events_work();
}

fn without_pool() {
    let mut storage = HostDriverObject::new();
    let hotswap = common::hotswap(&mut storage);
    assert_hot_swap_works(hotswap);
    assert_worker_runs(hotswap, true);
    let (_disabled, fallback) = disabled_driver();
    assert_pass_through(fallback);
    assert_worker_runs(fallback, false);
    assert_events_work();
}
