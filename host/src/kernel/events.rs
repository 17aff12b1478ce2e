//! Kernel events and the multi-object wait: `KeInitializeEvent`, `KeSetEvent`,
//! `KeClearEvent`, `KeResetEvent`, `KeReadStateEvent`, `KeWaitForMultipleObjects`.
//!
//! The event's state lives in the caller's `KEVENT` storage, laid out like the kernel's
//! `DISPATCHER_HEADER`: `Type` at offset 0, `SignalState` at 4, and the wait-list head at 8,
//! whose two links point at the list head itself (an empty list), which also marks the
//! storage as initialised *at this address*: an event used before `KeInitializeEvent`, or
//! moved after it, is caught (bugcheck) instead of silently misbehaving.
//!
//! All event state is read and written under one dispatcher lock, like the kernel's
//! dispatcher database. A set event satisfies waiting threads at once, in the order they
//! started waiting: a *notification* event stays signalled and releases every waiter it can;
//! a *synchronization* event releases exactly one waiter and is reset by doing so. A `WaitAny`
//! wait returns `STATUS_WAIT_0 + index` of the object that satisfied it (the lowest signalled
//! index when several are); a `WaitAll` wait returns `STATUS_WAIT_0` once all objects are
//! signalled at the same time, consuming every synchronization event among them.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ddi;

use super::{BugCheck, bugcheck, lock};

/// `EventNotificationObject`: the `Type` byte of a notification event.
const NOTIFICATION: u8 = 0;
/// `EventSynchronizationObject`: the `Type` byte of a synchronization event.
const SYNCHRONIZATION: u8 = 1;
/// Marks bytes 1..4 of an initialised host event (the kernel's `Signalling`, `Size` and
/// `Reserved1` bytes, which drivers never read).
const MAGIC: [u8; 3] = *b"hEv";

/// The host's view of a `KEVENT`.
#[repr(C)]
struct Header {
    kind: u8,
    magic: [u8; 3],
    signal_state: i32,
    flink: usize,
    blink: usize,
}

const _: () = {
    assert!(size_of::<Header>() == size_of::<ddi::KEVENT>());
    assert!(align_of::<Header>() <= align_of::<ddi::KEVENT>());
    assert!(
        core::mem::offset_of!(Header, signal_state)
            == core::mem::offset_of!(ddi::DISPATCHER_HEADER, SignalState)
    );
    assert!(
        core::mem::offset_of!(Header, flink)
            == core::mem::offset_of!(ddi::DISPATCHER_HEADER, WaitListHead)
    );
};

/// A thread waiting in `KeWaitForMultipleObjects` (or a worker thread's wait).
struct Waiter {
    id: u64,
    objects: Vec<usize>,
    wait_all: bool,
    result: Option<ddi::NTSTATUS>,
}

struct Dispatcher {
    waiters: Vec<Waiter>,
    next_id: u64,
}

static DISPATCHER: Mutex<Dispatcher> = Mutex::new(Dispatcher {
    waiters: Vec::new(),
    next_id: 1,
});
/// Woken whenever a waiter's `result` is set.
static SATISFIED: Condvar = Condvar::new();

/// The dispatcher lock (held for every access to event state).
fn dispatcher() -> MutexGuard<'static, Dispatcher> {
    lock(&DISPATCHER)
}

fn header(event: usize) -> *mut Header {
    event as *mut Header
}

/// Whether `event` is an initialised host event at its own address. Reads 24 bytes.
///
/// # Safety
/// `event` must be null or point to 24 readable bytes; the dispatcher lock must be held.
unsafe fn is_event(event: usize) -> bool {
    if event == 0 || !event.is_multiple_of(align_of::<ddi::KEVENT>()) {
        return false;
    }
    // SAFETY: caller contract: readable; no one writes event state without the lock we hold.
    let h = unsafe { &*header(event) };
    let list_head = event + core::mem::offset_of!(Header, flink);
    h.magic == MAGIC
        && (h.kind == NOTIFICATION || h.kind == SYNCHRONIZATION)
        && h.flink == list_head
        && h.blink == list_head
}

/// Bugchecks unless `event` is an initialised event.
///
/// # Safety
/// As [`is_event`].
unsafe fn check(event: usize, routine: &str) {
    // SAFETY: forwarded.
    if !unsafe { is_event(event) } {
        bugcheck(
            BugCheck::InvalidObject,
            routine,
            format_args!(
                "{event:#x} is not an initialised KEVENT (null, never passed to KeInitializeEvent, or moved after it)"
            ),
        );
    }
}

/// Whether `event` is an initialised event (for validating a worker's start context).
///
/// # Safety
/// `event` must be null or point to 24 readable bytes.
pub(crate) unsafe fn is_initialized(event: ddi::PKEVENT) -> bool {
    let _d = dispatcher();
    // SAFETY: forwarded; the lock is held.
    unsafe { is_event(event as usize) }
}

/// Consumes `event`'s signal if it is a synchronization event.
///
/// # Safety
/// An initialised event; the dispatcher lock held.
unsafe fn consume(event: usize) {
    // SAFETY: caller contract.
    let h = unsafe { &mut *header(event) };
    if h.kind == SYNCHRONIZATION {
        h.signal_state = 0;
    }
}

/// The wait status if the wait on `objects` is satisfied now (consuming what it takes).
///
/// # Safety
/// Initialised events; the dispatcher lock held.
unsafe fn try_satisfy(objects: &[usize], wait_all: bool) -> Option<ddi::NTSTATUS> {
    // SAFETY: caller contract.
    let signalled = |event: usize| unsafe { (*header(event)).signal_state } != 0;
    if wait_all {
        if objects.iter().all(|&o| signalled(o)) {
            for &o in objects {
                // SAFETY: caller contract.
                unsafe { consume(o) };
            }
            return Some(ddi::STATUS_WAIT_0);
        }
        None
    } else {
        let index = objects.iter().position(|&o| signalled(o))?;
        // SAFETY: caller contract.
        unsafe { consume(objects[index]) };
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // index < 64
        Some(ddi::STATUS_WAIT_0 + index as i32)
    }
}

/// Satisfies every waiter that can be, in FIFO order, after an event became signalled.
fn satisfy_waiters(d: &mut Dispatcher) {
    let mut any = false;
    for waiter in d.waiters.iter_mut().filter(|w| w.result.is_none()) {
        // SAFETY: a waiter's objects were checked when it started waiting and must stay valid
        // while it waits (C contract); the lock is held.
        if let Some(status) = unsafe { try_satisfy(&waiter.objects, waiter.wait_all) } {
            waiter.result = Some(status);
            any = true;
        }
    }
    if any {
        SATISFIED.notify_all();
    }
}

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const EPOCH_1601_TO_1970: u64 = 116_444_736_000_000_000;

/// The current system time in the kernel's format (100 ns since 1601-01-01 UTC).
pub(crate) fn system_time() -> i64 {
    let since_1970 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let units = u64::try_from(since_1970.as_nanos() / 100).unwrap_or(u64::MAX);
    i64::try_from(units.saturating_add(EPOCH_1601_TO_1970)).unwrap_or(i64::MAX)
}

fn units_to_duration(units: u64) -> Duration {
    Duration::from_nanos(units.saturating_mul(100))
}

/// The deadline of a wait with kernel timeout `timeout` (100 ns units; negative relative,
/// positive absolute system time, 0 = poll); `None` for a deadline too far to represent
/// (effectively infinite).
pub(crate) fn deadline(timeout: i64, now: Instant) -> Option<Instant> {
    let wait = match timeout {
        0 => Duration::ZERO,
        t if t < 0 => units_to_duration(t.unsigned_abs()),
        t => units_to_duration(u64::try_from(t.saturating_sub(system_time())).unwrap_or(0)),
    };
    now.checked_add(wait)
}

/// Waits on `objects` (initialised events) as `KeWaitForMultipleObjects` does; `timeout` in
/// 100 ns units (`None`: infinite). Returns `STATUS_WAIT_0 + i` or `STATUS_TIMEOUT`.
///
/// # Safety
/// Every object must be null or point to a readable `KEVENT` that stays valid during the wait.
pub(crate) unsafe fn wait(
    objects: &[usize],
    wait_all: bool,
    timeout: Option<i64>,
    routine: &str,
) -> ddi::NTSTATUS {
    let start = Instant::now();
    let deadline = timeout.map(|t| deadline(t, start));
    let mut d = dispatcher();
    for &object in objects {
        // SAFETY: caller contract; the lock is held.
        unsafe { check(object, routine) };
    }
    // SAFETY: checked above; the lock is held.
    if let Some(status) = unsafe { try_satisfy(objects, wait_all) } {
        return status;
    }
    if let Some(Some(deadline)) = deadline
        && deadline <= start
    {
        return ddi::STATUS_TIMEOUT;
    }
    let id = d.next_id;
    d.next_id += 1;
    d.waiters.push(Waiter {
        id,
        objects: objects.to_vec(),
        wait_all,
        result: None,
    });
    loop {
        let index = d
            .waiters
            .iter()
            .position(|w| w.id == id)
            .unwrap_or_else(|| unreachable!("a waiter is only removed by itself"));
        if let Some(status) = d.waiters[index].result {
            d.waiters.remove(index);
            return status;
        }
        d = match deadline {
            Some(Some(deadline)) => {
                let now = Instant::now();
                if now >= deadline {
                    d.waiters.remove(index);
                    return ddi::STATUS_TIMEOUT;
                }
                SATISFIED
                    .wait_timeout(d, deadline - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0
            }
            _ => SATISFIED
                .wait(d)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        };
    }
}

/// `VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State)`.
///
/// Bugchecks for a null or misaligned event, an unknown `Type`, or an event some thread is
/// waiting on (re-initialising it would corrupt the wait).
///
/// # Safety
/// `Event` must point to writable `KEVENT` storage that does not move while in use.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeInitializeEvent(
    Event: ddi::PKEVENT,
    Type: ddi::EVENT_TYPE,
    State: ddi::BOOLEAN,
) {
    const NAME: &str = "KeInitializeEvent";
    let event = Event as usize;
    if event == 0 || !event.is_multiple_of(align_of::<ddi::KEVENT>()) {
        bugcheck(
            BugCheck::InvalidObject,
            NAME,
            format_args!("bad event address {Event:p}"),
        );
    }
    let kind = match Type {
        ddi::NotificationEvent => NOTIFICATION,
        ddi::SynchronizationEvent => SYNCHRONIZATION,
        other => bugcheck(
            BugCheck::InvalidObject,
            NAME,
            format_args!("unknown EVENT_TYPE {other}"),
        ),
    };
    let d = dispatcher();
    if d.waiters
        .iter()
        .any(|w| w.result.is_none() && w.objects.contains(&event))
    {
        drop(d);
        bugcheck(
            BugCheck::InvalidObject,
            NAME,
            format_args!("{Event:p} is being waited on"),
        );
    }
    let list_head = event + core::mem::offset_of!(Header, flink);
    // SAFETY: caller contract: writable KEVENT storage; the lock is held.
    unsafe {
        header(event).write(Header {
            kind,
            magic: MAGIC,
            signal_state: i32::from(State != 0),
            flink: list_head,
            blink: list_head,
        });
    }
}

/// `LONG KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait)`: signals the event,
/// satisfies the waiters it can, returns the previous signal state. `Increment` and `Wait`
/// change nothing here.
///
/// Bugchecks for an event that is not initialised.
///
/// # Safety
/// `Event` must be null or point to a readable, writable `KEVENT`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeSetEvent(
    Event: ddi::PKEVENT,
    Increment: ddi::KPRIORITY,
    Wait: ddi::BOOLEAN,
) -> ddi::LONG {
    super::irql::require(super::irql::DISPATCH, "KeSetEvent");
    let _ = (Increment, Wait);
    let mut d = dispatcher();
    // SAFETY: caller contract; the lock is held.
    unsafe { check(Event as usize, "KeSetEvent") };
    // SAFETY: checked; the lock is held.
    let previous = unsafe {
        let h = &mut *header(Event as usize);
        let previous = h.signal_state;
        h.signal_state = 1;
        previous
    };
    satisfy_waiters(&mut d);
    previous
}

/// `VOID KeClearEvent(PRKEVENT Event)`: sets the event to not signalled.
///
/// Bugchecks for an event that is not initialised.
///
/// # Safety
/// As [`KeSetEvent`].
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeClearEvent(Event: ddi::PKEVENT) {
    super::irql::require(super::irql::DISPATCH, "KeClearEvent");
    // SAFETY: forwarded.
    let _ = unsafe { reset(Event, "KeClearEvent") };
}

/// `LONG KeResetEvent(PRKEVENT Event)`: sets the event to not signalled and returns the
/// previous signal state.
///
/// Bugchecks for an event that is not initialised.
///
/// # Safety
/// As [`KeSetEvent`].
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeResetEvent(Event: ddi::PKEVENT) -> ddi::LONG {
    super::irql::require(super::irql::DISPATCH, "KeResetEvent");
    // SAFETY: forwarded.
    unsafe { reset(Event, "KeResetEvent") }
}

/// Sets `event` to not signalled and returns its previous signal state: `KeClearEvent` and
/// `KeResetEvent` (`routine` names the caller in a bugcheck).
///
/// # Safety
/// As [`KeSetEvent`].
unsafe fn reset(event: ddi::PKEVENT, routine: &str) -> ddi::LONG {
    let _d = dispatcher();
    // SAFETY: caller contract; the lock is held.
    unsafe { check(event as usize, routine) };
    // SAFETY: checked; the lock is held.
    unsafe {
        let h = &mut *header(event as usize);
        std::mem::replace(&mut h.signal_state, 0)
    }
}

/// `LONG KeReadStateEvent(PRKEVENT Event)`: the signal state (nonzero when signalled).
///
/// Bugchecks for an event that is not initialised.
///
/// # Safety
/// `Event` must be null or point to a readable `KEVENT`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeReadStateEvent(Event: ddi::PKEVENT) -> ddi::LONG {
    super::irql::require(super::irql::DISPATCH, "KeReadStateEvent");
    let _d = dispatcher();
    // SAFETY: caller contract; the lock is held.
    unsafe { check(Event as usize, "KeReadStateEvent") };
    // SAFETY: checked; the lock is held.
    unsafe { (*header(Event as usize)).signal_state }
}

/// `NTSTATUS KeWaitForMultipleObjects(ULONG Count, PVOID Object[], WAIT_TYPE WaitType,
/// KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER
/// Timeout, PKWAIT_BLOCK WaitBlockArray)` on events.
///
/// Returns `STATUS_WAIT_0 + i` (`WaitAny`: object `i` satisfied the wait), `STATUS_WAIT_0`
/// (`WaitAll`), or `STATUS_TIMEOUT`. `Timeout` null waits forever; `*Timeout` is in 100 ns
/// units, negative relative, positive an absolute system time, 0 a poll. `WaitReason` is not
/// checked; `Alertable` is accepted but this host delivers no alerts or APCs, so
/// `STATUS_ALERTED` and `STATUS_USER_APC` never occur. The wait-block array is not written.
///
/// Bugchecks as the kernel does: `MAXIMUM_WAIT_OBJECTS_EXCEEDED` for `Count` above
/// `MAXIMUM_WAIT_OBJECTS` (64), or above `THREAD_WAIT_OBJECTS` (3) with a null
/// `WaitBlockArray`; and (an invalid-object bugcheck) for a `Count` of 0, a null `Object`, an
/// unknown `WaitType` or `WaitMode`, or an object that is not an initialised event.
///
/// # Safety
/// `Object` must hold `Count` pointers to `KEVENT`s that stay valid during the wait;
/// `Timeout` null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeWaitForMultipleObjects(
    Count: ddi::ULONG,
    Object: *mut ddi::PVOID,
    WaitType: ddi::WAIT_TYPE,
    WaitReason: ddi::KWAIT_REASON,
    WaitMode: ddi::KPROCESSOR_MODE,
    Alertable: ddi::BOOLEAN,
    Timeout: *mut ddi::LARGE_INTEGER,
    WaitBlockArray: ddi::PKWAIT_BLOCK,
) -> ddi::NTSTATUS {
    const NAME: &str = "KeWaitForMultipleObjects";
    let _ = (WaitReason, Alertable);
    if Count > ddi::MAXIMUM_WAIT_OBJECTS {
        bugcheck(
            BugCheck::MaximumWaitObjectsExceeded,
            NAME,
            format_args!(
                "Count {Count} > MAXIMUM_WAIT_OBJECTS ({})",
                ddi::MAXIMUM_WAIT_OBJECTS
            ),
        );
    }
    if Count > ddi::THREAD_WAIT_OBJECTS && WaitBlockArray.is_null() {
        bugcheck(
            BugCheck::MaximumWaitObjectsExceeded,
            NAME,
            format_args!(
                "Count {Count} > THREAD_WAIT_OBJECTS ({}) without a WaitBlockArray",
                ddi::THREAD_WAIT_OBJECTS
            ),
        );
    }
    if Count == 0 || Object.is_null() {
        bugcheck(
            BugCheck::InvalidObject,
            NAME,
            format_args!("no objects (Count {Count}, Object {Object:p})"),
        );
    }
    let wait_all = match WaitType {
        ddi::WaitAll => true,
        ddi::WaitAny => false,
        other => bugcheck(
            BugCheck::InvalidObject,
            NAME,
            format_args!("unknown WAIT_TYPE {other}"),
        ),
    };
    if WaitMode != ddi::KernelMode && WaitMode != ddi::UserMode {
        bugcheck(
            BugCheck::InvalidObject,
            NAME,
            format_args!("unknown KPROCESSOR_MODE {WaitMode}"),
        );
    }
    // SAFETY: caller contract: `Object` holds `Count` pointers.
    let objects: Vec<usize> = unsafe { std::slice::from_raw_parts(Object, Count as usize) }
        .iter()
        .map(|&o| o as usize)
        .collect();
    // SAFETY: caller contract: null or readable.
    let timeout = unsafe { Timeout.as_ref() }.map(|t| t.quad());
    // A zero timeout (a poll): <= DISPATCH_LEVEL; otherwise <= APC_LEVEL.
    let max = if timeout == Some(0) {
        super::irql::DISPATCH
    } else {
        super::irql::APC
    };
    super::irql::require(max, NAME);
    // SAFETY: caller contract: the objects are KEVENTs valid during the wait.
    unsafe { wait(&objects, wait_all, timeout, NAME) }
}

// Every export has exactly the type of its prototype ([`crate::ddi`]).
const _: ddi::PFN_KeInitializeEvent = KeInitializeEvent;
const _: ddi::PFN_KeSetEvent = KeSetEvent;
const _: ddi::PFN_KeClearEvent = KeClearEvent;
const _: ddi::PFN_KeResetEvent = KeResetEvent;
const _: ddi::PFN_KeReadStateEvent = KeReadStateEvent;
const _: ddi::PFN_KeWaitForMultipleObjects = KeWaitForMultipleObjects;
