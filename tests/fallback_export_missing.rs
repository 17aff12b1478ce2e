//! On a kernel without the DriverProxy exports (every Windows before 24H2; here the host
//! kernel with its seven DriverProxy exports hidden), a driver built on driver-proxy still
//! loads and runs: wrappers are the endpoints themselves, registration is a no-op, and the API
//! says why.
//!
//! The library resolves its routines once per process, on its first call, so every test
//! starts with [`kernel_without_driver_proxy`], which hides the exports before anything else
//! in this binary can call the library.

mod common;

use std::sync::{Mutex, Once, PoisonError};

use driver_proxy::{
    CreateError, DriverObject, EndpointEntry, EndpointId, EndpointTable, EventKind, Extension,
    HotSwap, LookupError, Phase, Timeout, Unavailable, WorkerError, WorkerRoutine, probe, sys,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{self, pool_usage};

use common::{driver, event, join, leak, wait_until};

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
    assert!(hotswap.extension().is_none());
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

#[test]
fn creating_an_extension_directly_names_the_missing_export() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    assert_eq!(
        Extension::create(driver(&mut storage)).unwrap_err(),
        CreateError::ExportMissing("IoCreateDriverProxyExtension")
    );
}

#[test]
fn a_null_driver_object_is_a_documented_error() {
    kernel_without_driver_proxy();
    // SAFETY: null is the bad input under test; it is rejected, never dereferenced.
    let error = unsafe { DriverObject::from_raw(std::ptr::null_mut()) }.unwrap_err();
    assert_eq!(error.status(), driver_proxy::NtStatus::INVALID_PARAMETER);
}

/// The fallback worker tests share the library's pool tag: one at a time.
static WORKER_TESTS: Mutex<()> = Mutex::new(());

/// The fallback thread's pool tag (`'kwPD'` in C).
const WORKER_POOL_TAG: u32 = u32::from_le_bytes(*b"DPwk");

/// What a worker routine saw: the wait status of every call.
struct Calls {
    statuses: Mutex<Vec<i32>>,
}

impl Calls {
    /// An empty record, leaked: the worker's context must outlive the thread.
    fn new() -> &'static Self {
        leak(Self {
            statuses: Mutex::new(Vec::new()),
        })
    }

    fn statuses(&self) -> Vec<i32> {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The index of the stop event: the routine returns `FALSE` when it wakes the thread.
const STOP_INDEX: i32 = 1;

unsafe extern "system" fn recording_routine(
    context: sys::PVOID,
    status: sys::NTSTATUS,
) -> sys::BOOLEAN {
    // SAFETY: the context is the leaked `Calls` given to the builder.
    let calls = unsafe { &*context.cast::<Calls>() };
    let mut statuses = calls
        .statuses
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    statuses.push(status);
    if status == sys::STATUS_WAIT_0 + STOP_INDEX {
        sys::FALSE
    } else {
        sys::TRUE
    }
}

#[test]
fn without_driver_proxy_a_worker_thread_is_a_plain_system_thread_running_the_same_loop() {
    kernel_without_driver_proxy();
    let _serial = WORKER_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
    let before = pool_usage(WORKER_POOL_TAG);
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let calls = Calls::new();
    let kick = event(EventKind::Synchronization, true);
    let stop = event(EventKind::Notification, false);
    let routine = hotswap.wrap(recording_routine as WorkerRoutine).unwrap();
    let thread = hotswap
        .worker_thread(routine)
        .context(calls)
        .event(kick)
        .event(stop)
        .timeout(Timeout::from_millis(20))
        .spawn()
        .expect("the fallback thread starts");
    assert!(!thread.is_hot_swappable(), "the library's own loop");
    assert_eq!(
        pool_usage(WORKER_POOL_TAG).outstanding,
        before.outstanding + 1
    );

    wait_until("a call on the kick, then one on the timeout", || {
        calls.statuses().len() >= 2
    });
    stop.set().unwrap();
    join(thread.handle());
    let statuses = calls.statuses();
    assert_eq!(
        statuses[0],
        sys::STATUS_WAIT_0,
        "the kick (index 0) woke it first"
    );
    assert_eq!(
        statuses[statuses.len() - 1],
        sys::STATUS_WAIT_0 + STOP_INDEX,
        "the stop event (index 1) woke it last, and the loop ended on FALSE: {statuses:x?}"
    );
    assert!(
        statuses.len() >= 3
            && statuses[1..statuses.len() - 1]
                .iter()
                .all(|&s| s == sys::STATUS_TIMEOUT),
        "in between, only timeouts (the kick is a synchronization event: its wait reset it): {statuses:x?}"
    );
    assert_eq!(
        pool_usage(WORKER_POOL_TAG).outstanding,
        before.outstanding,
        "the thread freed its block"
    );
}

#[test]
fn without_driver_proxy_a_failed_thread_creation_is_an_error_and_frees_its_block() {
    kernel_without_driver_proxy();
    let _serial = WORKER_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
    let before = pool_usage(WORKER_POOL_TAG);
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let calls = Calls::new();
    let kick = event(EventKind::Synchronization, true);
    let routine = hotswap.wrap(recording_routine as WorkerRoutine).unwrap();

    control::fail_thread_creation(1);
    let error = hotswap
        .worker_thread(routine)
        .context(calls)
        .event(kick)
        .spawn()
        .unwrap_err();
    assert_eq!(error, WorkerError::InsufficientResources);
    let after = pool_usage(WORKER_POOL_TAG);
    assert_eq!(after.outstanding, before.outstanding, "nothing leaked");
    assert_eq!(
        after.allocated,
        before.allocated + 1,
        "the block was allocated, then freed"
    );

    control::fail_pool_allocation(1);
    let error = hotswap
        .worker_thread(routine)
        .context(calls)
        .event(kick)
        .spawn()
        .unwrap_err();
    assert_eq!(error, WorkerError::InsufficientResources);
    assert_eq!(
        pool_usage(WORKER_POOL_TAG).allocated,
        after.allocated,
        "no block"
    );
    assert!(calls.statuses().is_empty(), "the routine never ran");
}
