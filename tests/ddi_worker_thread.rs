//! `IoDriverProxyCreateHotSwappableWorkerThread` (DDI reference §4.19, §4.10, §4.11): a real
//! thread that waits on the events, calls the routine through its wrapper with the wait
//! status, loops while it returns TRUE, and runs the new implementation after a swap.

mod common;

use std::sync::Mutex;
use std::sync::PoisonError;
use std::thread;
use std::time::Duration;

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, EventKind, HotSwap, Timeout, WaitType, WorkerError,
    WorkerRoutine, Wrapped, sys,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control;

use common::{event, extension, hotswap, image_hotswap, join, leak, raw_event, set, wait_until};

/// What a worker routine saw: (version, wait status) per call.
struct Log {
    calls: Mutex<Vec<(u8, sys::NTSTATUS)>>,
    stop_on: sys::NTSTATUS,
    max_calls: usize,
}

impl Log {
    fn new(stop_on: sys::NTSTATUS, max_calls: usize) -> &'static Self {
        leak(Self {
            calls: Mutex::new(Vec::new()),
            stop_on,
            max_calls,
        })
    }

    fn record(&self, version: u8, status: sys::NTSTATUS) -> sys::BOOLEAN {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.push((version, status));
        sys::BOOLEAN::from(status != self.stop_on && calls.len() < self.max_calls)
    }

    fn calls(&self) -> Vec<(u8, sys::NTSTATUS)> {
        self.calls.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

/// # Safety
/// `context` is a `Log`.
unsafe extern "system" fn worker_v1(context: sys::PVOID, status: sys::NTSTATUS) -> sys::BOOLEAN {
    // SAFETY: every test passes a leaked Log.
    unsafe { &*context.cast::<Log>() }.record(1, status)
}

/// # Safety
/// `context` is a `Log`.
unsafe extern "system" fn worker_v2(context: sys::PVOID, status: sys::NTSTATUS) -> sys::BOOLEAN {
    // SAFETY: every test passes a leaked Log.
    unsafe { &*context.cast::<Log>() }.record(2, status)
}

const WORKER: EndpointId<WorkerRoutine> = EndpointId::new(1);

/// A hot-swap handle with `worker_v1` registered under `WORKER`, and its wrapper.
fn registered(storage: &mut HostDriverObject) -> (HotSwap, Wrapped<WorkerRoutine>) {
    let hotswap = hotswap(storage);
    let table =
        EndpointTable::new([EndpointEntry::new(WORKER, worker_v1 as WorkerRoutine)]).unwrap();
    hotswap.register(&table, None).unwrap();
    let wrapper = hotswap.wrapper(&table, WORKER).unwrap();
    (hotswap, wrapper)
}

#[test]
fn the_worker_waits_on_its_events_and_calls_the_routine_with_status_wait_0_plus_the_index() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let events = [
        event(EventKind::Synchronization, false),
        event(EventKind::Synchronization, false),
        event(EventKind::Synchronization, false),
    ];
    let log = Log::new(sys::STATUS_WAIT_2, usize::MAX);
    let worker = hotswap
        .worker_thread(routine)
        .context(log)
        .event(events[0])
        .event(events[1])
        .event(events[2])
        .spawn()
        .unwrap();
    assert!(worker.is_hot_swappable());
    assert_eq!(extension(&hotswap).worker_threads(), 1);
    events[1].set().unwrap();
    wait_until("the first call", || log.len() == 1);
    events[0].set().unwrap();
    wait_until("the second call", || log.len() == 2);
    events[2].set().unwrap();
    join(worker.handle());
    assert_eq!(
        log.calls(),
        [
            (1, sys::STATUS_WAIT_1),
            (1, sys::STATUS_WAIT_0),
            (1, sys::STATUS_WAIT_2)
        ]
    );
    assert_eq!(extension(&hotswap).worker_threads(), 0);
}

#[test]
fn with_a_timeout_and_no_event_signalled_the_routine_sees_status_timeout() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let log = Log::new(sys::STATUS_SUCCESS, 3);
    let worker = hotswap
        .worker_thread(routine)
        .context(log)
        .event(event(EventKind::Notification, false))
        .timeout(Timeout::from_millis(2))
        .spawn()
        .unwrap();
    join(worker.handle());
    assert_eq!(log.calls(), [(1, sys::STATUS_TIMEOUT); 3]);
}

#[test]
fn the_loop_continues_while_the_routine_returns_true_and_the_thread_ends_when_it_returns_false() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    // A notification event stays signalled: every wait is satisfied at once.
    let log = Log::new(sys::STATUS_TIMEOUT, 50);
    let worker = hotswap
        .worker_thread(routine)
        .context(log)
        .event(event(EventKind::Notification, true))
        .spawn()
        .unwrap();
    join(worker.handle());
    assert_eq!(
        log.len(),
        50,
        "called until it returned FALSE, then no more"
    );
    assert!(control::thread(worker.handle()).unwrap().has_ended());
}

#[test]
fn a_swap_between_iterations_takes_effect_at_the_next_iteration() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let (work, stop) = (
        event(EventKind::Synchronization, false),
        event(EventKind::Synchronization, false),
    );
    let log = Log::new(sys::STATUS_WAIT_1, usize::MAX);
    let worker = hotswap
        .worker_thread(routine)
        .context(log)
        .event(work)
        .event(stop)
        .spawn()
        .unwrap();
    work.set().unwrap();
    wait_until("the first iteration", || log.len() == 1);
    // The thread is waiting in the kernel, not in driver code: the swap does not wait for it.
    let v2 = EndpointTable::new([EndpointEntry::new(WORKER, worker_v2 as WorkerRoutine)]).unwrap();
    hotswap.register(&v2, None).unwrap();
    work.set().unwrap();
    wait_until("the second iteration", || log.len() == 2);
    stop.set().unwrap();
    join(worker.handle());
    assert_eq!(
        log.calls(),
        [
            (1, sys::STATUS_WAIT_0),
            (2, sys::STATUS_WAIT_0),
            (2, sys::STATUS_WAIT_1)
        ]
    );
}

#[test]
fn wait_all_calls_the_routine_only_when_every_event_is_signalled() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let (first, second) = (
        event(EventKind::Synchronization, false),
        event(EventKind::Notification, false),
    );
    let log = Log::new(sys::STATUS_TIMEOUT, 1);
    let worker = hotswap
        .worker_thread(routine)
        .context(log)
        .wait_type(WaitType::All)
        .event(first)
        .event(second)
        .spawn()
        .unwrap();
    first.set().unwrap();
    thread::sleep(Duration::from_millis(30));
    assert_eq!(log.len(), 0, "one of two is not enough");
    second.set().unwrap();
    join(worker.handle());
    assert_eq!(log.calls(), [(1, sys::STATUS_WAIT_0)]);
    assert!(
        !first.is_set().unwrap(),
        "the synchronization event was consumed"
    );
    assert!(
        second.is_set().unwrap(),
        "the notification event stays signalled"
    );
}

#[test]
fn a_wrapper_of_an_image_endpoint_can_be_the_worker_routine() {
    let mut storage = HostDriverObject::new();
    let hotswap = image_hotswap(&mut storage, &[worker_v2 as WorkerRoutine as usize]);
    let routine = hotswap.wrap(worker_v2 as WorkerRoutine).unwrap();
    let log = Log::new(sys::STATUS_WAIT_0, usize::MAX);
    let worker = hotswap
        .worker_thread(routine)
        .context(log)
        .event(event(EventKind::Notification, true))
        .spawn()
        .unwrap();
    join(worker.handle());
    assert_eq!(log.calls(), [(2, sys::STATUS_WAIT_0)]);
}

#[test]
fn a_wrapper_of_another_extension_returns_status_invalid_parameter() {
    let mut mine = HostDriverObject::new();
    let mut theirs = HostDriverObject::new();
    let (hotswap, _) = registered(&mut mine);
    let (_, their_routine) = registered(&mut theirs);
    let error = hotswap
        .worker_thread(their_routine)
        .event(event(EventKind::Notification, false))
        .spawn()
        .unwrap_err();
    assert_eq!(error, WorkerError::InvalidParameter);
    assert_eq!(extension(&hotswap).worker_threads(), 0);
}

#[test]
fn out_of_resources_returns_status_insufficient_resources_and_starts_nothing() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let wake = event(EventKind::Notification, false);
    storage.control().fail_allocation(1);
    assert_eq!(
        hotswap
            .worker_thread(routine)
            .event(wake)
            .spawn()
            .unwrap_err(),
        WorkerError::InsufficientResources
    );
    control::fail_thread_creation(1);
    assert_eq!(
        hotswap
            .worker_thread(routine)
            .event(wake)
            .spawn()
            .unwrap_err(),
        WorkerError::InsufficientResources
    );
    assert_eq!(extension(&hotswap).worker_threads(), 0);
}

// Bad input the typed API makes impossible, through the raw routine.

/// A start context with room for `N` events.
#[repr(C)]
struct RawStart<const N: usize> {
    header: sys::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    events: [sys::PKEVENT; N],
}

fn raw_start<const N: usize>(
    routine: sys::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE,
    context: &'static Log,
    events: [sys::PKEVENT; N],
) -> RawStart<N> {
    RawStart {
        header: sys::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
            WorkerRoutine: routine,
            Context: std::ptr::from_ref(context).cast_mut().cast(),
            WaitType: sys::WaitAny,
            WaitReason: sys::Executive,
            WaitMode: sys::KernelMode,
            Altertable: sys::FALSE,
            HasTimeout: sys::FALSE,
            Timeout: sys::LARGE_INTEGER::default(),
            EventCount: u32::try_from(N).unwrap(),
            Events: [],
        },
        events,
    }
}

/// A start context valid in every field: `routine`, one signalled notification event, `WaitAny`,
/// kernel mode. Each test of bad input breaks one thing.
fn valid_start(routine: WorkerRoutine, context: &'static Log) -> RawStart<1> {
    raw_start(
        Some(routine),
        context,
        [raw_event(sys::NotificationEvent, true)],
    )
}

/// `IoDriverProxyCreateHotSwappableWorkerThread` with raw arguments.
fn raw_create<const N: usize>(
    extension: sys::PDRIVER_PROXY_EXTENSION,
    handle: sys::PHANDLE,
    start: Option<&mut RawStart<N>>,
    client_id: sys::PCLIENT_ID,
) -> sys::NTSTATUS {
    let start = start.map_or(std::ptr::null_mut(), |s| (&raw mut s.header));
    // SAFETY: every pointer is null or valid for the call; the events and context are leaked.
    unsafe {
        driver_proxy_host::kernel::IoDriverProxyCreateHotSwappableWorkerThread(
            extension,
            handle,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            client_id,
            start,
        )
    }
}

fn close(handle: sys::HANDLE) {
    // SAFETY: an open handle, closed once.
    let status = unsafe { driver_proxy_host::kernel::ZwClose(handle) };
    assert_eq!(status, sys::STATUS_SUCCESS);
}

#[test]
fn the_start_context_is_copied_so_the_caller_may_free_it_at_once() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let (work, stop) = (
        raw_event(sys::SynchronizationEvent, false),
        raw_event(sys::SynchronizationEvent, false),
    );
    let log = Log::new(sys::STATUS_WAIT_1, usize::MAX);
    // Boxed, so that it can be freed right after the call.
    let mut start = Box::new(raw_start(Some(routine.get()), log, [work, stop]));
    let mut handle = std::ptr::null_mut();
    let mut client_id = sys::CLIENT_ID {
        UniqueProcess: std::ptr::null_mut(),
        UniqueThread: std::ptr::null_mut(),
    };
    let status = raw_create(
        hotswap.extension().unwrap().as_raw(),
        &raw mut handle,
        Some(&mut *start),
        &raw mut client_id,
    );
    assert_eq!(status, sys::STATUS_SUCCESS);
    assert_eq!(
        client_id.UniqueProcess as usize,
        std::process::id() as usize
    );
    assert!(!client_id.UniqueThread.is_null());
    // Scribble over the caller's copy and free it, as acpi.sys does right after the call.
    // SAFETY: `start` is a live allocation of its own size.
    unsafe {
        std::ptr::from_mut(&mut *start)
            .cast::<u8>()
            .write_bytes(0xCC, size_of::<RawStart<2>>());
    }
    drop(start);
    set(work);
    wait_until("the first call", || log.len() == 1);
    set(stop);
    join(handle);
    close(handle);
    assert_eq!(
        log.calls(),
        [(1, sys::STATUS_WAIT_0), (1, sys::STATUS_WAIT_1)]
    );
}

/// Asserts that creating a worker with `start` returns `STATUS_INVALID_PARAMETER` and starts
/// no thread.
fn assert_invalid<const N: usize>(
    extension: sys::PDRIVER_PROXY_EXTENSION,
    start: Option<&mut RawStart<N>>,
) {
    let mut handle = std::ptr::null_mut();
    assert_eq!(
        raw_create(extension, &raw mut handle, start, std::ptr::null_mut()),
        sys::STATUS_INVALID_PARAMETER
    );
    assert!(handle.is_null(), "no handle written");
    if let Some(control) = control::ExtensionControl::from_raw(extension) {
        assert_eq!(control.worker_threads(), 0);
    }
}

#[test]
fn a_null_start_context_returns_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (hotswap, _) = registered(&mut storage);
    assert_invalid::<1>(hotswap.extension().unwrap().as_raw(), None);
}

#[test]
fn a_null_worker_routine_returns_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (hotswap, _) = registered(&mut storage);
    let log = Log::new(0, 1);
    let mut start = raw_start(None, log, [raw_event(sys::NotificationEvent, false)]);
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
}

#[test]
fn zero_events_return_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let mut start = raw_start::<0>(Some(routine.get()), Log::new(0, 1), []);
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
}

#[test]
fn more_than_64_events_return_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let events = std::array::from_fn::<_, 65, _>(|_| raw_event(sys::NotificationEvent, false));
    let mut start = raw_start(Some(routine.get()), Log::new(0, 1), events);
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
}

#[test]
fn a_routine_that_is_not_a_wrapper_returns_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (hotswap, _) = registered(&mut storage);
    let log = Log::new(0, 1);
    let mut start = valid_start(worker_v1, log);
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
    assert_eq!(log.len(), 0, "never called");
}

type Op = extern "system" fn(u64) -> u64;
extern "system" fn one_parameter(x: u64) -> u64 {
    x
}

#[test]
fn the_wrapper_of_an_endpoint_registered_with_another_parameter_count_returns_status_invalid_parameter()
 {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let id = EndpointId::<Op>::new(5);
    let table = EndpointTable::new([EndpointEntry::new(id, one_parameter as Op)]).unwrap();
    hotswap.register(&table, None).unwrap();
    let address = hotswap.wrapper(&table, id).unwrap().address();
    // SAFETY: only passed to the kernel, which rejects it without calling it.
    let routine = unsafe { core::mem::transmute::<usize, WorkerRoutine>(address) };
    let mut start = valid_start(routine, Log::new(0, 1));
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
}

#[test]
fn an_event_that_is_not_initialised_returns_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let fresh: &'static mut sys::KEVENT = Box::leak(Box::new(sys::KEVENT::zeroed()));
    let mut start = raw_start(
        Some(routine.get()),
        Log::new(0, 1),
        [raw_event(sys::NotificationEvent, true), fresh],
    );
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
    let mut start = raw_start(Some(routine.get()), Log::new(0, 1), [std::ptr::null_mut()]);
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
}

#[test]
fn an_unknown_wait_type_or_wait_mode_returns_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let mut start = valid_start(routine.get(), Log::new(0, 1));
    start.header.WaitType = 2;
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
    start.header.WaitType = sys::WaitAny;
    start.header.WaitMode = 2;
    assert_invalid(hotswap.extension().unwrap().as_raw(), Some(&mut start));
}

#[test]
fn a_null_extension_returns_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (_, routine) = registered(&mut storage);
    let mut start = valid_start(routine.get(), Log::new(0, 1));
    assert_invalid(std::ptr::null_mut(), Some(&mut start));
}

#[test]
fn a_null_thread_handle_pointer_returns_status_invalid_parameter() {
    let mut storage = HostDriverObject::new();
    let (hotswap, routine) = registered(&mut storage);
    let log = Log::new(0, 1);
    let mut start = valid_start(routine.get(), log);
    let status = raw_create(
        hotswap.extension().unwrap().as_raw(),
        std::ptr::null_mut(),
        Some(&mut start),
        std::ptr::null_mut(),
    );
    assert_eq!(status, sys::STATUS_INVALID_PARAMETER);
    thread::sleep(Duration::from_millis(10));
    assert_eq!(log.len(), 0, "no thread ran");
}
