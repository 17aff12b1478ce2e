//! The drain/stall/repoint protocol, in Rust, on the [`super::sync`] seam.
//!
//! Everything here runs both in the engine (with `core` atomics, `futex(2)` and
//! `membarrier(2)`) and, under `--cfg loom`, in the loom model at the bottom of this file.
//! The machine-code fast path of a wrapper (`thunk.rs`) is the line-by-line twin of
//! [`fast_enter`] and [`exit`]; loom cannot run assembly, so the model calls these two.
//!
//! # State
//!
//! * [`EngineHot`], one per engine: `stall` (read by every call), the two sequence words the
//!   swapper and the held callers sleep on, the swapping thread's identity.
//! * [`ThreadRec`], one per thread that ever called a wrapper (reused after the thread
//!   exits): one in-flight counter per engine index. Only the owning thread writes its
//!   counters, with plain stores; the swapper reads all of them. No locked instruction and no
//!   shared cache line is written on the call path (the cache-aware rundown idea, taken to one
//!   counter per thread).
//! * The current implementation of each wrapper, published by the swapper while stalled
//!   (the `repoint` step; in the engine a pointer to a version record per wrapper).
//!
//! # The argument, in one paragraph
//!
//! A caller increments its counter, then reads `stall` (with nothing but a compiler barrier
//! between them); the swapper sets `stall`, then runs the process-wide barrier, then sums
//! the counters. After the barrier, every caller either had its increment visible (so the
//! swapper's sum includes it and the drain waits for its decrement) or reads `stall == 1` on
//! its check (so it backs out and is held). A caller that passed the check therefore
//! finishes its call before the drain completes, and it reads the current implementation
//! *after* the check, so the implementation it runs cannot be repointed during its call.
//! Leaving, a caller decrements, then reads `stall`; if set it wakes the swapper (a futex
//! sequence word, so the wake-up cannot be lost). The model checks this with loom.

use std::time::{Duration, Instant};

use super::sync::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Futex, Ordering, caller_barrier,
    fence, process_barrier, spin_loop,
};
use super::{Phase, SwapError};

/// Busy-wait iterations of a held caller before it sleeps on the futex.
#[cfg(not(loom))]
const HOLD_SPINS: u32 = 200;
#[cfg(loom)]
const HOLD_SPINS: u32 = 0;

/// Per-engine state read on every call.
///
/// `stall` is at offset 0: the machine-code fast path reads it as `dword ptr [hot]`.
#[repr(C, align(128))]
pub(crate) struct EngineHot {
    /// Nonzero while the engine is stalled (a swap drains or holds calls).
    pub(crate) stall: AtomicU32,
    /// Nonzero from a completed drain until the stall ends: no call is running and none can
    /// start (a caller that counts itself now sees the stall and undoes its count without
    /// running), so the counters' sum, which such a caller raises for an instant, is not what
    /// runs.
    pub(crate) quiescent: AtomicU32,
    /// Nonzero once the engine is gone: calls abort instead of being held.
    pub(crate) dead: AtomicU32,
    /// Callers leaving during a stall bump this; the swapper sleeps on it while draining.
    pub(crate) drained: Futex,
    /// The swapper bumps this when a stall ends; held callers sleep on it.
    pub(crate) released: Futex,
    /// Identity of the thread running a swap on this engine (0: none).
    pub(crate) swapper: AtomicUsize,
    /// Callers currently held by a stall.
    pub(crate) held: AtomicU32,
}

impl EngineHot {
    /// An engine that is neither stalled nor dead.
    pub(crate) fn new() -> Self {
        Self {
            stall: AtomicU32::new(0),
            quiescent: AtomicU32::new(0),
            dead: AtomicU32::new(0),
            drained: Futex::new(),
            released: Futex::new(),
            swapper: AtomicUsize::new(0),
            held: AtomicU32::new(0),
        }
    }

    /// Callers currently held by a stall.
    pub(crate) fn held(&self) -> u32 {
        self.held.load(Ordering::SeqCst)
    }
}

/// Bytes of a thread's block (production): engine counters at the start, then the wrapper
/// shadow stack; the block is aligned to its size, so the machine code finds the counters by
/// masking the shadow-stack pointer.
pub(crate) const BLOCK: usize = 1 << 16;
/// Offset of the first shadow-stack entry in a thread's block.
pub(crate) const SHADOW_START: usize = 8192;
/// Offset the shadow-stack pointer may not reach (4 KiB kept spare).
pub(crate) const SHADOW_LIMIT: usize = 0xF000;

/// A thread's counters (production: the start of its 64 KiB block).
#[cfg(not(loom))]
struct Counters(core::ptr::NonNull<u8>);

#[cfg(not(loom))]
impl Counters {
    fn new(width: usize) -> Self {
        assert!(
            width * 8 <= SHADOW_START,
            "too many engine counters for the block"
        );
        let layout = std::alloc::Layout::from_size_align(BLOCK, BLOCK).expect("block layout");
        // SAFETY: the layout has a nonzero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(p) = core::ptr::NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self(p)
    }

    fn get(&self, index: usize) -> &AtomicU64 {
        assert!(index * 8 < SHADOW_START);
        #[allow(clippy::cast_ptr_alignment)] // the block is 64 KiB-aligned, index * 8 too
        // SAFETY: the block is zeroed, 64 KiB-aligned and never freed while the registry
        // lives; a zeroed AtomicU64 is a valid 0; index is in bounds (checked above).
        unsafe {
            &*self.0.as_ptr().add(index * 8).cast::<AtomicU64>()
        }
    }
}

#[cfg(not(loom))]
impl Drop for Counters {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(BLOCK, BLOCK).expect("block layout");
        // SAFETY: allocated in `new` with the same layout.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), layout) };
    }
}

/// A thread's counters (loom: a plain array of loom atomics).
#[cfg(loom)]
struct Counters(Box<[AtomicU64]>);

#[cfg(loom)]
impl Counters {
    fn new(width: usize) -> Self {
        Self((0..width).map(|_| AtomicU64::new(0)).collect())
    }

    fn get(&self, index: usize) -> &AtomicU64 {
        &self.0[index]
    }
}

/// One thread's in-flight counters, one per engine index. Reused after the thread exits.
pub(crate) struct ThreadRec {
    counters: Counters,
    in_use: AtomicBool,
    next: *const ThreadRec,
}

// SAFETY: `next` is written once before the record is published and is read-only after;
// the counter block is only accessed through atomics.
unsafe impl Sync for ThreadRec {}
// SAFETY: as above; the record is only ever shared, never moved after publication.
unsafe impl Send for ThreadRec {}

impl ThreadRec {
    /// This thread's in-flight counter for engine `index`.
    pub(crate) fn counter(&self, index: usize) -> &AtomicU64 {
        self.counters.get(index)
    }

    /// Address of the thread's block (production): counters, then the shadow stack.
    #[cfg(not(loom))]
    pub(crate) fn block(&self) -> usize {
        self.counters.0.as_ptr() as usize
    }

    /// No block under loom (the machine code never runs there).
    #[cfg(loom)]
    pub(crate) fn block(&self) -> usize {
        0
    }

    /// An identity for this thread while it owns the record (never 0).
    pub(crate) fn identity(&self) -> usize {
        core::ptr::from_ref(self) as usize
    }
}

/// All thread records: an append-only lock-free list (records are never freed while the
/// registry lives, so the swapper can walk it without locks).
pub(crate) struct Registry {
    head: AtomicPtr<ThreadRec>,
    width: usize,
}

impl Registry {
    /// A registry whose records hold `width` engine counters each.
    pub(crate) fn new(width: usize) -> Self {
        Self {
            head: AtomicPtr::new(core::ptr::null_mut()),
            width,
        }
    }

    /// Claims a free record for the calling thread (reusing one if possible).
    pub(crate) fn claim(&self) -> &ThreadRec {
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: records are never freed while the registry lives.
            let rec = unsafe { &*p };
            if rec
                .in_use
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                return rec;
            }
            p = rec.next.cast_mut();
        }
        let rec = Box::into_raw(Box::new(ThreadRec {
            counters: Counters::new(self.width),
            in_use: AtomicBool::new(true),
            next: core::ptr::null(),
        }));
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            // SAFETY: `rec` is not yet published; we own it.
            unsafe { (*rec).next = head };
            match self
                .head
                .compare_exchange(head, rec, Ordering::SeqCst, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        // SAFETY: published records live as long as the registry.
        unsafe { &*rec }
    }

    /// Returns a record whose thread has exited. A counter left nonzero (a thread that left
    /// an endpoint without returning through the wrapper, e.g. by `pthread_exit`) is
    /// cleared, since a dead thread runs nothing, and `on_cleared(index)` is told.
    pub(crate) fn release(&self, rec: &ThreadRec, mut on_cleared: impl FnMut(usize)) {
        for index in 0..self.width {
            let c = rec.counter(index);
            if c.load(Ordering::Relaxed) != 0 {
                c.store(0, Ordering::Release);
                fence(Ordering::SeqCst);
                on_cleared(index);
            }
        }
        rec.in_use.store(false, Ordering::SeqCst);
    }

    /// Calls in flight on engine `index`, summed over all threads.
    pub(crate) fn sum(&self, index: usize) -> u64 {
        let mut total = 0u64;
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: records are never freed while the registry lives.
            let rec = unsafe { &*p };
            total = total.wrapping_add(rec.counter(index).load(Ordering::Acquire));
            p = rec.next.cast_mut();
        }
        total
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: we own every record; nobody can reach them any more.
            let rec = unsafe { Box::from_raw(p) };
            p = rec.next.cast_mut();
        }
    }
}

/// Why a call was refused instead of admitted or held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The engine was dropped.
    Dead,
    /// The swapping thread itself called a wrapper of the stalled engine (from the
    /// `ProxyStalled` callback): it would wait for itself forever.
    SwapperReentry,
}

/// The fast path of a call's entry, as the machine code does it: count the call, then check
/// the stall flag. On `false` the increment has been undone and the caller must take
/// [`enter`]. After `true`, the caller reads the current implementation.
#[cfg_attr(not(any(loom, test)), allow(dead_code))]
#[inline]
pub(crate) fn fast_enter(hot: &EngineHot, counter: &AtomicU64) -> bool {
    let depth = counter.load(Ordering::Relaxed);
    counter.store(depth + 1, Ordering::Relaxed);
    caller_barrier();
    if hot.stall.load(Ordering::Acquire) == 0 {
        return true;
    }
    counter.store(depth, Ordering::Release);
    false
}

/// The slow path of a call's entry: admits the call (its count taken on `counter`), holding
/// it first while the engine is stalled.
///
/// A thread that already has a call in flight on this engine (an endpoint calling a wrapper
/// of its own extension, directly or through other code) is let through during a stall: the
/// drain is waiting for that thread's outer call anyway, so holding the nested call could
/// only deadlock, and the nested call ends before the outer one, on the same (old) version.
pub(crate) fn enter(hot: &EngineHot, counter: &AtomicU64, me: usize) -> Result<(), Refused> {
    loop {
        let depth = counter.load(Ordering::Relaxed);
        counter.store(depth + 1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if hot.stall.load(Ordering::Acquire) == 0 || depth > 0 {
            return Ok(());
        }
        counter.store(depth, Ordering::Release);
        fence(Ordering::SeqCst);
        // The swapper may have counted our transient increment: tell it to look again.
        hot.drained.wake_all();
        if hot.dead.load(Ordering::Acquire) != 0 {
            return Err(Refused::Dead);
        }
        if hot.swapper.load(Ordering::Acquire) == me {
            return Err(Refused::SwapperReentry);
        }
        wait_released(hot);
    }
}

/// The exit of a call, as the machine code does it: uncount, then wake a draining swapper.
#[cfg_attr(not(any(loom, test)), allow(dead_code))]
#[inline]
pub(crate) fn exit(hot: &EngineHot, counter: &AtomicU64) {
    let depth = counter.load(Ordering::Relaxed);
    counter.store(depth - 1, Ordering::Release);
    caller_barrier();
    if hot.stall.load(Ordering::Relaxed) != 0 {
        exit_slow(hot);
    }
}

/// The slow half of a call's exit during a stall: wake the swapper so it re-counts.
pub(crate) fn exit_slow(hot: &EngineHot) {
    hot.drained.wake_all();
}

/// Holds the calling thread until the current stall ends: a short spin, then the futex.
pub(crate) fn wait_released(hot: &EngineHot) {
    hot.held.fetch_add(1, Ordering::SeqCst);
    let mut spins = 0;
    loop {
        if hot.stall.load(Ordering::Acquire) == 0 {
            break;
        }
        if spins < HOLD_SPINS {
            spins += 1;
            spin_loop();
            continue;
        }
        let seen = hot.released.load();
        if hot.stall.load(Ordering::Acquire) == 0 {
            break;
        }
        hot.released.wait(seen, None);
    }
    hot.held.fetch_sub(1, Ordering::SeqCst);
}

/// Starts a stall: new calls are held from now on; calls already admitted keep running.
pub(crate) fn stall(hot: &EngineHot) {
    hot.stall.store(1, Ordering::SeqCst);
    process_barrier();
}

/// Waits (sleeping, never spinning) until no call is in flight on engine `index`.
/// `Err(n)`: `timeout` elapsed with `n` calls still in flight. `Some(ZERO)` checks once.
pub(crate) fn drain(
    hot: &EngineHot,
    registry: &Registry,
    index: usize,
    timeout: Option<Duration>,
) -> Result<(), u64> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let seen = hot.drained.load();
        let n = registry.sum(index);
        if n == 0 {
            hot.quiescent.store(1, Ordering::SeqCst);
            return Ok(());
        }
        let remaining = match deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(n);
                }
                Some(d - now)
            }
        };
        hot.drained.wait(seen, remaining);
    }
}

/// Ends a stall: held callers proceed (to whatever implementation is current now).
/// Returns the moment the flag cleared (spinning held callers go from then on; sleeping
/// ones once the wake-up that follows reaches them).
pub(crate) fn release(hot: &EngineHot) -> Instant {
    hot.quiescent.store(0, Ordering::SeqCst);
    hot.stall.store(0, Ordering::SeqCst);
    let released = Instant::now();
    hot.released.wake_all();
    released
}

/// Which way [`swap`] asks its `repoint` to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Publish the new implementations (one new generation).
    Forward,
    /// Roll back: publish the old implementations again (one more new generation).
    Back,
}

/// Durations measured by [`swap`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timings {
    /// Stall start → no call in flight.
    pub(crate) drain: Duration,
    /// Stall start → the stall flag cleared.
    pub(crate) stall: Duration,
    /// Calls in flight when the stall began.
    pub(crate) in_flight_at_stall: u64,
}

/// The swap protocol: `PreProcess` → stall + drain (timeout) → `ProxyStalled` → repoint →
/// release → `PostProcess`, with complete rollback on any failure. See the engine docs for
/// the exact rules; this is the one implementation, run by the engine and by the model.
///
/// `own_calls` is the number of calls the swapping thread itself has in flight on this
/// engine: if nonzero, the drain can never complete (it would wait for its own caller), so
/// the swap fails at once as a drain timeout, after `PreProcess`, with nothing changed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn swap(
    hot: &EngineHot,
    registry: &Registry,
    index: usize,
    me: usize,
    own_calls: u64,
    timeout: Option<Duration>,
    phases: &mut dyn FnMut(Phase) -> Result<(), i32>,
    repoint: &mut dyn FnMut(Direction),
) -> Result<Timings, SwapError> {
    phases(Phase::PreProcess).map_err(|status| SwapError::Callback {
        phase: Phase::PreProcess,
        status,
    })?;
    if own_calls > 0 {
        return Err(SwapError::DrainTimeout {
            in_flight: registry.sum(index).max(own_calls),
        });
    }
    hot.swapper.store(me, Ordering::SeqCst);
    let result = stalled_part(hot, registry, index, timeout, phases, repoint);
    hot.swapper.store(0, Ordering::SeqCst);
    result
}

fn stalled_part(
    hot: &EngineHot,
    registry: &Registry,
    index: usize,
    timeout: Option<Duration>,
    phases: &mut dyn FnMut(Phase) -> Result<(), i32>,
    repoint: &mut dyn FnMut(Direction),
) -> Result<Timings, SwapError> {
    let start = Instant::now();
    stall(hot);
    let in_flight_at_stall = registry.sum(index);
    if let Err(in_flight) = drain(hot, registry, index, timeout) {
        release(hot);
        return Err(SwapError::DrainTimeout { in_flight });
    }
    let drained = start.elapsed();
    if let Err(status) = phases(Phase::ProxyStalled) {
        release(hot);
        return Err(SwapError::Callback {
            phase: Phase::ProxyStalled,
            status,
        });
    }
    repoint(Direction::Forward);
    let stalled = release(hot) - start;
    if let Err(status) = phases(Phase::PostProcess) {
        stall(hot);
        if let Err(in_flight) = drain(hot, registry, index, timeout) {
            release(hot);
            return Err(SwapError::RollbackTimeout { status, in_flight });
        }
        repoint(Direction::Back);
        release(hot);
        return Err(SwapError::Callback {
            phase: Phase::PostProcess,
            status,
        });
    }
    Ok(Timings {
        drain: drained,
        stall: stalled,
        in_flight_at_stall,
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_admits_when_running_and_backs_out_when_stalled() {
        let hot = EngineHot::new();
        let registry = Registry::new(4);
        let rec = registry.claim();
        let c = rec.counter(1);
        assert!(fast_enter(&hot, c));
        assert_eq!(registry.sum(1), 1);
        exit(&hot, c);
        assert_eq!(registry.sum(1), 0);
        hot.stall.store(1, Ordering::SeqCst);
        assert!(!fast_enter(&hot, c));
        assert_eq!(registry.sum(1), 0, "a refused call must leave no count");
    }

    #[test]
    fn a_thread_with_a_call_in_flight_is_let_through_a_stall() {
        let hot = EngineHot::new();
        let registry = Registry::new(4);
        let rec = registry.claim();
        let c = rec.counter(2);
        assert!(fast_enter(&hot, c));
        hot.stall.store(1, Ordering::SeqCst);
        assert_eq!(enter(&hot, c, rec.identity()), Ok(()));
        assert_eq!(registry.sum(2), 2);
        exit(&hot, c);
        exit(&hot, c);
        assert_eq!(registry.sum(2), 0);
    }

    #[test]
    fn the_swapping_thread_is_refused_and_a_dead_engine_too() {
        let hot = EngineHot::new();
        let registry = Registry::new(4);
        let rec = registry.claim();
        hot.stall.store(1, Ordering::SeqCst);
        hot.swapper.store(rec.identity(), Ordering::SeqCst);
        assert_eq!(
            enter(&hot, rec.counter(0), rec.identity()),
            Err(Refused::SwapperReentry)
        );
        hot.dead.store(1, Ordering::SeqCst);
        assert_eq!(
            enter(&hot, rec.counter(0), rec.identity()),
            Err(Refused::Dead)
        );
        assert_eq!(registry.sum(0), 0);
    }

    #[test]
    fn a_drain_with_a_call_in_flight_times_out_with_its_count() {
        let hot = EngineHot::new();
        let registry = Registry::new(4);
        let rec = registry.claim();
        assert!(fast_enter(&hot, rec.counter(3)));
        stall(&hot);
        let t = Instant::now();
        assert_eq!(
            drain(&hot, &registry, 3, Some(Duration::from_millis(20))),
            Err(1)
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
        let _ = release(&hot);
        exit(&hot, rec.counter(3));
        stall(&hot);
        assert_eq!(drain(&hot, &registry, 3, Some(Duration::ZERO)), Ok(()));
        let _ = release(&hot);
    }

    #[test]
    fn a_released_record_is_reused_and_cleared() {
        let registry = Registry::new(4);
        let rec = registry.claim();
        let first = rec.identity();
        rec.counter(1).store(3, Ordering::SeqCst);
        let mut cleared = Vec::new();
        registry.release(rec, |i| cleared.push(i));
        assert_eq!(cleared, vec![1]);
        assert_eq!(registry.claim().identity(), first);
        assert_eq!(registry.sum(1), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    //! Loom model of the protocol: 2 callers + 1 swapper, every interleaving (bounded by
    //! `LOOM_MAX_PREEMPTIONS`). Run:
    //! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p driver-proxy-host --release --lib loom`.

    use super::*;
    use loom::sync::Arc;

    const INDEX: usize = 1;

    /// The model world: one engine, one wrapper whose implementation is `current`
    /// (1 = v1, 2 = v2, 3 = v1 again after a rollback).
    struct World {
        hot: EngineHot,
        registry: Registry,
        current: AtomicUsize,
        /// Highest version whose drain has completed (its calls may no longer run).
        retired: AtomicUsize,
        /// Calls admitted and not yet left (instrumentation, not protocol).
        admitted: AtomicU64,
        /// Calls executing an implementation right now (instrumentation, not protocol).
        running: AtomicU64,
        /// Calls that ran each version (index = version).
        ran: [AtomicU64; 4],
    }

    impl World {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                hot: EngineHot::new(),
                registry: Registry::new(2),
                current: AtomicUsize::new(1),
                retired: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                running: AtomicU64::new(0),
                ran: [
                    AtomicU64::new(0),
                    AtomicU64::new(0),
                    AtomicU64::new(0),
                    AtomicU64::new(0),
                ],
            })
        }

        /// One call through the wrapper. `mutant`: the broken protocol that checks the
        /// stall flag only before counting the call (no post-increment re-check) and reads
        /// the implementation early.
        fn call(&self, mutant: bool) {
            let rec = self.registry.claim();
            let counter = rec.counter(INDEX);
            let version;
            if mutant {
                if self.hot.stall.load(Ordering::Acquire) != 0 {
                    enter(&self.hot, counter, rec.identity()).unwrap();
                    version = self.current.load(Ordering::Acquire);
                } else {
                    version = self.current.load(Ordering::Acquire);
                    let d = counter.load(Ordering::Relaxed);
                    counter.store(d + 1, Ordering::Relaxed);
                }
            } else {
                if !fast_enter(&self.hot, counter) {
                    enter(&self.hot, counter, rec.identity()).unwrap();
                }
                version = self.current.load(Ordering::Acquire);
            }
            // The call body: it runs `version`, which must not have been drained already.
            self.admitted.fetch_add(1, Ordering::SeqCst);
            self.running.fetch_add(1, Ordering::SeqCst);
            assert!(
                self.retired.load(Ordering::SeqCst) < version || version == 3,
                "a call ran version {version} after its drain completed"
            );
            self.ran[version].fetch_add(1, Ordering::SeqCst);
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            exit(&self.hot, counter);
            self.registry.release(rec, |_| {});
        }

        fn swap(
            &self,
            timeout: Option<Duration>,
            fail: Option<Phase>,
        ) -> Result<Timings, SwapError> {
            let mut phases = |phase: Phase| {
                if phase == Phase::ProxyStalled {
                    // (The registry sum may show a transient +1: a caller that counted
                    // itself, saw the stall and is about to back out. Admitted calls are
                    // what must be zero.)
                    assert_eq!(
                        self.admitted.load(Ordering::SeqCst),
                        0,
                        "ProxyStalled with a call admitted"
                    );
                    assert_eq!(
                        self.running.load(Ordering::SeqCst),
                        0,
                        "ProxyStalled with a call running"
                    );
                }
                if fail == Some(phase) { Err(-1) } else { Ok(()) }
            };
            let mut repoint = |d: Direction| match d {
                Direction::Forward => {
                    // v1 has been drained by now.
                    self.retired.store(1, Ordering::SeqCst);
                    self.current.store(2, Ordering::Release);
                }
                Direction::Back => {
                    // v2 has been drained by now (rollback stall).
                    self.retired.store(2, Ordering::SeqCst);
                    self.current.store(3, Ordering::Release);
                }
            };
            let me = 0x1000;
            swap(
                &self.hot,
                &self.registry,
                INDEX,
                me,
                0,
                timeout,
                &mut phases,
                &mut repoint,
            )
        }
    }

    fn two_callers_one_swapper(mutant: bool, timeout: Option<Duration>, fail: Option<Phase>) {
        loom::model(move || {
            let w = World::new();
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let w = w.clone();
                    loom::thread::spawn(move || w.call(mutant))
                })
                .collect();
            let result = w.swap(timeout, fail);
            for c in callers {
                c.join().unwrap();
            }
            let calls: u64 = w.ran.iter().map(|r| r.load(Ordering::SeqCst)).sum();
            assert_eq!(calls, 2, "a call was lost");
            assert_eq!(w.registry.sum(INDEX), 0);
            assert_eq!(w.hot.stall.load(Ordering::SeqCst), 0, "left stalled");
            match (timeout, fail, result) {
                (None, None, Ok(_)) => assert_eq!(w.current.load(Ordering::SeqCst), 2),
                (_, Some(Phase::PostProcess), Err(SwapError::Callback { .. })) => {
                    assert_eq!(w.current.load(Ordering::SeqCst), 3);
                }
                (_, Some(_), Err(SwapError::Callback { .. }))
                | (Some(_), None, Err(SwapError::DrainTimeout { .. })) => {
                    assert_eq!(
                        w.current.load(Ordering::SeqCst),
                        1,
                        "a failed swap changed something"
                    );
                }
                (Some(_), None, Ok(_)) => assert_eq!(w.current.load(Ordering::SeqCst), 2),
                (t, f, r) => panic!("unexpected outcome {r:?} for timeout {t:?}, failure {f:?}"),
            }
        });
    }

    #[test]
    fn loom_no_call_runs_on_a_drained_version_and_stalled_phase_sees_none() {
        two_callers_one_swapper(false, None, None);
    }

    #[test]
    fn loom_drain_timeout_rolls_back_and_changes_nothing() {
        two_callers_one_swapper(false, Some(Duration::ZERO), None);
    }

    #[test]
    fn loom_stalled_phase_failure_rolls_back() {
        two_callers_one_swapper(false, None, Some(Phase::ProxyStalled));
    }

    #[test]
    fn loom_post_phase_failure_drains_new_version_and_rolls_back() {
        two_callers_one_swapper(false, None, Some(Phase::PostProcess));
    }

    #[test]
    #[should_panic(expected = "after its drain completed")]
    fn loom_mutant_without_post_increment_recheck_is_caught() {
        two_callers_one_swapper(true, None, None);
    }
}
