//! Work items: `IoAllocateWorkItem`, `IoQueueWorkItem`, `IoFreeWorkItem` (Microsoft x64).
//! The contracts are in the docs of [`super`].
//!
//! A queued work item runs on a thread of its own standing for the kernel's system worker
//! threads, at `PASSIVE_LEVEL`, running for the driver that owns the device (pool it
//! allocates is charged to the driver), under the watchdog. While it is queued or running,
//! the I/O manager holds a reference on the device, as Windows does: the device's memory
//! outlives an `IoDeleteDevice` until the routine returned, and unloading the driver waits for
//! the routine before `DriverUnload` runs. The routine is called with the Microsoft x64
//! convention; hand the kernel a DriverProxy wrapper of it and it is hot-swappable: a swap
//! drains the routines running in the old image.

use std::collections::HashMap;
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::ddi::PVOID;

use super::io::{self, DeviceAddress, DriverAddress};
use super::types::DEVICE_OBJECT;
use crate::kernel::{BugCheck, SendPtr, bugcheck, context, faults, lock};

/// `PIO_WORKITEM_ROUTINE`: `VOID (PDEVICE_OBJECT, PVOID Context)`, Microsoft x64.
type WorkItemRoutine = unsafe extern "win64" fn(*mut DEVICE_OBJECT, PVOID);

/// The opaque `IO_WORKITEM` a driver gets: its memory is this block (the kernel's is larger
/// and private; drivers only pass the pointer around).
#[repr(C, align(16))]
struct IoWorkItem {
    _opaque: [u8; 0x58],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Queued,
    Running,
}

#[derive(Debug)]
struct Record {
    driver: DriverAddress,
    device: DeviceAddress,
    state: State,
}

#[derive(Default)]
struct Items {
    items: HashMap<usize, Record>,
    /// Work items queued or running, per driver.
    pending: HashMap<DriverAddress, usize>,
}

static ITEMS: LazyLock<(Mutex<Items>, Condvar)> = LazyLock::new(Default::default);

/// Work items allocated for `driver` and not freed.
pub(crate) fn outstanding_of(driver: DriverAddress) -> usize {
    lock(&ITEMS.0)
        .items
        .values()
        .filter(|r| r.driver == driver)
        .count()
}

/// Waits at most `timeout` until no work item of `driver` is queued or running; how many
/// still are.
pub(crate) fn wait_idle(driver: DriverAddress, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let (items, changed) = &*ITEMS;
    let mut items = lock(items);
    loop {
        let pending = items.pending.get(&driver).copied().unwrap_or(0);
        let now = Instant::now();
        if pending == 0 || now >= deadline {
            return pending;
        }
        items = changed
            .wait_timeout(items, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

/// `PIO_WORKITEM IoAllocateWorkItem(PDEVICE_OBJECT DeviceObject)`: a work item for a device
/// of the driver, charged to that driver (reported at unload if not freed). Null when a pool
/// fault of the calling thread fires.
///
/// Bugchecks (`DRIVER_VERIFIER_IOMANAGER_VIOLATION`) for a pointer that is not a live device
/// object.
///
/// # Safety
/// None beyond the C contract.
pub unsafe extern "win64" fn IoAllocateWorkItem(DeviceObject: *mut DEVICE_OBJECT) -> PVOID {
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "IoAllocateWorkItem");
    let device = DeviceAddress::of(DeviceObject);
    let Some(driver) = io::driver_of(device) else {
        bugcheck(
            BugCheck::IoManagerViolation,
            "IoAllocateWorkItem",
            format_args!("{DeviceObject:p} is not a live device object"),
        );
    };
    if faults::take(&faults::POOL) {
        return core::ptr::null_mut();
    }
    let item = Box::into_raw(Box::new(IoWorkItem { _opaque: [0; 0x58] }));
    lock(&ITEMS.0).items.insert(
        item as usize,
        Record {
            driver,
            device,
            state: State::Idle,
        },
    );
    item.cast()
}

/// `VOID IoFreeWorkItem(PIO_WORKITEM IoWorkItem)`: allowed while idle, and from (or during)
/// its own routine, which the kernel dequeued before calling it.
///
/// Bugchecks (`DRIVER_VERIFIER_DETECTED_VIOLATION`): not a work item (freed twice, never
/// allocated); a work item still queued (its routine has not started).
///
/// # Safety
/// `IoWorkItem` is not used afterwards.
pub unsafe extern "win64" fn IoFreeWorkItem(IoWorkItem: PVOID) {
    const NAME: &str = "IoFreeWorkItem";
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "IoFreeWorkItem");
    let mut items = lock(&ITEMS.0);
    match items.items.get(&(IoWorkItem as usize)).map(|r| r.state) {
        None => {
            drop(items);
            bugcheck(
                BugCheck::InvalidObject,
                NAME,
                format_args!("{IoWorkItem:p} is not a work item (freed twice, or never allocated)"),
            );
        }
        Some(State::Queued) => {
            drop(items);
            bugcheck(
                BugCheck::InvalidObject,
                NAME,
                format_args!("{IoWorkItem:p} is still queued: its routine has not run"),
            );
        }
        Some(State::Idle | State::Running) => {}
    }
    items.items.remove(&(IoWorkItem as usize));
    drop(items);
    // SAFETY: allocated by IoAllocateWorkItem as a Box, removed from the table once; nothing
    // else reads its memory (a running routine's thread holds its own copies).
    drop(unsafe { Box::from_raw(IoWorkItem.cast::<self::IoWorkItem>()) });
}

/// `VOID IoQueueWorkItem(PIO_WORKITEM IoWorkItem, PIO_WORKITEM_ROUTINE WorkerRoutine,
/// WORK_QUEUE_TYPE QueueType, PVOID Context)`: runs `WorkerRoutine(DeviceObject, Context)`
/// on a worker thread (module docs). `QueueType` is accepted and ignored (every queue runs
/// at once on its own thread).
///
/// Bugchecks (`DRIVER_VERIFIER_DETECTED_VIOLATION`): not a work item; a work item queued
/// already and not yet started (*policy*: Driver Verifier's check); a null routine.
///
/// # Safety
/// `WorkerRoutine` is Microsoft x64 code with the `IO_WORKITEM_ROUTINE` signature that stays
/// callable until it has run.
pub unsafe extern "win64" fn IoQueueWorkItem(
    IoWorkItem: PVOID,
    WorkerRoutine: usize,
    QueueType: i32,
    Context: PVOID,
) {
    const NAME: &str = "IoQueueWorkItem";
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "IoQueueWorkItem");
    let _ = QueueType;
    if WorkerRoutine == 0 {
        bugcheck(
            BugCheck::InvalidObject,
            NAME,
            format_args!("{IoWorkItem:p}: the routine is null"),
        );
    }
    let key = IoWorkItem as usize;
    let (driver, device) = {
        let mut items = lock(&ITEMS.0);
        let Some(record) = items.items.get_mut(&key) else {
            drop(items);
            bugcheck(
                BugCheck::InvalidObject,
                NAME,
                format_args!("{IoWorkItem:p} is not a work item (freed, or never allocated)"),
            );
        };
        if record.state == State::Queued {
            drop(items);
            bugcheck(
                BugCheck::InvalidObject,
                NAME,
                format_args!("{IoWorkItem:p} is queued already and its routine has not started"),
            );
        }
        record.state = State::Queued;
        let (driver, device) = (record.driver, record.device);
        *items.pending.entry(driver).or_default() += 1;
        (driver, device)
    };
    io::reference(device);
    let context_ptr = SendPtr(Context);
    let driver_name = io::driver_name(driver);
    let run = move || {
        let context_ptr = context_ptr;
        if let Some(record) = lock(&ITEMS.0).items.get_mut(&key) {
            record.state = State::Running;
        }
        {
            let _running = context::enter(driver.as_usize());
            let _doing = crate::image::activity::enter("IoWorkItem routine", WorkerRoutine as u64);
            let _watch =
                super::watchdog::watch("IoWorkItem routine", WorkerRoutine as u64, &driver_name);
            // SAFETY: caller contract: IO_WORKITEM_ROUTINE code, Microsoft x64; the device
            // stays allocated (referenced above) until `release` below.
            unsafe {
                let routine = core::mem::transmute::<usize, WorkItemRoutine>(WorkerRoutine);
                routine(device.as_ptr(), context_ptr.0);
            }
            crate::kernel::irql::check_returned(
                crate::kernel::irql::PASSIVE,
                "IoWorkItem routine",
                &driver_name,
            );
        }
        io::release(device);
        let (items, changed) = &*ITEMS;
        let mut items = lock(items);
        if let Some(record) = items.items.get_mut(&key)
            && record.state == State::Running
        {
            record.state = State::Idle;
        }
        if let Some(count) = items.pending.get_mut(&driver) {
            *count -= 1;
            if *count == 0 {
                items.pending.remove(&driver);
            }
        }
        drop(items);
        changed.notify_all();
    };
    if std::thread::Builder::new()
        .name("system worker thread".into())
        .spawn(run)
        .is_err()
    {
        bugcheck(
            BugCheck::InvalidObject,
            NAME,
            format_args!("the host could not start a worker thread"),
        );
    }
}
