//! Hot-swappable worker threads (`IoDriverProxyCreateHotSwappableWorkerThread`).
//!
//! A thread that loops forever inside driver code keeps the old version's call count above
//! zero and blocks every swap. A hot-swappable worker thread moves the loop into the kernel:
//! the kernel waits on the thread's events and calls the worker routine *through its
//! wrapper* once per wake-up, so between iterations no driver code is on the thread's stack
//! and a swap takes effect at the next iteration. The routine returns `true` to wait again
//! and `false` to end the thread.
//!
//! # What this module guarantees
//!
//! * **The context has the routine's type.** The routine is a
//!   [`WorkerRoutine<T, EVENTS>`](WorkerRoutine) and the builder takes a `T`: the kernel
//!   passes the routine exactly the context it was started with.
//! * **Nothing the kernel holds goes away with an image.** The context, the events and the
//!   stop request live in storage this crate allocates (non-paged pool, tag `DPwk`), not in the
//!   image, so a swap that unmaps the old image leaves them in place. No event or context of
//!   the image itself (a `static`) is ever given to the kernel.
//! * **The storage outlives every use.** The routine sees it through a [`WorkerRef`], which
//!   stays on the worker thread; the [`WorkerThread`] that owns the thread frees it only after
//!   the thread has ended: [`WorkerThread::stop_and_join`] (and dropping it) asks the routine to
//!   end ([`Wake::Stop`]), waits for the thread, drops the context and frees the storage. To
//!   hand the thread on to the next image of the driver, store [`WorkerThread::into_raw`] where
//!   that image finds it (the device extension) and take it back with
//!   [`WorkerThread::from_raw`].
//!
//! Where hot-swap is unavailable, [`WorkerThreadBuilder::spawn`] starts a plain system thread
//! (`PsCreateSystemThread`) running the same loop in this crate's code
//! (`KeWaitForMultipleObjects`, then the routine), so drivers keep one code path.

mod context;
mod fallback;

use core::ffi::c_void;
use core::marker::PhantomData;
use core::mem::{ManuallyDrop, offset_of};
use core::ptr::NonNull;

pub(crate) use context::WorkerContext;
pub use context::{MAX_WORKER_EVENTS, Wake, WorkerRef, WorkerRoutine};

use crate::resolve::WorkerRoutines;
use crate::{EventKind, EventRef, HotSwap, NtStatus, Unavailable, WorkerError, Wrapped, sys};

/// How the thread's wait is satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitType {
    /// `WaitAny`: any one event; the routine gets `STATUS_WAIT_0 + index`.
    Any,
    /// `WaitAll`: every event at once; the routine gets `STATUS_WAIT_0`.
    All,
}

/// `KWAIT_REASON` of the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitReason(pub sys::KWAIT_REASON);

impl WaitReason {
    /// `Executive`: what drivers normally use.
    pub const EXECUTIVE: Self = Self(sys::Executive);
    /// `UserRequest`.
    pub const USER_REQUEST: Self = Self(sys::UserRequest);
}

/// `KPROCESSOR_MODE` of the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// `KernelMode`: the thread's stack stays resident.
    Kernel,
    /// `UserMode`.
    User,
}

/// A wait timeout in the kernel's 100 ns units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(i64);

impl Timeout {
    /// A relative timeout of `units` × 100 ns (stored negative, as the kernel wants).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn relative_100ns(units: u64) -> Self {
        let units = if units > i64::MAX as u64 {
            i64::MAX
        } else {
            units.cast_signed()
        };
        Self(-units)
    }

    /// A relative timeout in milliseconds.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn from_millis(milliseconds: u64) -> Self {
        Self::relative_100ns(milliseconds.saturating_mul(10_000))
    }

    /// An absolute system time (100 ns since 1601-01-01 UTC); must be positive.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn absolute(system_time: u64) -> Self {
        Self(if system_time > i64::MAX as u64 {
            i64::MAX
        } else {
            system_time.cast_signed()
        })
    }

    /// The raw `LARGE_INTEGER` value.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn raw(self) -> i64 {
        self.0
    }
}

/// The start context in the exact layout of
/// `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT`: the fixed header, then the event
/// pointers. Only the first `EventCount` entries are meaningful; the kernel copies
/// `0x30 + 8 * EventCount` bytes.
#[repr(C)]
pub(crate) struct StartContext {
    header: sys::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    events: [sys::PKEVENT; sys::MAXIMUM_WAIT_OBJECTS as usize],
}

const _: () = assert!(offset_of!(StartContext, events) == sys::WORKER_START_CONTEXT_EVENTS_OFFSET);

impl StartContext {
    /// The size the DDI gives for this context: `FIELD_OFFSET(…, Events) + EventCount * 8`.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        sys::worker_start_context_size(self.header.EventCount as usize)
    }

    fn as_raw(&mut self) -> sys::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
        (&raw mut *self).cast()
    }
}

/// The wait a worker thread performs before each call of its routine.
#[derive(Clone, Copy, Debug)]
struct WaitParameters {
    wait_type: WaitType,
    wait_reason: WaitReason,
    wait_mode: WaitMode,
    alertable: bool,
    timeout: Option<Timeout>,
}

/// Builds and starts a worker thread. Obtained from [`HotSwap::worker_thread`].
pub struct WorkerThreadBuilder<T: Sync + 'static, const EVENTS: usize> {
    hotswap: HotSwap,
    routine: Wrapped<WorkerRoutine<T, EVENTS>>,
    context: T,
    kinds: [EventKind; EVENTS],
    wait: WaitParameters,
}

impl<T: Sync + 'static, const EVENTS: usize> core::fmt::Debug for WorkerThreadBuilder<T, EVENTS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkerThreadBuilder")
            .field("routine", &self.routine)
            .field("kinds", &self.kinds)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl HotSwap {
    /// A builder for a worker thread that runs `routine` with `context`. `routine` must be a
    /// wrapper (or, in fallback, the endpoint itself) of a worker routine: obtain it with
    /// [`HotSwap::wrapper`] (or [`HotSwap::wrap`]). The context moves into storage this crate
    /// owns (not the image's), which the routine sees through a [`WorkerRef`]. Defaults:
    /// `WaitAny`, `Executive`, kernel mode, not alertable, no timeout, every event a
    /// synchronization event.
    ///
    /// The context must be the routine's (its type is part of [`WorkerRoutine`]):
    ///
    /// ```compile_fail,E0308
    /// use driver_proxy::{HotSwap, NtStatus, WorkerRef, WorkerRoutine, Wrapped};
    /// extern "system" fn counts(worker: WorkerRef<u64, 0>, _: NtStatus) -> bool {
    ///     *worker.get() < 10
    /// }
    /// fn start(hotswap: HotSwap, routine: Wrapped<WorkerRoutine<u64, 0>>) {
    ///     // error[E0308]: mismatched types: expected `u64`, found `&str`
    ///     let _ = hotswap.worker_thread(routine, "a string the routine would read as a u64");
    /// }
    /// ```
    ///
    /// and the events are the thread's own: there is no way to give the kernel an event of the
    /// image (a `static` would be unmapped by a swap while the kernel waits on it):
    ///
    /// ```compile_fail,E0599
    /// use driver_proxy::{Event, HotSwap, WorkerRoutine, Wrapped};
    /// static STOP: Event = Event::new();
    /// fn start(hotswap: HotSwap, routine: Wrapped<WorkerRoutine<(), 0>>) {
    ///     // error[E0599]: no method named `event` found for `WorkerThreadBuilder<(), 0>`
    ///     let _ = hotswap.worker_thread(routine, ()).event(&STOP).spawn();
    /// }
    /// ```
    ///
    /// IRQL: any.
    #[must_use]
    pub fn worker_thread<T: Sync + 'static, const EVENTS: usize>(
        &self,
        routine: Wrapped<WorkerRoutine<T, EVENTS>>,
        context: T,
    ) -> WorkerThreadBuilder<T, EVENTS> {
        WorkerThreadBuilder {
            hotswap: *self,
            routine,
            context,
            kinds: [EventKind::Synchronization; EVENTS],
            wait: WaitParameters {
                wait_type: WaitType::Any,
                wait_reason: WaitReason::EXECUTIVE,
                wait_mode: WaitMode::Kernel,
                alertable: false,
                timeout: None,
            },
        }
    }

    /// Whether worker threads can be started: `Err` names the kernel routine they need and
    /// this kernel lacks. Known from [`HotSwap::new`] on, so a driver can do without its
    /// worker before it starts one.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`Unavailable::ExportMissing`].
    pub fn worker_threads(&self) -> Result<(), Unavailable> {
        self.worker_support().map(drop)
    }
}

impl<T: Sync + 'static, const EVENTS: usize> WorkerThreadBuilder<T, EVENTS> {
    /// The kinds of the routine's events (index 0 to `EVENTS - 1`); none is signalled at
    /// the start.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn events(mut self, kinds: [EventKind; EVENTS]) -> Self {
        self.kinds = kinds;
        self
    }

    /// `WaitAny` or `WaitAll`.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn wait_type(mut self, wait_type: WaitType) -> Self {
        self.wait.wait_type = wait_type;
        self
    }

    /// The wait reason.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn wait_reason(mut self, reason: WaitReason) -> Self {
        self.wait.wait_reason = reason;
        self
    }

    /// The wait mode.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.wait.wait_mode = mode;
        self
    }

    /// Whether the wait is alertable (the routine may then see [`Wake::Alerted`] or
    /// [`Wake::UserApc`]).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn alertable(mut self, alertable: bool) -> Self {
        self.wait.alertable = alertable;
        self
    }

    /// A timeout for each wait; the routine then sees [`Wake::Timeout`] when it expires.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn timeout(mut self, timeout: Timeout) -> Self {
        self.wait.timeout = Some(timeout);
        self
    }

    /// Starts the thread: allocates its storage (pool the crate owns), moves the context in,
    /// initialises the events, and creates the thread (hot-swappable, or the fallback system
    /// thread).
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`WorkerError::Unavailable`] (a routine missing: see [`HotSwap::worker_threads`]);
    /// [`WorkerError::InsufficientResources`] (storage or thread);
    /// [`WorkerError::NotSupported`], [`WorkerError::InvalidParameter`] (the routine is not a
    /// wrapper of this extension) from the kernel. On error no thread runs, the context has
    /// been dropped and the storage freed.
    pub fn spawn(self) -> Result<WorkerThread<T, EVENTS>, WorkerError> {
        let () = WorkerContext::<T, EVENTS>::VALID;
        let Self {
            hotswap,
            routine,
            context: value,
            kinds,
            wait,
        } = self;
        let routines = hotswap.worker_support().map_err(WorkerError::Unavailable)?;
        let threads = match hotswap.extension_and_routines() {
            Some(_) => None,
            None => Some(
                hotswap
                    .fallback_thread_routines()
                    .map_err(WorkerError::Unavailable)?,
            ),
        };
        let size = core::mem::size_of::<WorkerContext<T, EVENTS>>();
        // SAFETY: PASSIVE_LEVEL; the block is freed by the WorkerThread that owns the thread,
        // or below if no thread starts.
        let block = NonNull::new(unsafe { routines.pool.allocate_zeroed(size, POOL_TAG) })
            .ok_or(WorkerError::InsufficientResources)?
            .cast::<WorkerContext<T, EVENTS>>();
        // SAFETY: a fresh, zeroed block of the context's size, 16-byte aligned (checked by
        // VALID): nothing else references it, and it never moves.
        let context = unsafe {
            block.write(WorkerContext::new(
                value,
                routines.events,
                wait.wait_type == WaitType::All,
                threads.is_none(),
            ));
            let context = block.as_ref();
            context.initialize_events(&kinds);
            context
        };
        let mut start = start_context(routine, &wait, context);
        let created = match (hotswap.extension_and_routines(), threads) {
            (Some((extension, proxy)), _) => {
                let mut handle = core::ptr::null_mut();
                let mut attributes = kernel_handle_attributes();
                // SAFETY: resolved routine; live extension; `start` is a complete start context
                // (header followed by its events) that the kernel copies; the events and the
                // context live in the block, which outlives the thread.
                let status = NtStatus(unsafe {
                    (proxy.create_worker_thread)(
                        extension,
                        &raw mut handle,
                        sys::THREAD_ALL_ACCESS,
                        &raw mut attributes,
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        start.as_raw(),
                    )
                });
                if status.is_success() {
                    Ok(handle)
                } else {
                    Err(WorkerError::from_status(status))
                }
            }
            (None, Some(threads)) => {
                fallback::spawn(routines.pool, threads, routine.get(), block, start)
            }
            (None, None) => Err(WorkerError::Unexpected(NtStatus::UNSUCCESSFUL)),
        };
        match created {
            Ok(handle) => {
                context.set_handle(handle);
                Ok(WorkerThread {
                    block,
                    routines,
                    _owns: PhantomData,
                })
            }
            Err(error) => {
                // SAFETY: no thread started, so nothing references the context (the reference
                // above is not used after this): dropped and freed once, here.
                unsafe {
                    WorkerContext::drop_in_place(block);
                    routines.pool.free(block.as_ptr().cast(), POOL_TAG);
                }
                Err(error)
            }
        }
    }
}

/// The start context of a thread running `routine` on `context`'s events with `wait`.
fn start_context<T: Sync + 'static, const EVENTS: usize>(
    routine: Wrapped<WorkerRoutine<T, EVENTS>>,
    wait: &WaitParameters,
    context: &WorkerContext<T, EVENTS>,
) -> StartContext {
    let mut events = [core::ptr::null_mut(); sys::MAXIMUM_WAIT_OBJECTS as usize];
    for (slot, event) in events.iter_mut().zip(context.wait_objects()) {
        *slot = event;
    }
    // SAFETY: function pointers of the same size; the C routine type is
    // `BOOLEAN (PVOID, NTSTATUS)`, which the kernel calls with the context below (a
    // `WorkerRef<T, EVENTS>` is a transparent pointer to it, as the routine's type says) and a
    // status (`NtStatus` is a transparent `NTSTATUS`); the routine returns `bool` as one byte
    // 0 or 1, a valid BOOLEAN.
    let erased = unsafe {
        core::mem::transmute::<WorkerRoutine<T, EVENTS>, sys::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE>(
            routine.get(),
        )
    };
    #[allow(clippy::cast_possible_truncation)] // at most 64
    let event_count = context.wait_object_count() as u32;
    StartContext {
        header: sys::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
            WorkerRoutine: Some(erased),
            Context: core::ptr::from_ref(context).cast_mut().cast(),
            WaitType: match wait.wait_type {
                WaitType::Any => sys::WaitAny,
                WaitType::All => sys::WaitAll,
            },
            WaitReason: wait.wait_reason.0,
            WaitMode: match wait.wait_mode {
                WaitMode::Kernel => sys::KernelMode,
                WaitMode::User => sys::UserMode,
            },
            Altertable: sys::BOOLEAN::from(wait.alertable),
            HasTimeout: sys::BOOLEAN::from(wait.timeout.is_some()),
            Timeout: sys::LARGE_INTEGER {
                QuadPart: wait.timeout.map_or(0, Timeout::raw),
            },
            EventCount: event_count,
            Events: [],
        },
        events,
    }
}

/// The pool tag of worker threads' storage: `'kwPD'` in a debugger's byte order.
pub(crate) const POOL_TAG: u32 = u32::from_le_bytes(*b"DPwk");

fn kernel_handle_attributes() -> sys::OBJECT_ATTRIBUTES {
    sys::OBJECT_ATTRIBUTES {
        #[allow(clippy::cast_possible_truncation)] // 0x30
        Length: core::mem::size_of::<sys::OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: core::ptr::null_mut(),
        ObjectName: core::ptr::null_mut(),
        Attributes: sys::OBJ_KERNEL_HANDLE,
        SecurityDescriptor: core::ptr::null_mut(),
        SecurityQualityOfService: core::ptr::null_mut(),
    }
}

/// A running worker thread, owned: [`WorkerThread::stop_and_join`] (or dropping it) asks its
/// routine to end and waits for the thread, then closes the handle and frees the thread's
/// storage (dropping the context). It can be handed to the next image of the driver with
/// [`WorkerThread::into_raw`] / [`WorkerThread::from_raw`].
pub struct WorkerThread<T: Sync + 'static, const EVENTS: usize> {
    block: NonNull<WorkerContext<T, EVENTS>>,
    routines: WorkerRoutines,
    /// Owns a `WorkerContext<T, EVENTS>` (for drop check and auto traits).
    _owns: PhantomData<WorkerContext<T, EVENTS>>,
}

// SAFETY: the thread handle is a kernel handle (OBJ_KERNEL_HANDLE), valid in any thread's
// context; the context is shared with the worker thread as `&T`, so `T: Sync`; the owner may
// drop it on any thread after the worker ended, so `T: Send`.
unsafe impl<T: Send + Sync + 'static, const EVENTS: usize> Send for WorkerThread<T, EVENTS> {}
// SAFETY: `&WorkerThread` only gives shared access to `T` (Sync) and to events (thread-safe).
unsafe impl<T: Sync + 'static, const EVENTS: usize> Sync for WorkerThread<T, EVENTS> {}

impl<T: Sync + 'static, const EVENTS: usize> core::fmt::Debug for WorkerThread<T, EVENTS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkerThread")
            .field("handle", &self.context().handle())
            .field("context", self.context())
            .finish_non_exhaustive()
    }
}

impl<T: Sync + 'static, const EVENTS: usize> WorkerThread<T, EVENTS> {
    fn context(&self) -> &WorkerContext<T, EVENTS> {
        // SAFETY: the block lives until this value frees it (stop_and_join / drop).
        unsafe { self.block.as_ref() }
    }

    /// The context value (shared with the routine).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn get(&self) -> &T {
        self.context().get()
    }

    /// The routine's event `index`, e.g. to wake the thread.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn event(&self, index: usize) -> Option<EventRef<'_>> {
        self.context().event(index)
    }

    /// Whether the kernel owns the loop (`true`), or this crate's fallback thread does.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn is_hot_swappable(&self) -> bool {
        self.context().is_hot_swappable()
    }

    /// The thread handle (still owned by `self`).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn handle(&self) -> sys::HANDLE {
        self.context().handle()
    }

    /// Asks the routine to end (the next call sees [`Wake::Stop`]), waits until the thread
    /// has ended, closes the handle, drops the context and frees the storage.
    ///
    /// IRQL: `PASSIVE_LEVEL`. Blocks until the routine returns `false`: never call it (or drop
    /// the `WorkerThread`) from the worker's own routine, which would wait for itself.
    ///
    /// # Errors
    /// [`WorkerError::Join`] when the wait fails: the handle is closed all the same, and the
    /// storage is left allocated (the thread may still use it).
    pub fn stop_and_join(self) -> Result<(), WorkerError> {
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again.
        unsafe { this.stop_join_and_free() }
    }

    /// # Safety
    /// Called once; `self` is not used afterwards.
    unsafe fn stop_join_and_free(&self) -> Result<(), WorkerError> {
        let context = self.context();
        context.request_stop();
        let handle = context.handle();
        // SAFETY: the handle this value owns; a null timeout waits until the thread ends.
        let status = NtStatus(unsafe {
            (self.routines.wait_for_single_object)(handle, sys::FALSE, core::ptr::null_mut())
        });
        // SAFETY: the handle this value owns, closed once, here.
        let _ = unsafe { (self.routines.close)(handle) };
        if !status.is_success() {
            return Err(WorkerError::Join(status));
        }
        // SAFETY: the thread has ended (its WorkerRefs with it) and this was the only owner:
        // nothing references the storage any more.
        unsafe {
            WorkerContext::drop_in_place(self.block);
            self.routines
                .pool
                .free(self.block.as_ptr().cast(), POOL_TAG);
        }
        Ok(())
    }

    /// Gives up ownership without stopping the thread: the storage's address, from which
    /// [`WorkerThread::from_raw`] takes the thread back (in this image or the next one).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn into_raw(self) -> NonNull<c_void> {
        let this = ManuallyDrop::new(self);
        this.block.cast()
    }

    /// Takes back ownership of a thread given up with [`WorkerThread::into_raw`].
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`WorkerError::NotAWorkerThread`] when the storage is not a worker context of this
    /// type (checked by its magic and a fingerprint of its type);
    /// [`WorkerError::Unavailable`] when this kernel lacks a routine a worker needs.
    ///
    /// # Safety
    /// `raw` must come from [`WorkerThread::into_raw`] for this driver, and no other
    /// `WorkerThread` may own the thread (each `into_raw` is taken back at most once). In
    /// another image (a new version of the driver), `T` and `EVENTS` must be the same
    /// definitions as in the image that started the thread: the fingerprint check catches a
    /// different name, size or event count, not a different meaning.
    pub unsafe fn from_raw(raw: NonNull<c_void>) -> Result<Self, WorkerError> {
        let routines = crate::resolve::exports()
            .workers()
            .map_err(|name| WorkerError::Unavailable(Unavailable::ExportMissing(name)))?;
        // SAFETY: storage of a worker context (caller contract), at least a header long.
        if !unsafe { WorkerContext::<T, EVENTS>::check(raw.as_ptr()) } {
            return Err(WorkerError::NotAWorkerThread);
        }
        Ok(Self {
            block: raw.cast(),
            routines,
            _owns: PhantomData,
        })
    }
}

impl<T: Sync + 'static, const EVENTS: usize> Drop for WorkerThread<T, EVENTS> {
    /// [`WorkerThread::stop_and_join`], ignoring a failed wait. IRQL: `PASSIVE_LEVEL`.
    fn drop(&mut self) {
        // SAFETY: dropped once; `self` is not used afterwards.
        let _ = unsafe { self.stop_join_and_free() };
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::resolve::EventRoutines;
    use std::boxed::Box;

    unsafe extern "system" fn initialize(_: sys::PKEVENT, _: sys::EVENT_TYPE, _: sys::BOOLEAN) {}
    unsafe extern "system" fn set(
        _: sys::PKEVENT,
        _: sys::KPRIORITY,
        _: sys::BOOLEAN,
    ) -> sys::LONG {
        0
    }
    unsafe extern "system" fn clear(_: sys::PKEVENT) {}
    unsafe extern "system" fn state(_: sys::PKEVENT) -> sys::LONG {
        0
    }

    /// Event routines that do nothing: the layout tests never wait.
    fn routines() -> EventRoutines {
        EventRoutines {
            initialize,
            set,
            clear,
            reset: state,
            read_state: state,
        }
    }

    extern "system" fn routine(_: WorkerRef<u32, 2>, _: NtStatus) -> bool {
        false
    }

    fn context<const E: usize>(wait_all: bool) -> &'static WorkerContext<u32, E> {
        Box::leak(Box::new(WorkerContext::new(7, routines(), wait_all, true)))
    }

    fn read<T: Copy>(context: &StartContext, offset: usize) -> T {
        // SAFETY: every offset read below is inside the context and holds an initialised field.
        unsafe {
            (&raw const *context)
                .cast::<u8>()
                .add(offset)
                .cast::<T>()
                .read_unaligned()
        }
    }

    #[test]
    fn start_context_has_the_documented_layout_and_wait_all_leaves_the_stop_event_out() {
        let context = context::<2>(true);
        let wait = WaitParameters {
            wait_type: WaitType::All,
            wait_reason: WaitReason::EXECUTIVE,
            wait_mode: WaitMode::Kernel,
            alertable: true,
            timeout: Some(Timeout::from_millis(5)),
        };
        let start = start_context(
            Wrapped::fallback(routine as WorkerRoutine<u32, 2>),
            &wait,
            context,
        );
        assert_eq!(
            start.len(),
            0x30 + 8 * 2,
            "WaitAll: the routine's two events, without the stop event"
        );
        assert_eq!(
            read::<usize>(&start, 0x00),
            routine as WorkerRoutine<u32, 2> as usize
        );
        assert_eq!(
            read::<usize>(&start, 0x08),
            core::ptr::from_ref(context) as usize
        );
        assert_eq!(read::<i32>(&start, 0x10), sys::WaitAll);
        assert_eq!(read::<i32>(&start, 0x14), sys::Executive);
        assert_eq!(read::<i8>(&start, 0x18), sys::KernelMode);
        assert_eq!(read::<u8>(&start, 0x19), 1, "Altertable");
        assert_eq!(read::<u8>(&start, 0x1A), 1, "HasTimeout");
        assert_eq!(
            read::<i64>(&start, 0x20),
            -50_000,
            "5 ms relative, in 100 ns units"
        );
        assert_eq!(read::<u32>(&start, 0x28), 2);
        let objects: std::vec::Vec<sys::PKEVENT> = context.wait_objects().collect();
        for (i, object) in objects.iter().enumerate() {
            assert_eq!(read::<sys::PKEVENT>(&start, 0x30 + 8 * i), *object);
        }
        assert_eq!(objects.len(), 2);
        assert!(objects.windows(2).all(|w| w[0] != w[1]), "distinct events");
    }

    #[test]
    fn wait_any_waits_on_the_stop_event_first_then_the_routines_events() {
        let context = context::<2>(false);
        let wait = WaitParameters {
            wait_type: WaitType::Any,
            wait_reason: WaitReason::EXECUTIVE,
            wait_mode: WaitMode::Kernel,
            alertable: false,
            timeout: None,
        };
        let start = start_context(
            Wrapped::fallback(routine as WorkerRoutine<u32, 2>),
            &wait,
            context,
        );
        assert_eq!(start.len(), 0x30 + 8 * 3);
        assert_eq!(read::<u8>(&start, 0x1A), 0, "HasTimeout");
        let objects: std::vec::Vec<sys::PKEVENT> = context.wait_objects().collect();
        assert_eq!(objects.len(), 3);
        assert_eq!(objects[1], context.event(0).unwrap().as_raw());
        assert_eq!(objects[2], context.event(1).unwrap().as_raw());
        assert!(
            !objects[1..].contains(&objects[0]),
            "index 0 is the stop event"
        );
        // WaitAll without events of its own: the stop event alone.
        assert_eq!(self::context::<0>(true).wait_objects().count(), 1);
    }

    #[test]
    fn wake_reads_the_status_with_the_threads_own_events() {
        let any = context::<2>(false);
        assert_eq!(any.wake(NtStatus::TIMEOUT), Wake::Timeout);
        assert_eq!(any.wake(NtStatus::WAIT_0), Wake::Stop);
        assert_eq!(any.wake(NtStatus(1)), Wake::Event(0));
        assert_eq!(any.wake(NtStatus(2)), Wake::Event(1));
        assert_eq!(
            any.wake(NtStatus(3)),
            Wake::Failed(NtStatus(3)),
            "no event 2"
        );
        assert_eq!(any.wake(NtStatus::ALERTED), Wake::Alerted);
        assert_eq!(any.wake(NtStatus::USER_APC), Wake::UserApc);
        assert_eq!(
            any.wake(NtStatus::ABANDONED_WAIT_0),
            Wake::Failed(NtStatus::ABANDONED_WAIT_0)
        );
        let all = context::<2>(true);
        assert_eq!(all.wake(NtStatus::WAIT_0), Wake::All);
        all.request_stop();
        assert_eq!(
            all.wake(NtStatus::WAIT_0),
            Wake::Stop,
            "a stop request wins"
        );
        assert_eq!(all.wake(NtStatus::TIMEOUT), Wake::Stop);
        assert_eq!(*all.get(), 7);
    }

    #[test]
    fn a_context_is_recognised_only_as_its_own_type() {
        let context = context::<2>(false);
        let raw = core::ptr::from_ref(context).cast::<c_void>();
        // SAFETY: `raw` is a whole WorkerContext<u32, 2>, larger than any header.
        unsafe {
            assert!(WorkerContext::<u32, 2>::check(raw));
            assert!(!WorkerContext::<u32, 1>::check(raw), "another event count");
            assert!(!WorkerContext::<i32, 2>::check(raw), "another context type");
        }
    }

    #[test]
    fn timeouts_are_stored_in_the_kernel_convention() {
        assert_eq!(Timeout::from_millis(1).raw(), -10_000);
        assert_eq!(Timeout::relative_100ns(7).raw(), -7);
        assert_eq!(Timeout::absolute(123).raw(), 123);
        assert_eq!(Timeout::relative_100ns(u64::MAX).raw(), -i64::MAX);
    }
}
