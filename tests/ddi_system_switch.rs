//! The system-wide DriverProxy switch ("configured and not globally disabled",
//! `docs/ddi.md#concepts`; it governs `#iogetdriverproxyfeatures`, `#iocreatedriverproxyextension`
//! and `#iodriverproxycreatehotswappableworkerthread`). A process-wide knob: this binary's tests
//! take turns (a lock) and
//! each sets the switch as it needs.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, EventKind, HotSwap, NtStatus, Timeout, Unavailable,
    WorkerError, WorkerRef, WorkerRoutine, probe,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control;

use common::{driver, extension, hotswap};

static SWITCH: Mutex<()> = Mutex::new(());

/// Takes this binary's turn and sets the switch.
fn system(on: bool) -> MutexGuard<'static, ()> {
    let turn = SWITCH.lock().unwrap_or_else(PoisonError::into_inner);
    control::set_system_enabled(on);
    turn
}

type Worker = WorkerRoutine<(), 1>;
extern "system" fn worker(_: WorkerRef<(), 1>, _: NtStatus) -> bool {
    false
}
type Op = extern "system" fn(u64) -> u64;
extern "system" fn plus_one(x: u64) -> u64 {
    x + 1
}
const WORKER: EndpointId<Worker> = EndpointId::new(1);
const OP: EndpointId<Op> = EndpointId::new(2);

#[test]
fn switched_off_every_driver_and_drivers_in_general_report_enabled_0() {
    let _turn = system(false);
    let mut storage = HostDriverObject::new();
    assert!(!control::system_enabled());
    assert!(!probe(None).unwrap().enabled());
    assert!(!probe(Some(driver(&mut storage))).unwrap().enabled());
}

#[test]
fn switched_off_the_library_falls_back_and_creates_nothing() {
    let _turn = system(false);
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    assert!(storage.control().extension().is_none(), "nothing created");
}

#[test]
fn switched_off_worker_threads_return_status_not_supported_while_existing_wrappers_keep_working() {
    let turn = system(true);
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let table = EndpointTable::new([
        EndpointEntry::new(WORKER, worker as Worker),
        EndpointEntry::new(OP, plus_one as Op),
    ])
    .unwrap();
    hotswap.register(&table, None).unwrap();
    let routine = hotswap.wrapper(&table, WORKER).unwrap();
    let op = hotswap.wrapper(&table, OP).unwrap();
    drop(turn);

    let _turn = system(false);
    assert_eq!(
        hotswap.worker_threads(),
        Ok(()),
        "the routines exist: only the kernel's answer says no"
    );
    let error = hotswap
        .worker_thread(routine, ())
        .events([EventKind::Synchronization])
        .timeout(Timeout::from_millis(1))
        .spawn()
        .unwrap_err();
    assert_eq!(error, WorkerError::NotSupported);
    assert_eq!(NtStatus::from(error), NtStatus::NOT_SUPPORTED);
    assert_eq!(extension(&hotswap).worker_threads(), 0);
    assert_eq!(op.get()(41), 42, "an existing wrapper keeps working");
    assert_eq!(hotswap.wrapper(&table, OP).unwrap(), op, "and lookups too");
}
