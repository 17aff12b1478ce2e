//! [`OnceCell`]: a value computed once, at first use, race-free, without `std`.
//!
//! Resolution of kernel exports runs at `PASSIVE_LEVEL`, takes microseconds and happens once
//! per boot of the driver, so a thread that finds another thread resolving simply spins
//! until the value is published; no blocking primitive (which would itself need resolving)
//! is needed.

use crate::sync::{AtomicU8, Ordering, UnsafeCell, spin_wait};
use core::mem::MaybeUninit;

const EMPTY: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;

/// A cell written exactly once by the first caller of [`OnceCell::get_or_init`].
///
/// # Invariants
/// `value` is initialised exactly when `state == READY`; it is written only by the one
/// thread that moved `state` from `EMPTY` to `RUNNING`, and never written again.
pub(crate) struct OnceCell<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, before `READY` is published with Release, and only read
// after `READY` is observed with Acquire; after that it is immutable, so sharing `&T` across
// threads needs `T: Sync`, and moving the value in from another thread needs `T: Send`.
unsafe impl<T: Send + Sync> Sync for OnceCell<T> {}

impl<T> OnceCell<T> {
    /// An empty cell.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// An empty cell (loom's atomics are not `const`).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value, computing it with `init` if no thread has yet. `init` runs at most once
    /// over the cell's life; concurrent callers wait for it and all get the same value.
    pub(crate) fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        if self.state.load(Ordering::Acquire) != READY {
            match self
                .state
                .compare_exchange(EMPTY, RUNNING, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    let value = init();
                    // SAFETY: this thread alone moved the state to RUNNING, so no other thread
                    // reads or writes `value` until READY is published below (invariant).
                    self.value.with_mut(|slot| unsafe { (*slot).write(value) });
                    self.state.store(READY, Ordering::Release);
                }
                Err(_) => {
                    while self.state.load(Ordering::Acquire) != READY {
                        spin_wait();
                    }
                }
            }
        }
        // SAFETY: READY was observed with Acquire, so the write of `value` happened before
        // this read and `value` is initialised and never written again (invariant).
        self.value.with(|slot| unsafe { &*(*slot).as_ptr() })
    }
}

impl<T> Drop for OnceCell<T> {
    fn drop(&mut self) {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY means `value` is initialised; `&mut self` excludes other users.
            self.value
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::OnceCell;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    #[test]
    fn init_runs_once_and_every_racing_caller_sees_its_value() {
        for _ in 0..200 {
            let cell = OnceCell::new();
            let runs = AtomicUsize::new(0);
            let barrier = Barrier::new(4);
            let seen: std::vec::Vec<usize> = std::thread::scope(|scope| {
                let handles: std::vec::Vec<_> = (0..4)
                    .map(|i| {
                        let (cell, runs, barrier) = (&cell, &runs, &barrier);
                        scope.spawn(move || {
                            barrier.wait();
                            *cell.get_or_init(|| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                100 + i
                            })
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
        }
    }

    #[test]
    fn a_ready_cell_does_not_call_init_again() {
        let cell = OnceCell::new();
        assert_eq!(*cell.get_or_init(|| 7), 7);
        assert_eq!(
            *cell.get_or_init(|| unreachable!("init must not run twice")),
            7
        );
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::OnceCell;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicUsize, Ordering};

    /// Two threads race to resolve: the resolver runs once and both see the one value.
    #[test]
    fn loom_once_cell_resolves_once_under_every_interleaving() {
        loom::model(|| {
            let cell = Arc::new(OnceCell::new());
            let runs = Arc::new(AtomicUsize::new(0));
            let spawn = |id: usize| {
                let (cell, runs) = (Arc::clone(&cell), Arc::clone(&runs));
                loom::thread::spawn(move || {
                    *cell.get_or_init(|| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        id
                    })
                })
            };
            let (a, b) = (spawn(1), spawn(2));
            let (a, b) = (a.join().unwrap(), b.join().unwrap());
            assert_eq!(a, b);
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        });
    }
}
