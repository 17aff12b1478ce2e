//! The model-checking seam (as crossbeam-epoch's `primitive` module).
//!
//! The Rust side of the drain/stall/repoint protocol ([`super::protocol`]) uses only the
//! items of this module. Under `--cfg loom` they are loom's, so the loom model in
//! `protocol::loom_model` explores every interleaving of the very code the engine runs;
//! otherwise they are `core`'s atomics plus two operating-system primitives:
//!
//! * [`Futex`]: a 32-bit sequence word that a thread can sleep on until it changes
//!   (`futex(2)` on Linux; a loom `Mutex` + `Condvar` under loom, which has exactly the
//!   "compare, then sleep, atomically with respect to wakers" semantics of a futex);
//! * [`process_barrier`]: the swapper's side of the asymmetric barrier
//!   (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`; a `fence(SeqCst)` under loom).
//!
//! The callers' side of the asymmetric barrier is [`caller_barrier`]: in the machine-code
//! fast path it is *nothing at all* (a plain increment followed by a plain load, ordered by
//! the swapper's `membarrier`), which loom cannot express; the model therefore places a
//! `fence(SeqCst)` there, the standard way to model `membarrier` (it "promotes" the callers'
//! compiler barriers to full barriers, as liburcu's memb flavour documents).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{Ordering, fence};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{Ordering, fence};

use std::time::Duration;

/// Busy-wait hint (loom: a yield point, so spin loops stay finite in the model).
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// The callers' half of the asymmetric barrier: see the module docs.
#[inline]
pub(crate) fn caller_barrier() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// The swapper's half of the asymmetric barrier: after it returns, every other thread of
/// the process has either made its earlier stores visible or will see the swapper's earlier
/// stores on its next load.
#[inline]
pub(crate) fn process_barrier() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    super::os::process_barrier();
}

/// A sequence word that threads can sleep on until it changes.
///
/// `wake_all` bumps the word and wakes every sleeper; `wait(seen, timeout)` sleeps only if
/// the word still equals `seen` (atomically with respect to `wake_all`), so a wake-up that
/// happens between reading the word and sleeping is never lost. Spurious returns are allowed;
/// callers loop.
pub(crate) struct Futex {
    word: AtomicU32,
    /// Threads inside `wait` (lets `wake_all` skip the system call when nobody sleeps).
    sleepers: AtomicU32,
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    #[cfg(loom)]
    cond: loom::sync::Condvar,
}

impl Futex {
    /// A word at 0 with no sleepers.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// A word at 0 with no sleepers.
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            lock: loom::sync::Mutex::new(()),
            cond: loom::sync::Condvar::new(),
        }
    }

    /// The current value of the word, to pass to [`Futex::wait`].
    #[inline]
    pub(crate) fn load(&self) -> u32 {
        self.word.load(Ordering::SeqCst)
    }

    /// Sleeps while the word equals `seen`, at most `timeout` (`None`: no limit).
    ///
    /// Under loom a bounded wait is modelled as a spurious return (loom has no clock).
    pub(crate) fn wait(&self, seen: u32, timeout: Option<Duration>) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // Dekker with `wake_all`: either it sees this sleeper or this thread sees its bump.
        // (Explicit fences: loom models SeqCst *fences* exactly, SeqCst accesses only as
        // acquire/release.)
        fence(Ordering::SeqCst);
        #[cfg(loom)]
        {
            if timeout.is_none() {
                let guard = self.lock.lock().unwrap();
                if self.word.load(Ordering::SeqCst) == seen {
                    drop(self.cond.wait(guard).unwrap());
                }
            } else {
                loom::thread::yield_now();
            }
        }
        #[cfg(not(loom))]
        super::os::futex_wait(&self.word, seen, timeout);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Changes the word and wakes every sleeper.
    pub(crate) fn wake_all(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            #[cfg(loom)]
            {
                let _guard = self.lock.lock().unwrap();
                self.cond.notify_all();
            }
            #[cfg(not(loom))]
            super::os::futex_wake_all(&self.word);
        }
    }
}
