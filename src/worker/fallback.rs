//! The fallback worker thread: where hot-swap is unavailable, a plain system thread
//! (`PsCreateSystemThread`) runs the kernel's loop in this crate's code: wait as the start
//! context says (`KeWaitForMultipleObjects`), call the routine, repeat while it returns
//! `true`. Without hot-swap the image is never swapped out, so running the loop in the image
//! is sound. The loop's own state (the start context, the wait blocks) is a pool block the
//! thread frees when it ends.

use core::ptr::NonNull;

use super::{
    POOL_TAG, StartContext, WorkerContext, WorkerRef, WorkerRoutine, kernel_handle_attributes,
};
use crate::resolve::{FallbackThreadRoutines, PoolRoutines};
use crate::{NtStatus, WorkerError, sys};

/// Everything the loop needs, in one block that the thread owns.
#[repr(C)]
struct FallbackThread<T: 'static, const EVENTS: usize> {
    start: StartContext,
    routine: WorkerRoutine<T, EVENTS>,
    context: NonNull<WorkerContext<T, EVENTS>>,
    wait: sys::PFN_KeWaitForMultipleObjects,
    pool: PoolRoutines,
    wait_blocks: [u64; sys::KWAIT_BLOCK_SIZE / 8 * sys::MAXIMUM_WAIT_OBJECTS as usize],
}

/// Starts a plain system thread running [`thread_main`] for `context`.
pub(super) fn spawn<T: Sync + 'static, const EVENTS: usize>(
    pool: PoolRoutines,
    threads: FallbackThreadRoutines,
    routine: WorkerRoutine<T, EVENTS>,
    context: NonNull<WorkerContext<T, EVENTS>>,
    start: StartContext,
) -> Result<sys::HANDLE, WorkerError> {
    let size = core::mem::size_of::<FallbackThread<T, EVENTS>>();
    // SAFETY: PASSIVE_LEVEL; freed by the thread when it ends, or below.
    let block = NonNull::new(unsafe { pool.allocate_zeroed(size, POOL_TAG) })
        .ok_or(WorkerError::InsufficientResources)?
        .cast::<FallbackThread<T, EVENTS>>();
    // SAFETY: a fresh, zeroed, 16-byte aligned block of the right size that nothing else
    // references.
    unsafe {
        block.write(FallbackThread {
            start,
            routine,
            context,
            wait: threads.wait_for_multiple_objects,
            pool,
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
        // SAFETY: no thread took the block.
        unsafe { pool.free(block.as_ptr().cast(), POOL_TAG) };
        Err(WorkerError::from_status(status))
    }
}

/// The fallback thread: wait as the start context says, call the routine, repeat while it
/// returns `true`; then free the loop's block.
///
/// # Safety
/// `block` is a `FallbackThread<T, EVENTS>` that this thread alone uses (see `spawn`); its
/// context outlives the thread (its `WorkerThread` frees it only after the thread ended).
unsafe extern "system" fn thread_main<T: Sync + 'static, const EVENTS: usize>(block: sys::PVOID) {
    let block = block.cast::<FallbackThread<T, EVENTS>>();
    {
        // SAFETY: this thread alone uses the block until it frees it below.
        let this = unsafe { &mut *block };
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
            // SAFETY: the events are initialised KEVENTs in the context's storage, which
            // outlives this thread; the wait-block array is large enough for `count`.
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
            // SAFETY: the context outlives this thread, on which the WorkerRef stays.
            let worker = unsafe { WorkerRef::new(this.context) };
            if !(this.routine)(worker, status) {
                break;
            }
        }
    }
    // SAFETY: the block is this thread's, no longer referenced (the borrow above ended).
    unsafe {
        let pool = (*block).pool;
        pool.free(block.cast(), POOL_TAG);
    }
}
