//! A worker thread's storage ([`WorkerContext`], pool the crate owns), the routine's view of it
//! ([`WorkerRef`]), and [`Wake`].

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::resolve::EventRoutines;
use crate::{EventKind, EventRef, NtStatus, sys};

/// The most events a worker thread's routine can have on top of the stop event: the
/// kernel's `MAXIMUM_WAIT_OBJECTS` (64), the limit of the multi-object wait the thread
/// performs, less the stop event this crate adds at index 0.
pub const MAX_WORKER_EVENTS: usize = sys::MAXIMUM_WAIT_OBJECTS as usize - 1;

/// The routine of a worker thread with a context of type `T` and `EVENTS` events of its own
/// (`DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE`: `BOOLEAN Routine(PVOID WorkerContext, NTSTATUS
/// WaitStatus)`, with the context typed). Run at `PASSIVE_LEVEL` after each wait; returns
/// `true` to wait again and `false` to end the thread, which it must do on [`Wake::Stop`].
///
/// The context's type and the event count are part of the routine's type, so a worker thread
/// cannot be started with a context the routine does not read as its own
/// ([`crate::HotSwap::worker_thread`]).
pub type WorkerRoutine<T, const EVENTS: usize> =
    extern "system" fn(worker: WorkerRef<T, EVENTS>, wait_status: NtStatus) -> bool;

/// What a worker routine gets: its thread's context, events and stop request.
///
/// The kernel passes the storage's address (the start context's `WorkerContext`); this type is
/// that pointer, typed. It is neither `Send`, `Sync`, `Copy` nor `Clone`: it stays on the
/// worker thread, which ends before the storage is freed ([`crate::WorkerThread::stop_and_join`]),
/// and what it lends ([`WorkerRef::with`], [`WorkerRef::event`]) cannot outlive it or leave
/// the thread.
///
/// ```compile_fail,E0277
/// use driver_proxy::{NtStatus, WorkerRef};
/// extern "system" fn routine(worker: WorkerRef<u64, 0>, _: NtStatus) -> bool {
///     // error[E0277]: `*mut ()` cannot be sent between threads safely: the storage is freed
///     // once the worker thread has ended, so its view must not leave that thread.
///     std::thread::spawn(move || *worker.get());
///     false
/// }
/// ```
#[repr(transparent)]
pub struct WorkerRef<T, const EVENTS: usize> {
    context: NonNull<WorkerContext<T, EVENTS>>,
    _on_its_thread: PhantomData<*mut ()>,
}

impl<T, const EVENTS: usize> core::fmt::Debug for WorkerRef<T, EVENTS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.context().fmt(f)
    }
}

impl<T, const EVENTS: usize> WorkerRef<T, EVENTS> {
    /// The routine's view of `context`.
    ///
    /// # Safety
    /// `context` is a live worker context, alive until the thread that gets this value ends.
    pub(crate) unsafe fn new(context: NonNull<WorkerContext<T, EVENTS>>) -> Self {
        Self {
            context,
            _on_its_thread: PhantomData,
        }
    }

    fn context(&self) -> &WorkerContext<T, EVENTS> {
        // SAFETY: alive until the worker thread ends, and this value lives on it (type docs).
        unsafe { self.context.as_ref() }
    }

    /// Runs `f` with the context value, which it may use for the call only.
    ///
    /// The context is lent, not returned: a `&T` that could outlive the call could be leaked
    /// (a `WorkerRef` itself can be leaked) and, being `Send` for `T: Sync`, handed to another
    /// thread, which could then use it after [`crate::WorkerThread::stop_and_join`] freed the
    /// storage. A closure's borrow cannot leave it:
    ///
    /// ```compile_fail,E0521
    /// use std::sync::OnceLock;
    /// use std::sync::atomic::AtomicU64;
    /// use driver_proxy::{NtStatus, WorkerRef};
    /// static ESCAPED: OnceLock<&'static AtomicU64> = OnceLock::new();
    /// extern "system" fn routine(worker: WorkerRef<AtomicU64, 0>, _: NtStatus) -> bool {
    ///     let worker: &'static WorkerRef<AtomicU64, 0> = Box::leak(Box::new(worker));
    ///     // error[E0521]: borrowed data escapes outside of closure
    ///     worker.with(|context| ESCAPED.set(context).ok());
    ///     false
    /// }
    /// ```
    ///
    /// IRQL: any.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(self.context().get())
    }

    /// The routine's event `index` (0-based, in the order given to
    /// [`crate::WorkerThreadBuilder::events`]), or `None` past the last.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn event(&self, index: usize) -> Option<EventRef<'_>> {
        self.context().event(index)
    }

    /// Whether the thread was asked to end.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn stop_requested(&self) -> bool {
        self.context().stop_requested()
    }

    /// Whether the kernel runs the loop (a hot-swappable worker thread), or this crate's
    /// fallback thread does.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn is_hot_swappable(&self) -> bool {
        self.context().is_hot_swappable()
    }

    /// Why the routine was called: [`Wake::Stop`] whenever the thread was asked to end
    /// (whatever the status), else the status read with this thread's events (`WaitAny`: index
    /// 0 of the kernel's wait is the stop event, the routine's events follow; `WaitAll`: the
    /// routine's events alone, and `STATUS_WAIT_0` means all of them).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn wake(&self, wait_status: NtStatus) -> Wake {
        self.context().wake(wait_status)
    }
}

const MAGIC: u64 = u64::from_le_bytes(*b"DPrxWrk1");

/// Why a worker's routine was called: its wait status, read with the thread's own events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The thread is asked to end ([`crate::WorkerThread::stop_and_join`] or its drop):
    /// return `false`.
    Stop,
    /// The routine's event of this index (0-based, in the order of
    /// [`crate::WorkerThreadBuilder::events`]) was signalled (`WaitAny`).
    Event(usize),
    /// Every event was signalled (`WaitAll`).
    All,
    /// The timeout elapsed (`STATUS_TIMEOUT`).
    Timeout,
    /// An alertable wait was alerted (`STATUS_ALERTED`).
    Alerted,
    /// An alertable user-mode wait delivered a user APC (`STATUS_USER_APC`).
    UserApc,
    /// Any other status: the wait failed (ending the thread is usually right).
    Failed(NtStatus),
}

/// The fixed part of a worker's storage.
#[repr(C)]
struct Header {
    magic: u64,
    /// Fingerprint of `WorkerContext<T, EVENTS>` ([`WorkerContext::fingerprint`]).
    fingerprint: u64,
    /// The thread handle (kernel handle), while a [`crate::WorkerThread`] owns the thread.
    handle: AtomicPtr<c_void>,
    /// The event routines resolved by the image that started the thread.
    routines: EventRoutines,
    stop_requested: AtomicBool,
    wait_all: bool,
    hot_swappable: bool,
}

/// A worker thread's storage: its context (a `T`), its events, the stop request.
///
/// **Who owns it.** The crate, in non-paged pool (tag `DPwk`), not the image: a swap unmaps the
/// old image while the kernel keeps waiting on these events and passing this context to the
/// routine's wrapper (a `static` of the image would be unmapped under it). The
/// [`crate::WorkerThread`] that owns the thread frees it, in whichever image ends the thread,
/// once the thread has ended ([`crate::WorkerThread::stop_and_join`]).
#[repr(C)]
pub(crate) struct WorkerContext<T, const EVENTS: usize> {
    header: Header,
    stop: UnsafeCell<sys::KEVENT>,
    events: [UnsafeCell<sys::KEVENT>; EVENTS],
    value: T,
}

// SAFETY: the events are only operated through the kernel's Ke*Event routines (thread-safe);
// the header's mutable parts are atomics; the value is shared as `&T`, hence `T: Sync`.
unsafe impl<T: Sync, const EVENTS: usize> Sync for WorkerContext<T, EVENTS> {}

impl<T, const EVENTS: usize> core::fmt::Debug for WorkerContext<T, EVENTS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkerContext")
            .field("events", &EVENTS)
            .field("stop_requested", &self.stop_requested())
            .field("hot_swappable", &self.header.hot_swappable)
            .finish_non_exhaustive()
    }
}

impl<T, const EVENTS: usize> WorkerContext<T, EVENTS> {
    /// Evaluated wherever a worker of this type is started: at most [`MAX_WORKER_EVENTS`]
    /// events, and an alignment the kernel's allocations give (16 bytes).
    pub(crate) const VALID: () = {
        assert!(
            EVENTS <= MAX_WORKER_EVENTS,
            "a worker thread waits on at most 63 events of its own (64 with the stop event)"
        );
        assert!(
            core::mem::align_of::<Self>() <= 16,
            "a worker context must not need more than 16-byte alignment (the kernel's pool alignment)"
        );
    };

    /// The storage of a new worker: `value`, `EVENTS` events of the given kinds (not
    /// signalled) and the stop event, to be written into its block and then initialised
    /// with [`WorkerContext::initialize_events`].
    pub(crate) fn new(
        value: T,
        routines: EventRoutines,
        wait_all: bool,
        hot_swappable: bool,
    ) -> Self {
        let () = Self::VALID;
        Self {
            header: Header {
                magic: MAGIC,
                fingerprint: Self::fingerprint(),
                handle: AtomicPtr::new(core::ptr::null_mut()),
                routines,
                stop_requested: AtomicBool::new(false),
                wait_all,
                hot_swappable,
            },
            stop: UnsafeCell::new(sys::KEVENT::zeroed()),
            events: core::array::from_fn(|_| UnsafeCell::new(sys::KEVENT::zeroed())),
            value,
        }
    }

    /// What identifies this storage type in another compilation: the type name, size and
    /// alignment, and the event count.
    fn fingerprint() -> u64 {
        let name = crate::endpoint::fnv1a(core::any::type_name::<Self>().as_bytes());
        name ^ ((core::mem::size_of::<Self>() as u64) << 32)
            ^ ((core::mem::align_of::<Self>() as u64) << 16)
            ^ EVENTS as u64
    }

    /// Initialises the stop event (notification) and the routine's events (`kinds`).
    ///
    /// # Safety
    /// `self` is in its final place (it never moves again) and no thread uses its events yet.
    pub(crate) unsafe fn initialize_events(&self, kinds: &[EventKind; EVENTS]) {
        let initialize = self.header.routines.initialize;
        // SAFETY: pinned storage nobody waits on yet (caller contract).
        unsafe {
            initialize(self.stop.get(), sys::NotificationEvent, sys::FALSE);
            for (event, kind) in self.events.iter().zip(kinds) {
                initialize(event.get(), kind.raw(), sys::FALSE);
            }
        }
    }

    /// Drops the context (the value; the events need no teardown).
    ///
    /// # Safety
    /// `block` holds an initialised context that nothing references any more (its thread has
    /// ended or never started) and that is never used again.
    pub(crate) unsafe fn drop_in_place(block: NonNull<Self>) {
        // SAFETY: caller contract; the place is derived from the block's own pointer.
        unsafe { core::ptr::drop_in_place(&raw mut (*block.as_ptr()).value) };
    }

    /// Checks that `raw` holds a worker context of this type.
    ///
    /// # Safety
    /// `raw` must point to readable storage at least as large as a `WorkerContext` header.
    pub(crate) unsafe fn check(raw: *const c_void) -> bool {
        let header = raw.cast::<Header>();
        // SAFETY: readable header (caller contract); magic and fingerprint are never written
        // after the storage is published.
        unsafe { (*header).magic == MAGIC && (*header).fingerprint == Self::fingerprint() }
    }

    /// The context value.
    pub(crate) fn get(&self) -> &T {
        &self.value
    }

    /// The routine's event `index`, or `None` past the last.
    pub(crate) fn event(&self, index: usize) -> Option<EventRef<'_>> {
        let raw = self.events.get(index)?;
        // SAFETY: initialised before the thread started, in storage that never moves.
        Some(unsafe { EventRef::from_initialized(raw, self.header.routines) })
    }

    /// Whether the thread was asked to end.
    pub(crate) fn stop_requested(&self) -> bool {
        self.header.stop_requested.load(Ordering::Acquire)
    }

    /// Whether the kernel runs the loop.
    pub(crate) fn is_hot_swappable(&self) -> bool {
        self.header.hot_swappable
    }

    /// Why the routine was called: [`Wake::Stop`] whenever the thread was asked to end
    /// (whatever the status), else the status read with this thread's events (`WaitAny`: index
    /// 0 of the kernel's wait is the stop event, the routine's events follow; `WaitAll`: the
    /// routine's events alone, and `STATUS_WAIT_0` means all of them).
    ///
    pub(crate) fn wake(&self, wait_status: NtStatus) -> Wake {
        if self.stop_requested() {
            return Wake::Stop;
        }
        match wait_status {
            NtStatus::TIMEOUT => Wake::Timeout,
            NtStatus::ALERTED => Wake::Alerted,
            NtStatus::USER_APC => Wake::UserApc,
            NtStatus::WAIT_0 if self.header.wait_all => Wake::All,
            status => match status.wait_index() {
                Some(0) => Wake::Stop,
                Some(index) if (index as usize) <= EVENTS => Wake::Event(index as usize - 1),
                _ => Wake::Failed(status),
            },
        }
    }

    /// The events the kernel waits on, in its order: the stop event, then the routine's
    /// events (`WaitAny`); for `WaitAll`, the routine's events alone (the stop event would make
    /// every wait need a stop; a stop request sets them all instead), or the stop event alone
    /// when the routine has none.
    pub(crate) fn wait_objects(&self) -> impl Iterator<Item = sys::PKEVENT> + '_ {
        let stop = (!self.header.wait_all || EVENTS == 0).then(|| self.stop.get());
        stop.into_iter()
            .chain(self.events.iter().map(UnsafeCell::get))
    }

    /// How many events the kernel waits on ([`WorkerContext::wait_objects`]).
    pub(crate) fn wait_object_count(&self) -> usize {
        if self.header.wait_all && EVENTS > 0 {
            EVENTS
        } else {
            EVENTS + 1
        }
    }

    /// Records the thread handle.
    pub(crate) fn set_handle(&self, handle: sys::HANDLE) {
        self.header.handle.store(handle, Ordering::Release);
    }

    /// The thread handle.
    pub(crate) fn handle(&self) -> sys::HANDLE {
        self.header.handle.load(Ordering::Acquire)
    }

    /// Asks the thread to end: the flag, then the stop event (and, for `WaitAll`, every event,
    /// since only all of them together end that wait).
    pub(crate) fn request_stop(&self) {
        self.header.stop_requested.store(true, Ordering::Release);
        let routines = self.header.routines;
        // SAFETY: initialised events in storage that never moves.
        unsafe {
            (routines.set)(self.stop.get(), sys::IO_NO_INCREMENT, sys::FALSE);
            if self.header.wait_all {
                for event in &self.events {
                    (routines.set)(event.get(), sys::IO_NO_INCREMENT, sys::FALSE);
                }
            }
        }
    }
}
