//! System threads and their handles: `PsCreateSystemThread`, `ZwWaitForSingleObject`, `ZwClose`.
//!
//! A system thread is a real `std` thread. Its handle is an entry in a process-wide handle
//! table; closing the handle does not stop the thread (as in the kernel), and the thread
//! object lives on until the thread has ended. Tests wait for a thread with
//! `control::ThreadControl`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::ddi;

use super::{BugCheck, CallConv, STATUS_INVALID_HANDLE, bugcheck, faults, lock};

/// `NtCurrentProcess()`: the pseudo-handle of the current process.
const CURRENT_PROCESS: usize = usize::MAX;
/// Kernel handles have the top bit set (as on x64 Windows).
const KERNEL_HANDLE_BIT: usize = 0xFFFF_FFFF_8000_0000;

/// A thread object: whether its thread has ended.
#[derive(Debug)]
pub(crate) struct ThreadObject {
    id: u64,
    ended: Mutex<bool>,
    ended_changed: Condvar,
}

impl ThreadObject {
    /// The thread id (`CLIENT_ID::UniqueThread`).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether the thread has ended.
    pub(crate) fn has_ended(&self) -> bool {
        *lock(&self.ended)
    }

    /// Waits at most `timeout` for the thread to end; whether it has.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` (`None`: forever) for the thread to end; whether it has.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut ended = lock(&self.ended);
        while !*ended {
            ended = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.ended_changed
                        .wait_timeout(ended, deadline - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
                None => self
                    .ended_changed
                    .wait(ended)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
        true
    }

    fn mark_ended(&self) {
        *lock(&self.ended) = true;
        self.ended_changed.notify_all();
    }
}

#[derive(Default)]
struct HandleTable {
    next: usize,
    /// Open handles: the thread object, and the driver the creating thread ran for
    /// ([`super::context`], 0 for none).
    open: HashMap<usize, (Arc<ThreadObject>, usize)>,
}

static HANDLES: LazyLock<Mutex<HandleTable>> = LazyLock::new(Mutex::default);
/// Running system threads per driver they were started for ([`super::context`]).
static LIVE: LazyLock<Mutex<HashMap<usize, usize>>> = LazyLock::new(Mutex::default);

/// System threads started for `driver` (directly or by threads started for it) still running.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the WDM model
pub(crate) fn live_threads_of(driver: usize) -> usize {
    lock(&LIVE).get(&driver).copied().unwrap_or(0)
}

/// Handles opened for `driver` (by threads running for it) and not closed.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the WDM model
pub(crate) fn open_handles_of(driver: usize) -> usize {
    lock(&HANDLES)
        .open
        .values()
        .filter(|(_, owner)| *owner == driver)
        .count()
}

/// System threads of any driver still running in this process.
pub(crate) fn live_threads_total() -> usize {
    lock(&LIVE).values().sum()
}

/// Counts a running thread of a driver; uncounts it when dropped at the thread's end.
struct Running(usize);

impl Running {
    fn start(driver: usize) -> Self {
        *lock(&LIVE).entry(driver).or_default() += 1;
        Self(driver)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut live = lock(&LIVE);
        if let Some(count) = live.get_mut(&self.0) {
            *count -= 1;
            if *count == 0 {
                live.remove(&self.0);
            }
        }
    }
}
static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(0x1000);

/// The thread object behind an open handle.
pub(crate) fn object(handle: ddi::HANDLE) -> Option<Arc<ThreadObject>> {
    lock(&HANDLES)
        .open
        .get(&(handle as usize))
        .map(|(object, _)| object.clone())
}

/// Marks the thread object ended when the thread's body returns (or unwinds).
struct EndOnDrop(Arc<ThreadObject>);

std::thread_local! {
    /// This system thread's end: uncounted, then marked ended, when thread-locals are
    /// destroyed (see `create`).
    static END_OF_THREAD: std::cell::RefCell<Option<(Running, EndOnDrop)>> =
        const { std::cell::RefCell::new(None) };
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.mark_ended();
    }
}

/// Creates a system thread running `body`: the common part of `PsCreateSystemThread` and
/// `IoDriverProxyCreateHotSwappableWorkerThread`. Validates the handle-related arguments,
/// applies this thread's thread-creation fault, starts the thread, writes the handle and
/// (if asked) the client id.
///
/// # Safety
/// `handle_out` null or writable; `attributes` null or a readable `OBJECT_ATTRIBUTES`;
/// `client_id` null or writable.
pub(crate) unsafe fn create(
    handle_out: ddi::PHANDLE,
    attributes: ddi::POBJECT_ATTRIBUTES,
    process: ddi::HANDLE,
    client_id: ddi::PCLIENT_ID,
    body: Box<dyn FnOnce() + Send>,
) -> ddi::NTSTATUS {
    if handle_out.is_null() {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    // SAFETY: caller contract: null or readable.
    let attributes = unsafe { attributes.as_ref() };
    if let Some(attributes) = attributes
        && attributes.Length as usize != size_of::<ddi::OBJECT_ATTRIBUTES>()
    {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    if !process.is_null() && process as usize != CURRENT_PROCESS {
        return STATUS_INVALID_HANDLE;
    }
    if faults::take(&faults::THREAD) {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    let object = Arc::new(ThreadObject {
        id: NEXT_THREAD_ID.fetch_add(4, Ordering::Relaxed),
        ended: Mutex::new(false),
        ended_changed: Condvar::new(),
    });
    let guard = EndOnDrop(object.clone());
    let driver = super::context::current();
    let running = Running::start(driver);
    let spawned = std::thread::Builder::new()
        .name(format!("system thread {:#x}", object.id))
        .spawn(move || {
            // The thread is marked ended (and uncounted) by a thread-local destructor registered
            // before the body runs: thread-local destructors run in reverse order of
            // registration (glibc's and Rust's own lists both do), so this one runs after every
            // destructor of a thread-local the body registered. A waiter that saw the thread end
            // knows that no code of it runs any more, thread-local destructors included (driver
            // code may keep a `WorkerRef` in one: its storage is freed once the waiter returns).
            END_OF_THREAD.with(|end| {
                *end.borrow_mut() = Some((running, guard));
            });
            let _driver = super::context::enter(driver);
            body();
        });
    if spawned.is_err() {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    let kernel = attributes.is_some_and(|a| a.Attributes & ddi::OBJ_KERNEL_HANDLE != 0);
    let handle = {
        let mut table = lock(&HANDLES);
        table.next += 1;
        let value = table.next << 2 | if kernel { KERNEL_HANDLE_BIT } else { 0 };
        table.open.insert(value, (object.clone(), driver));
        value
    };
    // SAFETY: caller contract: writable (checked non-null).
    unsafe { handle_out.write(handle as ddi::HANDLE) };
    // SAFETY: caller contract: null or writable.
    if let Some(client_id) = unsafe { client_id.as_mut() } {
        client_id.UniqueProcess = std::process::id() as usize as ddi::HANDLE;
        client_id.UniqueThread = usize::try_from(object.id).unwrap_or(usize::MAX) as ddi::HANDLE;
    }
    ddi::STATUS_SUCCESS
}

super::callback_entry! {
    /// `NTSTATUS PsCreateSystemThread(PHANDLE ThreadHandle, ULONG DesiredAccess, POBJECT_ATTRIBUTES
    /// ObjectAttributes, HANDLE ProcessHandle, PCLIENT_ID ClientId, PKSTART_ROUTINE StartRoutine,
    /// PVOID StartContext)`: a real thread running `StartRoutine(StartContext)` as `extern
    /// "system"` code.
    ///
    /// Returns `STATUS_SUCCESS`; `STATUS_INVALID_PARAMETER` for a null `StartRoutine`, a null
    /// `ThreadHandle` or an `OBJECT_ATTRIBUTES` whose `Length` is not `0x30`;
    /// `STATUS_INVALID_HANDLE` for a `ProcessHandle` other than NULL or `NtCurrentProcess()`
    /// (this host has one process); `STATUS_INSUFFICIENT_RESOURCES` when the thread cannot be
    /// started or a fault of the calling thread says so. `DesiredAccess` is not checked.
    ///
    /// # Safety
    /// As in C: the out-pointers are null or writable; `ObjectAttributes` null or readable;
    /// `StartRoutine` may be called with `StartContext` on another thread.
    #[unsafe(no_mangle)]
    extern "system" fn PsCreateSystemThread(
        ThreadHandle: ddi::PHANDLE,
        DesiredAccess: ddi::ACCESS_MASK,
        ObjectAttributes: ddi::POBJECT_ATTRIBUTES,
        ProcessHandle: ddi::HANDLE,
        ClientId: ddi::PCLIENT_ID,
        StartRoutine: ddi::PKSTART_ROUTINE,
        StartContext: ddi::PVOID,
    ) -> ddi::NTSTATUS = create_system_thread, CallConv::System;
}

/// `PsCreateSystemThread` for either convention: the thread calls `StartRoutine` (a
/// `KSTART_ROUTINE` as the entry point's convention types it) with `conv`. A null
/// `StartRoutine` gives `STATUS_INVALID_PARAMETER`.
///
/// # Safety
/// As [`PsCreateSystemThread`]; `R` is a nullable function-pointer type, and `StartRoutine`
/// NULL or a `KSTART_ROUTINE` in convention `conv`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn create_system_thread<R: Copy>(
    ThreadHandle: ddi::PHANDLE,
    DesiredAccess: ddi::ACCESS_MASK,
    ObjectAttributes: ddi::POBJECT_ATTRIBUTES,
    ProcessHandle: ddi::HANDLE,
    ClientId: ddi::PCLIENT_ID,
    StartRoutine: R,
    StartContext: ddi::PVOID,
    conv: CallConv,
) -> ddi::NTSTATUS {
    super::irql::require(super::irql::PASSIVE, "PsCreateSystemThread");
    let _ = DesiredAccess;
    // SAFETY: caller contract: a nullable function pointer.
    let start_routine = unsafe { super::code_address(StartRoutine) };
    if start_routine == 0 {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    let context = super::SendPtr(StartContext);
    let body = Box::new(move || {
        let context = context;
        match conv {
            CallConv::System => {
                // SAFETY: caller contract: a KSTART_ROUTINE in this convention.
                let f =
                    unsafe { core::mem::transmute::<usize, ddi::KSTART_ROUTINE>(start_routine) };
                // SAFETY: the driver's start routine with the context it gave (C contract).
                unsafe { f(context.0) };
            }
            #[cfg(target_arch = "x86_64")]
            CallConv::Win64 => {
                // SAFETY: caller contract: a KSTART_ROUTINE in this convention.
                let f = unsafe {
                    core::mem::transmute::<usize, unsafe extern "win64" fn(ddi::PVOID)>(
                        start_routine,
                    )
                };
                // SAFETY: the driver's start routine with the context it gave (C contract).
                unsafe { f(context.0) };
            }
        }
    });
    // SAFETY: forwarded caller contract.
    unsafe {
        create(
            ThreadHandle,
            ObjectAttributes,
            ProcessHandle,
            ClientId,
            body,
        )
    }
}

/// `NTSTATUS ZwClose(HANDLE Handle)`: closes a thread handle (the thread keeps running).
///
/// Bugchecks (`INVALID_KERNEL_HANDLE`) for a handle that is not open, as the kernel does for a
/// kernel-mode caller: a double close or a stray value is caught at once.
///
/// # Safety
/// None beyond the C contract.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwClose(Handle: ddi::HANDLE) -> ddi::NTSTATUS {
    super::irql::require(super::irql::PASSIVE, "ZwClose");
    if lock(&HANDLES).open.remove(&(Handle as usize)).is_none() {
        bugcheck(
            BugCheck::InvalidKernelHandle,
            "ZwClose",
            format_args!("{Handle:p} is not an open handle (closed twice, or never opened)"),
        );
    }
    ddi::STATUS_SUCCESS
}

/// `NTSTATUS ZwWaitForSingleObject(HANDLE Handle, BOOLEAN Alertable, PLARGE_INTEGER Timeout)`
/// on a thread handle: waits for the thread to end.
///
/// Returns `STATUS_WAIT_0` (= `STATUS_SUCCESS`) once the thread has ended (at once if it
/// already has), `STATUS_TIMEOUT` when `*Timeout` passes first (100 ns units: negative
/// relative, positive absolute system time, 0 a poll; a null `Timeout` waits forever), and
/// `STATUS_INVALID_HANDLE` for a handle that is not an open thread handle (the only waitable
/// handles of this model: event handles do not exist here, drivers wait on `KEVENT`s with
/// `KeWaitForMultipleObjects`). `Alertable` is accepted; no alerts or APCs are delivered.
///
/// # Safety
/// `Timeout` null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ZwWaitForSingleObject(
    Handle: ddi::HANDLE,
    Alertable: ddi::BOOLEAN,
    Timeout: *mut ddi::LARGE_INTEGER,
) -> ddi::NTSTATUS {
    super::irql::require(super::irql::PASSIVE, "ZwWaitForSingleObject");
    let _ = Alertable;
    let start = Instant::now();
    let Some(thread) = object(Handle) else {
        return STATUS_INVALID_HANDLE;
    };
    // SAFETY: caller contract: null or readable.
    let deadline = unsafe { Timeout.as_ref() }.map(|t| super::events::deadline(t.quad(), start));
    // No timeout, or one too far to represent: wait forever.
    if thread.wait_until(deadline.flatten()) {
        ddi::STATUS_WAIT_0
    } else {
        ddi::STATUS_TIMEOUT
    }
}

// Every export has exactly the type of its prototype ([`crate::ddi`]).
const _: ddi::PFN_PsCreateSystemThread = PsCreateSystemThread;
const _: ddi::PFN_ZwClose = ZwClose;
const _: ddi::PFN_ZwWaitForSingleObject = ZwWaitForSingleObject;
