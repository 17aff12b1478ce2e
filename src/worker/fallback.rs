//! The fallback worker thread: where hot-swap is unavailable, a plain system thread
//! (`PsCreateSystemThread`) runs the kernel's loop in this crate's code: wait as the start
//! context says (`KeWaitForMultipleObjects`), call the routine, repeat while it returns
//! `true`. Without hot-swap the image is never swapped out, so running the loop in the image
//! is sound; its state still lives in storage the driver object owns, like the context.

use core::ptr::NonNull;

use super::{StartContext, WorkerContext, WorkerRoutine, allocate, kernel_handle_attributes};
use crate::resolve::{FallbackThreadRoutines, StorageRoutines};
use crate::{NtStatus, WorkerError, sys};

/// Everything the thread needs, in one block the driver object owns.
#[repr(C)]
struct FallbackThread<T: 'static, const EVENTS: usize> {
    start: StartContext,
    routine: WorkerRoutine<T, EVENTS>,
    context: &'static WorkerContext<T, EVENTS>,
    wait: sys::PFN_KeWaitForMultipleObjects,
    wait_blocks: [u64; sys::KWAIT_BLOCK_SIZE / 8 * sys::MAXIMUM_WAIT_OBJECTS as usize],
}

/// Starts a plain system thread running [`thread_main`] for `context`.
pub(super) fn spawn<T: Sync + 'static, const EVENTS: usize>(
    storage: StorageRoutines,
    driver: sys::PDRIVER_OBJECT,
    key: u64,
    threads: FallbackThreadRoutines,
    routine: WorkerRoutine<T, EVENTS>,
    context: &'static WorkerContext<T, EVENTS>,
    start: StartContext,
) -> Result<sys::HANDLE, WorkerError> {
    let block: NonNull<FallbackThread<T, EVENTS>> = allocate(
        storage,
        driver,
        key,
        core::mem::size_of::<FallbackThread<T, EVENTS>>(),
    )?
    .cast();
    // SAFETY: a fresh, zero-filled, 16-byte aligned block of the right size that nothing else
    // references, owned by the driver object.
    unsafe {
        block.write(FallbackThread {
            start,
            routine,
            context,
            wait: threads.wait_for_multiple_objects,
            wait_blocks: [0; _],
        });
    }
    let mut handle = core::ptr::null_mut();
    let mut attributes = kernel_handle_attributes();
    // SAFETY: resolved routine; the block is handed to the new thread, which alone uses it
    // from here on (if creation fails, nothing does).
    let status = NtStatus(unsafe {
        (threads.create_system_thread)(
            &raw mut handle,
            sys::THREAD_ALL_ACCESS,
            &raw mut attributes,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            thread_main::<T, EVENTS>,
            block.as_ptr().cast(),
        )
    });
    if status.is_success() {
        Ok(handle)
    } else {
        Err(WorkerError::from_status(status))
    }
}

/// The fallback thread: wait as the start context says, call the routine, repeat while it
/// returns `true`.
///
/// # Safety
/// `block` is a `FallbackThread<T, EVENTS>` that this thread alone uses (see `spawn`).
unsafe extern "system" fn thread_main<T: Sync + 'static, const EVENTS: usize>(block: sys::PVOID) {
    // SAFETY: this thread alone uses the block, which lives as long as the driver object.
    let this = unsafe { &mut *block.cast::<FallbackThread<T, EVENTS>>() };
    let header = &this.start.header;
    let (count, wait_type, wait_reason, wait_mode, alertable) = (
        header.EventCount,
        header.WaitType,
        header.WaitReason,
        header.WaitMode,
        header.Altertable,
    );
    let timeout = (header.HasTimeout != 0).then_some(header.Timeout);
    let wait_blocks = if count > sys::THREAD_WAIT_OBJECTS {
        this.wait_blocks.as_mut_ptr().cast()
    } else {
        core::ptr::null_mut()
    };
    loop {
        let mut timeout = timeout;
        let timeout_ptr = timeout
            .as_mut()
            .map_or(core::ptr::null_mut(), |timeout| &raw mut *timeout);
        // SAFETY: the events are initialised KEVENTs in the context's storage, which lives as
        // long as the driver object; the wait-block array is large enough for `count`.
        let status = NtStatus(unsafe {
            (this.wait)(
                count,
                this.start.events.as_mut_ptr().cast(),
                wait_type,
                wait_reason,
                wait_mode,
                alertable,
                timeout_ptr,
                wait_blocks,
            )
        });
        if !(this.routine)(this.context, status) {
            break;
        }
    }
}
