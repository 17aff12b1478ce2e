//! Hot-swappable worker threads: `IoDriverProxyCreateHotSwappableWorkerThread`.
//!
//! The start context is validated and copied; then a system thread (see [`super::threads`])
//! runs the kernel-owned loop: wait on the events as the context says, call the worker routine
//! *through its wrapper* with the wait status, and repeat while it returns `TRUE`. Between
//! two iterations no driver code is on the thread's stack, so a swap never waits for the
//! thread, and the iteration after a swap runs the new implementation.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::ddi;

use super::extension::{self, Extension};
use super::{CallConv, SendPtr, events};

/// The copied start context.
struct Start {
    /// The routine's wrapper, called with `conv`.
    routine: usize,
    conv: CallConv,
    context: SendPtr,
    wait_all: bool,
    timeout: Option<i64>,
    events: Vec<usize>,
}

/// Decrements the extension's worker count when the thread ends.
struct Alive(Arc<Extension>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.workers().fetch_sub(1, Ordering::SeqCst);
    }
}

/// Validates and copies the start context.
///
/// # Safety
/// `start` null or a readable start context followed by `EventCount` event pointers; the
/// events null or readable.
unsafe fn copy_start(
    extension: &Extension,
    start: ddi::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    conv: CallConv,
) -> Result<Start, ddi::NTSTATUS> {
    // SAFETY: caller contract: null or readable.
    let header = unsafe { start.as_ref() }.ok_or(ddi::STATUS_INVALID_PARAMETER)?;
    let routine = header.WorkerRoutine.ok_or(ddi::STATUS_INVALID_PARAMETER)?;
    let count = header.EventCount;
    if count == 0 || count > ddi::MAXIMUM_WAIT_OBJECTS {
        return Err(ddi::STATUS_INVALID_PARAMETER);
    }
    let wait_all = match header.WaitType {
        ddi::WaitAll => true,
        ddi::WaitAny => false,
        _ => return Err(ddi::STATUS_INVALID_PARAMETER),
    };
    if header.WaitMode != ddi::KernelMode && header.WaitMode != ddi::UserMode {
        return Err(ddi::STATUS_INVALID_PARAMETER);
    }
    // SAFETY: caller contract: `EventCount` pointers follow the header, at `Events`.
    let events: Vec<usize> = unsafe {
        std::slice::from_raw_parts(
            (&raw const (*start).Events).cast::<ddi::PKEVENT>(),
            count as usize,
        )
    }
    .iter()
    .map(|&e| e as usize)
    .collect();
    if !events.iter().all(|&e| {
        // SAFETY: caller contract: each event null or readable.
        unsafe { events::is_initialized(e as ddi::PKEVENT) }
    }) {
        return Err(ddi::STATUS_INVALID_PARAMETER);
    }
    if !extension.is_worker_routine(routine as usize) {
        return Err(ddi::STATUS_INVALID_PARAMETER);
    }
    Ok(Start {
        routine: routine as usize,
        conv,
        context: SendPtr(header.Context),
        wait_all,
        timeout: (header.HasTimeout != 0).then_some(header.Timeout.quad()),
        events,
    })
}

/// The thread's loop.
fn run(start: &Start) {
    loop {
        // SAFETY: the events were initialised when the thread was created and must stay valid
        // for its life (C contract).
        let status = unsafe {
            events::wait(
                &start.events,
                start.wait_all,
                start.timeout,
                "IoDriverProxyCreateHotSwappableWorkerThread (worker wait)",
            )
        };
        // SAFETY: `routine` is a wrapper of this extension's worker routine (checked at
        // creation), called with the documented signature, the convention the driver handed
        // it over with, and the driver's context.
        if unsafe { call_worker(start.routine, start.conv, start.context.0, status) } == ddi::FALSE
        {
            return;
        }
    }
}

/// Calls the worker routine (its wrapper, which forwards either convention untouched) at
/// `address` with the convention `conv`.
///
/// # Safety
/// `address` is a `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE` in the convention `conv`.
unsafe fn call_worker(
    address: usize,
    conv: CallConv,
    context: ddi::PVOID,
    status: ddi::NTSTATUS,
) -> ddi::BOOLEAN {
    match conv {
        CallConv::System => {
            // SAFETY: caller contract.
            let f = unsafe {
                core::mem::transmute::<usize, ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE>(address)
            };
            // SAFETY: caller contract.
            unsafe { f(context, status) }
        }
        #[cfg(target_arch = "x86_64")]
        CallConv::Win64 => {
            type Win64Worker = unsafe extern "win64" fn(ddi::PVOID, ddi::NTSTATUS) -> ddi::BOOLEAN;
            // SAFETY: caller contract.
            let f = unsafe { core::mem::transmute::<usize, Win64Worker>(address) };
            // SAFETY: caller contract.
            unsafe { f(context, status) }
        }
    }
}

/// `IoDriverProxyCreateHotSwappableWorkerThread` on a live extension. Checks, in order:
/// `STATUS_NOT_SUPPORTED` when DriverProxy is switched off system-wide; then
/// `STATUS_INVALID_PARAMETER` for a null `ThreadHandle` or start context, a null routine, an
/// `EventCount` of 0 or above 64, an unknown `WaitType`/`WaitMode`, an event that is null or
/// not initialised, or a routine that is not a published wrapper of this extension taking two
/// parameters; then `STATUS_INSUFFICIENT_RESOURCES` for the driver object's allocation fault;
/// then the checks of `PsCreateSystemThread` (`ObjectAttributes`, `ProcessHandle`, the
/// calling thread's thread-creation fault, a thread that cannot start).
///
/// # Safety
/// See the export.
pub(crate) unsafe fn create(
    extension: &Arc<Extension>,
    handle_out: ddi::PHANDLE,
    attributes: ddi::POBJECT_ATTRIBUTES,
    process: ddi::HANDLE,
    client_id: ddi::PCLIENT_ID,
    start: ddi::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    conv: CallConv,
) -> ddi::NTSTATUS {
    if !extension::system_available() {
        return ddi::STATUS_NOT_SUPPORTED;
    }
    if handle_out.is_null() {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    // SAFETY: forwarded caller contract.
    let start = match unsafe { copy_start(extension, start, conv) } {
        Ok(start) => start,
        Err(status) => return status,
    };
    if !extension::charge(extension.driver(), 1) {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    extension.workers().fetch_add(1, Ordering::SeqCst);
    let alive = Alive(extension.clone());
    let body = Box::new(move || {
        let _alive = alive;
        run(&start);
    });
    // SAFETY: forwarded caller contract.
    unsafe { super::threads::create(handle_out, attributes, process, client_id, body) }
}
