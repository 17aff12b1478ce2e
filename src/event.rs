//! [`Event`]: a kernel event (`KEVENT`) the driver owns, e.g. to wake a worker thread.

use core::cell::UnsafeCell;
use core::pin::Pin;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::resolve::exports;
use crate::{EventError, sys};

/// The kind of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `NotificationEvent`: stays signalled until cleared; releases every waiter.
    Notification,
    /// `SynchronizationEvent`: releases one waiter and clears itself.
    Synchronization,
}

const UNINITIALIZED: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;

/// A `KEVENT` in storage the driver owns (a `static`, or its device extension).
///
/// A kernel event must not move once initialised (its wait list points into itself), so
/// [`Event::initialize`] takes `Pin<&Self>`: for a `static`, `Pin::static_ref(&EVENT)`.
///
/// # Invariants
/// `raw` is an initialised `KEVENT` exactly when `state == READY`; it is written only by the
/// thread that moved `state` out of `UNINITIALIZED`, and is pinned from then on.
pub struct Event {
    raw: UnsafeCell<sys::KEVENT>,
    state: AtomicU8,
}

// SAFETY: after initialisation the KEVENT is only accessed through the kernel's Ke*Event
// routines, which synchronise internally and may be called from any thread.
unsafe impl Sync for Event {}
// SAFETY: an Event that has not been pinned and initialised is plain zeroed storage.
unsafe impl Send for Event {}

impl Default for Event {
    fn default() -> Self {
        Self::new()
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
            state: AtomicU8::new(UNINITIALIZED),
        }
    }

    /// Initialises the event (`KeInitializeEvent`), once.
    ///
    /// IRQL: `PASSIVE_LEVEL` on the first call into this crate (run-time resolution); any IRQL
    /// afterwards (the event lives in storage that is never paged out).
    ///
    /// # Errors
    /// [`EventError::AlreadyInitialized`]; [`EventError::ExportMissing`].
    pub fn initialize(
        self: Pin<&Self>,
        kind: EventKind,
        signalled: bool,
    ) -> Result<(), EventError> {
        let initialize = exports()
            .kernel
            .initialize_event
            .ok_or(EventError::ExportMissing(
                sys::kernel_names::KE_INITIALIZE_EVENT.ascii,
            ))?;
        if self
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
        let kind = match kind {
            EventKind::Notification => sys::NotificationEvent,
            EventKind::Synchronization => sys::SynchronizationEvent,
        };
        // SAFETY: this thread alone moved the state out of UNINITIALIZED, so nothing else
        // touches `raw` (invariant); `self` is pinned, so the KEVENT never moves afterwards.
        unsafe { initialize(self.raw.get(), kind, sys::BOOLEAN::from(signalled)) };
        self.state.store(READY, Ordering::Release);
        Ok(())
    }

    /// Marks the storage initialised without a kernel, for layout tests that never use it.
    #[cfg(test)]
    pub(crate) fn mark_ready_for_tests(&self) {
        self.state.store(READY, Ordering::Release);
    }

    /// The `PKEVENT`, if initialised.
    pub(crate) fn as_raw(&self) -> Result<sys::PKEVENT, EventError> {
        if self.state.load(Ordering::Acquire) == READY {
            Ok(self.raw.get())
        } else {
            Err(EventError::NotInitialized)
        }
    }

    /// The initialised event and the kernel routine `pick` selects, or why not.
    fn with_routine<R: Copy>(
        &self,
        pick: impl FnOnce(&crate::resolve::KernelRoutines) -> Option<R>,
        name: &sys::RoutineName,
    ) -> Result<(sys::PKEVENT, R), EventError> {
        let raw = self.as_raw()?;
        let routine = pick(&exports().kernel).ok_or(EventError::ExportMissing(name.ascii))?;
        Ok((raw, routine))
    }

    /// Signals the event (`KeSetEvent`, no priority boost, `Wait = FALSE`); returns whether it
    /// was already signalled.
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    ///
    /// # Errors
    /// [`EventError::NotInitialized`]; [`EventError::ExportMissing`].
    pub fn set(&self) -> Result<bool, EventError> {
        let (raw, set) = self.with_routine(|k| k.set_event, &sys::kernel_names::KE_SET_EVENT)?;
        // SAFETY: `raw` is an initialised, pinned KEVENT (invariant).
        Ok(unsafe { set(raw, sys::IO_NO_INCREMENT, sys::FALSE) } != 0)
    }

    /// Clears the event (`KeClearEvent`).
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    ///
    /// # Errors
    /// [`EventError::NotInitialized`]; [`EventError::ExportMissing`].
    pub fn clear(&self) -> Result<(), EventError> {
        let (raw, clear) =
            self.with_routine(|k| k.clear_event, &sys::kernel_names::KE_CLEAR_EVENT)?;
        // SAFETY: `raw` is an initialised, pinned KEVENT (invariant).
        unsafe { clear(raw) };
        Ok(())
    }

    /// Clears the event and returns whether it was signalled (`KeResetEvent`).
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    ///
    /// # Errors
    /// [`EventError::NotInitialized`]; [`EventError::ExportMissing`].
    pub fn reset(&self) -> Result<bool, EventError> {
        let (raw, reset) =
            self.with_routine(|k| k.reset_event, &sys::kernel_names::KE_RESET_EVENT)?;
        // SAFETY: `raw` is an initialised, pinned KEVENT (invariant).
        Ok(unsafe { reset(raw) } != 0)
    }

    /// Whether the event is signalled (`KeReadStateEvent`).
    ///
    /// IRQL: `<= DISPATCH_LEVEL`.
    ///
    /// # Errors
    /// [`EventError::NotInitialized`]; [`EventError::ExportMissing`].
    pub fn is_set(&self) -> Result<bool, EventError> {
        let (raw, read) = self.with_routine(
            |k| k.read_state_event,
            &sys::kernel_names::KE_READ_STATE_EVENT,
        )?;
        // SAFETY: `raw` is an initialised, pinned KEVENT (invariant).
        Ok(unsafe { read(raw) } != 0)
    }
}
