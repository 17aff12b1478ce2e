//! Kernel events: [`Event`], storage for a `KEVENT` the driver owns, and [`EventRef`], an
//! initialised event whose operations cannot fail.

use core::cell::UnsafeCell;
use core::pin::Pin;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::resolve::{EventRoutines, exports};
use crate::{EventError, sys};

/// The kind of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `NotificationEvent`: stays signalled until cleared; releases every waiter.
    Notification,
    /// `SynchronizationEvent`: releases one waiter and clears itself.
    Synchronization,
}

impl EventKind {
    pub(crate) const fn raw(self) -> sys::EVENT_TYPE {
        match self {
            Self::Notification => sys::NotificationEvent,
            Self::Synchronization => sys::SynchronizationEvent,
        }
    }
}

const UNINITIALIZED: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;

/// A `KEVENT` in storage the driver owns (a `static`, or its device extension), for the
/// driver's own waits.
///
/// A kernel event must not move once initialised (its wait list points into itself), so
/// [`Event::initialize`] takes `Pin<&Self>`: for a `static`, `Pin::static_ref(&EVENT)`. It
/// returns an [`EventRef`], whose operations cannot fail; [`Event::get`] gives it again later.
///
/// The events of a worker thread are not `Event`s: the thread's storage, which the library
/// owns, holds them (a `static` of the image would be unmapped by a swap while the kernel
/// still waits on it).
///
/// # Invariants
/// `raw` is an initialised `KEVENT` exactly when `state == READY`; it is written only by the
/// thread that moved `state` out of `UNINITIALIZED`, and is pinned from then on. `routines`
/// is written by that thread before `READY` is published.
pub struct Event {
    raw: UnsafeCell<sys::KEVENT>,
    routines: UnsafeCell<Option<EventRoutines>>,
    state: AtomicU8,
}

// SAFETY: after initialisation the KEVENT is only accessed through the kernel's Ke*Event
// routines, which synchronise internally and may be called from any thread; `routines` is
// written once before READY is published (Release) and only read after READY is observed
// (Acquire).
unsafe impl Sync for Event {}
// SAFETY: an Event that has not been pinned and initialised is plain zeroed storage.
unsafe impl Send for Event {}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.get() {
            Some(event) => event.fmt(f),
            None => f.write_str("Event(uninitialised)"),
        }
    }
}

impl Event {
    /// Uninitialised storage, usable in a `static`.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            raw: UnsafeCell::new(sys::KEVENT::zeroed()),
            routines: UnsafeCell::new(None),
            state: AtomicU8::new(UNINITIALIZED),
        }
    }

    /// Initialises the event (`KeInitializeEvent`), once, after checking that every event
    /// routine exists (so that no operation of the returned [`EventRef`] can fail).
    ///
    /// IRQL: `PASSIVE_LEVEL` on the first call into this crate (run-time resolution); any IRQL
    /// `<= DISPATCH_LEVEL` afterwards (the event lives in storage that is never paged out).
    ///
    /// # Errors
    /// [`EventError::AlreadyInitialized`]; [`EventError::ExportMissing`] (nothing changed).
    pub fn initialize(
        self: Pin<&Self>,
        kind: EventKind,
        signalled: bool,
    ) -> Result<EventRef<'_>, EventError> {
        let routines = exports().events().map_err(EventError::ExportMissing)?;
        let this = self.get_ref();
        if this
            .state
            .compare_exchange(
                UNINITIALIZED,
                INITIALIZING,
                Ordering::Acquire,
                Ordering::Acquire,
            )
            .is_err()
        {
            return Err(EventError::AlreadyInitialized);
        }
        // SAFETY: this thread alone moved the state out of UNINITIALIZED, so nothing else
        // touches `raw` or `routines` (invariant); `self` is pinned, so the KEVENT never moves
        // afterwards.
        unsafe {
            (routines.initialize)(this.raw.get(), kind.raw(), sys::BOOLEAN::from(signalled));
            *this.routines.get() = Some(routines);
        }
        this.state.store(READY, Ordering::Release);
        Ok(EventRef {
            raw: &this.raw,
            routines,
        })
    }

    /// The initialised event, or `None` before [`Event::initialize`] finished.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn get(&self) -> Option<EventRef<'_>> {
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        // SAFETY: READY was observed with Acquire: `routines` was written before it and is
        // never written again (invariant).
        let routines = unsafe { *self.routines.get() }?;
        Some(EventRef {
            raw: &self.raw,
            routines,
        })
    }
}

/// An initialised kernel event: its operations cannot fail.
///
/// Obtained from [`Event::initialize`] / [`Event::get`], or from a worker thread's storage
/// ([`crate::WorkerRef::event`], [`crate::WorkerThread::event`]).
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    raw: &'a UnsafeCell<sys::KEVENT>,
    routines: EventRoutines,
}

impl core::fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EventRef({:p})", self.raw.get())
    }
}

impl<'a> EventRef<'a> {
    /// An event initialised in storage of the crate's own.
    ///
    /// # Safety
    /// `raw` must be an initialised `KEVENT` that never moves while `'a` lasts.
    pub(crate) unsafe fn from_initialized(
        raw: &'a UnsafeCell<sys::KEVENT>,
        routines: EventRoutines,
    ) -> Self {
        Self { raw, routines }
    }

    /// Signals the event (`KeSetEvent`, no priority boost, `Wait = FALSE`); returns whether it
    /// was already signalled.
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    #[allow(
        clippy::must_use_candidate,
        reason = "signalling is the point; the result is extra"
    )]
    pub fn set(self) -> bool {
        // SAFETY: an initialised, pinned KEVENT (type invariant).
        unsafe { (self.routines.set)(self.raw.get(), sys::IO_NO_INCREMENT, sys::FALSE) != 0 }
    }

    /// Clears the event (`KeClearEvent`).
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    pub fn clear(self) {
        // SAFETY: an initialised, pinned KEVENT (type invariant).
        unsafe { (self.routines.clear)(self.raw.get()) };
    }

    /// Clears the event and returns whether it was signalled (`KeResetEvent`).
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    #[allow(
        clippy::must_use_candidate,
        reason = "clearing is the point; the result is extra"
    )]
    pub fn reset(self) -> bool {
        // SAFETY: an initialised, pinned KEVENT (type invariant).
        unsafe { (self.routines.reset)(self.raw.get()) != 0 }
    }

    /// Whether the event is signalled (`KeReadStateEvent`).
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    #[must_use]
    pub fn is_set(self) -> bool {
        // SAFETY: an initialised, pinned KEVENT (type invariant).
        unsafe { (self.routines.read_state)(self.raw.get()) != 0 }
    }

    /// The `PKEVENT`, for calls this crate does not wrap (e.g. `KeWaitForSingleObject`).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn as_raw(self) -> sys::PKEVENT {
        self.raw.get()
    }
}
