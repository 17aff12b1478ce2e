//! The wrapper engine: real code addresses that forward every call to the current
//! implementation of an endpoint, count the calls in flight, and swap implementations with
//! the DriverProxy protocol (drain, stall, repoint, release) and complete rollback.
//!
//! One [`Engine`] serves one DriverProxy extension. The kernel model (`kernel/`, `exports.rs`)
//! builds the DDI on top of it; nothing here knows about driver objects or `NTSTATUS`.
//!
//! # Semantics (the strictest reading of the DDI documentation)
//!
//! * **Wrapper.** [`Engine::add_endpoint`] returns a [`WrapperId`] whose
//!   [`address`](Engine::wrapper_address) is a distinct code address, valid for the engine's
//!   life. Calling it runs the current implementation with the caller's registers and stack
//!   arguments unchanged, for callers of *both* x86-64 conventions (System V and Microsoft
//!   x64 (`extern "win64"`), as `.sys` code uses): any number of arguments of any class
//!   (integer, float, stack, a hidden struct-return pointer, variadic); any return in
//!   rax/rdx/xmm0/xmm1/st0; `al` of a System V variadic call preserved; every callee-saved
//!   register of both conventions preserved (System V rbx, rbp, r12–r15; Win64 also rsi,
//!   rdi, xmm6–15). The wrapper clobbers r10 and r11 (scratch in both conventions,
//!   arguments in neither) and the flags. Wrapper calls may nest 3,328 deep per thread
//!   (beyond, the process aborts with a message; a Windows kernel stack would have
//!   overflowed long before).
//! * **Counting.** A call is counted in flight from the moment it passes the wrapper's
//!   check until the implementation returns to the wrapper, on the generation that was
//!   current when it passed. The drain is per engine (= per extension): while the
//!   `ProxyStalled` callback runs, no call is running in *any* endpoint of the engine.
//! * **Swap** ([`Engine::swap`]): `PreProcess` callback (calls still flow) → stall: new calls
//!   are held and the swap waits, sleeping on a futex, until the calls in flight drain to 0,
//!   at most the drain timeout → `ProxyStalled` callback while calls are held → every changed
//!   wrapper repointed (one new generation; a held caller sees all changes or none) →
//!   release: held calls run the *new* implementations → `PostProcess` callback.
//!   Swaps on one engine are serialised.
//! * **Rollback.** A `PreProcess` error: nothing was done. Drain timeout: held calls are
//!   released to the old implementations, nothing changed, `ProxyStalled` and `PostProcess` are
//!   not delivered ([`SwapError::DrainTimeout`]). A `ProxyStalled` error: released unchanged.
//!   A `PostProcess` error: the engine stalls again, drains the new implementations (same
//!   timeout), repoints every changed wrapper back to its old implementation (one more
//!   generation) and releases; the callbacks are not called again during the rollback. If
//!   that second drain times out the new implementations stay
//!   ([`SwapError::RollbackTimeout`]).
//! * **Held callers** spin for a few microseconds, then sleep on a futex until the stall
//!   ends; the swapper sleeps on another futex while draining (a caller leaving during a
//!   stall wakes it). Nothing spins for long on the 2-CPU machines this runs on.
//! * **An endpoint calling a wrapper of its own engine during a drain** (directly, or via
//!   other code on the same thread) is let through, to the old implementation: the thread
//!   already holds a call the drain is waiting for, so holding the nested call could only
//!   deadlock; the nested call ends before its outer call, so `ProxyStalled` still sees zero
//!   calls. A wrapper of the engine called on *another* thread during the drain is held as
//!   usual (if the draining call waits for that thread, the drain times out and the swap
//!   rolls back).
//! * **A swap started from inside an endpoint of the same engine** can never drain (it would
//!   wait for its own caller): it fails at once with [`SwapError::DrainTimeout`] after
//!   `PreProcess`, with nothing changed.
//! * **The `ProxyStalled` callback calling a wrapper of its own engine** (the DDI says not
//!   to): the process aborts with a message naming the violation (holding the call would
//!   wait for itself forever; letting it run would break "no call runs while stalled").
//! * **Poisoning** ([`Engine::set_poison_retired`]): when on, every version record a swap
//!   retires has its target replaced by a stub that aborts the process with a message naming
//!   the implementation, the wrapper and the generations. With a correct protocol no call can
//!   reach a retired record (a call reads the current record only after its check, and a
//!   record is retired only after the drain); a late call is therefore loud, never a silent
//!   run of old code. With poisoning off, retired records are recycled.
//! * **Dropping the engine** points its wrappers at a dead engine that is always stalled:
//!   a call to a wrapper of a dropped engine aborts with a message. Wrapper addresses are
//!   reused by later engines only after every never-used one is taken, oldest first.
//! * **Threads.** A thread's first call registers it (slow path). A thread that exits inside
//!   an endpoint without returning through the wrapper (`pthread_exit`) has its counts
//!   cleared at thread exit. `longjmp` out of an endpoint leaks the count until the thread
//!   exits (the drain times out meanwhile). Unwinding (a Rust panic) through a wrapper is not
//!   supported: the process aborts (the machine code carries no unwind tables; kernel
//!   endpoints cannot unwind across the DDI boundary either).
//!
//! # Design, measured
//!
//! The prototype's general wrapper (return-address rewrite + thread-local shadow stack +
//! Rust helpers on every call) cost ~14× a plain indirect call and is incompatible with
//! hardware shadow stacks (CET). The notes proposed a wrapper that *calls* the
//! implementation, copying a fixed number of stack slots. Both call-based variants were
//! built and measured side by side against a plain indirect call: a bare call-through thunk
//! without counting (the floor of any wrapper that regains control after the call), a call
//! that copies 13 stack slots (12 arguments and a hidden pointer), one that copies none (valid
//! only for at most 6 integer arguments), and the design chosen below, which copies nothing
//! and costs a little more than the floor for *every* signature. The copy is what the other
//! designs pay for. The numbers depend on the machine: measure them with
//! `cargo bench -p driver-proxy-host --bench engine`, which prints every ratio from one run
//! (`docs/host-kernel.md#benchmarks`). The chosen design works like this:
//!
//! * the stub is `endbr64; lea r11, [slot]; jmp common` (16 bytes);
//! * the common path pops the caller's return address into a per-thread shadow-stack entry
//!   (next to the thread's counters, located by a local-exec TLS word), counts the call,
//!   re-checks the stall flag, and `call`s the implementation from the caller's own stack
//!   position: the implementation sees the caller's stack arguments where the caller put
//!   them. On return it pushes the caller's return address back and `ret`s. Every `call`
//!   pairs with its `ret` (return prediction works) and the return addresses a CET shadow
//!   stack sees match: this is not return-address *rewriting*;
//! * the count is a **per-thread** counter per engine, updated with a plain `inc`/`dec`
//!   (no `lock` prefix, no shared cache line): a locked read-modify-write alone costs about
//!   as much as a whole indirect call (the benchmark above measures it), and a shared counter
//!   bounces between the callers' caches;
//! * the ordering a plain increment lacks (a store followed by a load may be reordered) is
//!   supplied by the *swapper*, which runs `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`
//!   after setting the stall flag and before reading the counters (the asymmetric barrier of
//!   liburcu's memb flavour and of `FlushProcessWriteBuffers`); a swap pays a few
//!   microseconds for it, a call pays nothing;
//! * only a stalled engine or a thread's first call takes the slow path into Rust.
//!
//! Costs: `cargo bench -p driver-proxy-host --bench engine` prints them with ratios to a
//! plain indirect call measured side by side in one run. One run on the project machine:
//! wrapper 3.0× single-threaded (the bare call-through floor 2.4× in the same run), 2.7×
//! with 2 callers, 3.3× with 2 callers and a swapper every millisecond; swap stall median
//! 16 µs, p99 33 µs (3,000 swaps, a swap every 170 µs, 2 callers calling). The project's
//! original targets (≤ 2× and ≤ 2.5×) are below the floor of a counting wrapper on this
//! machine, whose second call/return pair alone costs as much as the plain indirect call.
//!
//! Limits of the design: the crate must be linked into an executable (local-exec TLS), and
//! unwinders stop at a wrapper frame (the caller's return address is in the shadow stack).
//!
//! # Verification
//!
//! The Rust half of the protocol (`protocol`) is written on the `sync` seam and checked
//! by a loom model (2 callers + 1 swapper; `RUSTFLAGS="--cfg loom"`); the machine-code fast
//! path is its line-by-line twin. Tests in `host/tests/engine_*.rs` cover every signature
//! class in both conventions with register canaries, nesting, recursion and tail calls,
//! drains, timeouts and rollbacks, poisoning, and a stress run with a mutation check.
//!
//! Only x86-64 Linux runs wrappers; elsewhere [`Engine::new`] returns
//! [`EngineError::Unsupported`] (the crate still compiles).

// Off x86-64 Linux no wrapper can exist; the protocol still compiles (and is model-checked)
// there, but the machine-code side that uses it does not.
#[cfg_attr(
    not(all(target_arch = "x86_64", target_os = "linux")),
    allow(dead_code)
)]
pub(crate) mod os;
#[cfg_attr(
    not(all(target_arch = "x86_64", target_os = "linux")),
    allow(dead_code)
)]
pub(crate) mod protocol;
#[cfg_attr(
    not(all(target_arch = "x86_64", target_os = "linux")),
    allow(dead_code)
)]
pub(crate) mod sync;
#[cfg_attr(
    not(all(target_arch = "x86_64", target_os = "linux")),
    allow(dead_code)
)]
pub(crate) mod thunk;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use protocol::{Direction, EngineHot};
use thunk::{SLOTS, Version};

/// Configuration of an [`Engine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most endpoints (wrappers) this engine may create.
    pub max_endpoints: usize,
    /// Drain timeout of [`Engine::swap`].
    pub drain_timeout: Duration,
}

impl Default for EngineConfig {
    /// 256 endpoints, 5 s drain timeout.
    fn default() -> Self {
        Self {
            max_endpoints: 256,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Identifies a wrapper (process-wide unique while its engine lives).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct WrapperId(u32);

impl WrapperId {
    /// The wrapper's slot number (stable for the engine's life).
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        self.0
    }
}

/// Phase of a swap, as delivered to the callback (DDI `DRIVER_PROXY_REGISTER_CALLBACK_PHASE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Phase {
    /// Before the switch; calls still flow.
    PreProcess,
    /// Calls are held and none is in flight.
    ProxyStalled,
    /// After the switch; calls flow (to the new implementations).
    PostProcess,
}

impl Phase {
    /// The DDI value: `DriverProxyRegisterCallbackPreProcess` (0), `…ProxyStalled` (1),
    /// `…PostProcess` (2), as [`crate::ddi`] reads them.
    #[must_use]
    pub const fn as_raw(self) -> crate::ddi::DRIVER_PROXY_REGISTER_CALLBACK_PHASE {
        match self {
            Self::PreProcess => crate::ddi::DriverProxyRegisterCallbackPreProcess,
            Self::ProxyStalled => crate::ddi::DriverProxyRegisterCallbackProxyStalled,
            Self::PostProcess => crate::ddi::DriverProxyRegisterCallbackPostProcess,
        }
    }
}

/// Why an engine or a wrapper could not be created.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine's `max_endpoints`, or the process's wrapper pool, is exhausted.
    OutOfWrappers,
    /// Too many engines alive in the process at once (1023).
    OutOfEngines,
    /// A null code address was given as an implementation.
    NullTarget,
    /// This host cannot run wrappers (not x86-64 Linux, or no XSAVE).
    Unsupported,
}

impl core::fmt::Display for EngineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::OutOfWrappers => "out of wrappers",
            Self::OutOfEngines => "too many engines alive",
            Self::NullTarget => "null implementation address",
            Self::Unsupported => "wrappers are only supported on x86-64 Linux with XSAVE",
        })
    }
}

impl std::error::Error for EngineError {}

/// Why a swap failed. Every failure leaves the engine as it was before the swap, except
/// [`SwapError::RollbackTimeout`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SwapError {
    /// The callback failed in `phase` with `status`; the swap was rolled back.
    Callback {
        /// The phase whose callback failed.
        phase: Phase,
        /// What it returned.
        status: i32,
    },
    /// Calls were still in flight when the drain timeout elapsed (or the swap was started
    /// from inside an endpoint of this engine); nothing changed.
    DrainTimeout {
        /// Calls in flight when it gave up.
        in_flight: u64,
    },
    /// `PostProcess` failed with `status`, and the rollback's drain of the new
    /// implementations timed out: the new implementations stay in place.
    RollbackTimeout {
        /// What `PostProcess` returned.
        status: i32,
        /// Calls in flight on the new implementations when the rollback gave up.
        in_flight: u64,
    },
    /// A change named a wrapper of another engine, or a null implementation; nothing was
    /// done (no callback delivered).
    InvalidChange {
        /// The offending wrapper.
        id: WrapperId,
    },
}

impl core::fmt::Display for SwapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Callback { phase, status } => {
                write!(
                    f,
                    "swap callback failed in {phase:?} with status {status:#x}"
                )
            }
            Self::DrainTimeout { in_flight } => {
                write!(f, "drain timed out with {in_flight} call(s) in flight")
            }
            Self::RollbackTimeout { status, in_flight } => write!(
                f,
                "PostProcess failed with {status:#x} and the rollback's drain timed out with \
                 {in_flight} call(s) in flight"
            ),
            Self::InvalidChange { id } => write!(f, "invalid change for wrapper {id:?}"),
        }
    }
}

impl std::error::Error for SwapError {}

/// What a successful swap measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SwapReport {
    /// Stall start → no call in flight (includes the process-wide barrier).
    pub drain: Duration,
    /// Stall start → stall flag cleared (drain + `ProxyStalled` callback + repoint): how long
    /// new calls were held (a held caller asleep in the kernel then needs its wake-up).
    pub stall: Duration,
    /// The whole swap, `PreProcess` to the end of `PostProcess`.
    pub total: Duration,
    /// Calls in flight when the stall began.
    pub in_flight_at_stall: u64,
    /// The generation now current.
    pub generation: u64,
}

/// Mutable state of an engine (under a mutex; never touched by the call path).
///
/// Version records are boxed individually: the machine code holds their addresses, so they
/// must never move when the vectors grow.
#[allow(clippy::vec_box)]
struct State {
    /// Slots owned, in creation order.
    slots: Vec<u32>,
    /// Live version record per slot.
    live: HashMap<u32, Box<Version>>,
    /// Retired, poisoned records (kept: a late call must find the poison).
    poisoned: Vec<Box<Version>>,
    /// Retired records to reuse.
    spare: Vec<Box<Version>>,
    /// Current generation.
    generation: u64,
}

/// The wrapper engine of one DriverProxy extension. `Send + Sync`; share it with `Arc`.
pub struct Engine {
    uid: u64,
    index: usize,
    hot: &'static EngineHot,
    config: EngineConfig,
    mutant: bool,
    state: Mutex<State>,
    swap_lock: Mutex<()>,
    poison: AtomicBool,
    swaps: AtomicU64,
    failed_swaps: AtomicU64,
    /// The report of the last successful swap.
    last_report: Mutex<Option<SwapReport>>,
}

impl core::fmt::Debug for Engine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("index", &self.index)
            .field("generation", &self.generation())
            .field("endpoints", &self.endpoint_count())
            .finish_non_exhaustive()
    }
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Engine {
    /// A new engine with no endpoints.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unsupported`] off x86-64 Linux or without XSAVE;
    /// [`EngineError::OutOfEngines`] with 1023 engines alive.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        Self::build(config, false)
    }

    fn build(config: EngineConfig, mutant: bool) -> Result<Self, EngineError> {
        thunk::check_cpu().map_err(|_| EngineError::Unsupported)?;
        os::init();
        thunk::init();
        let index = thunk::alloc_index().ok_or(EngineError::OutOfEngines)?;
        Ok(Self {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            index,
            hot: thunk::hot(index),
            config,
            mutant,
            state: Mutex::new(State {
                slots: Vec::new(),
                live: HashMap::new(),
                poisoned: Vec::new(),
                spare: Vec::new(),
                generation: 1,
            }),
            swap_lock: Mutex::new(()),
            poison: AtomicBool::new(false),
            swaps: AtomicU64::new(0),
            failed_swaps: AtomicU64::new(0),
            last_report: Mutex::new(None),
        })
    }

    /// The configuration this engine was created with.
    #[must_use]
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// A new wrapper forwarding to `target` (a code address). Wrappers stay valid for the
    /// engine's life. Safe by itself: calling the wrapper is what requires `target` to be
    /// code with the signature the caller uses.
    ///
    /// # Errors
    ///
    /// [`EngineError::NullTarget`] for 0; [`EngineError::OutOfWrappers`] past
    /// `max_endpoints` or when the process's pool (16384) is exhausted.
    pub fn add_endpoint(&self, target: usize) -> Result<WrapperId, EngineError> {
        if target == 0 {
            return Err(EngineError::NullTarget);
        }
        let mut st = lock(&self.state);
        if st.slots.len() >= self.config.max_endpoints {
            return Err(EngineError::OutOfWrappers);
        }
        let slot = thunk::alloc_slot(self.mutant).ok_or(EngineError::OutOfWrappers)?;
        let generation = st.generation;
        let version = Self::record(&mut st, slot, target, generation);
        let s = &SLOTS[slot as usize];
        s.owner.store(self.uid, Ordering::SeqCst);
        s.ctr_off.store(self.index * 8, Ordering::SeqCst);
        s.hot
            .store(core::ptr::from_ref(self.hot).cast_mut(), Ordering::SeqCst);
        s.current
            .store(core::ptr::from_ref(&*version).cast_mut(), Ordering::SeqCst);
        st.live.insert(slot, version);
        st.slots.push(slot);
        Ok(WrapperId(slot))
    }

    #[allow(clippy::unnecessary_box_returns)] // the record's address is published
    fn record(st: &mut State, slot: u32, target: usize, generation: u64) -> Box<Version> {
        if let Some(mut v) = st.spare.pop() {
            v.target.store(target, Ordering::Relaxed);
            v.implementation = target;
            v.generation = generation;
            v.slot = slot;
            v
        } else {
            Box::new(Version {
                target: std::sync::atomic::AtomicUsize::new(target),
                implementation: target,
                generation,
                slot,
            })
        }
    }

    fn owns(&self, id: WrapperId) -> bool {
        SLOTS
            .get(id.0 as usize)
            .is_some_and(|s| s.owner.load(Ordering::SeqCst) == self.uid)
    }

    /// The code address callers call.
    ///
    /// # Panics
    ///
    /// If `id` is not a wrapper of this engine.
    #[must_use]
    pub fn wrapper_address(&self, id: WrapperId) -> usize {
        assert!(self.owns(id), "{id:?} is not a wrapper of this engine");
        thunk::stub_address(id.0 as usize)
    }

    /// The wrapper of this engine whose code address is `address`, if any.
    #[must_use]
    pub fn wrapper_at(&self, address: usize) -> Option<WrapperId> {
        let slot = thunk::slot_at(address)?;
        let id = WrapperId(u32::try_from(slot).ok()?);
        self.owns(id).then_some(id)
    }

    /// The implementation `id` currently forwards to.
    ///
    /// # Panics
    ///
    /// If `id` is not a wrapper of this engine.
    #[must_use]
    pub fn current_target(&self, id: WrapperId) -> usize {
        assert!(self.owns(id), "{id:?} is not a wrapper of this engine");
        lock(&self.state).live[&id.0].implementation
    }

    /// The wrappers of this engine, in creation order.
    #[must_use]
    pub fn wrappers(&self) -> Vec<WrapperId> {
        lock(&self.state)
            .slots
            .iter()
            .map(|&s| WrapperId(s))
            .collect()
    }

    /// Number of wrappers of this engine.
    #[must_use]
    pub fn endpoint_count(&self) -> usize {
        lock(&self.state).slots.len()
    }

    /// The current generation (1 at creation; each repoint, including a rollback's, adds 1).
    #[must_use]
    pub fn generation(&self) -> u64 {
        lock(&self.state).generation
    }

    /// The swap protocol with the configured drain timeout. See the module docs.
    ///
    /// `changes` may name any subset of this engine's wrappers; `phases` is called with
    /// each phase in order and may fail it with a status.
    ///
    /// # Errors
    ///
    /// See [`SwapError`]; every error but `RollbackTimeout` leaves the engine unchanged.
    pub fn swap(
        &self,
        changes: &[(WrapperId, usize)],
        phases: &mut dyn FnMut(Phase) -> Result<(), i32>,
    ) -> Result<SwapReport, SwapError> {
        self.swap_with_timeout(changes, phases, self.config.drain_timeout)
    }

    /// [`Engine::swap`] with an explicit drain timeout.
    ///
    /// # Errors
    ///
    /// See [`SwapError`].
    pub fn swap_with_timeout(
        &self,
        changes: &[(WrapperId, usize)],
        phases: &mut dyn FnMut(Phase) -> Result<(), i32>,
        drain_timeout: Duration,
    ) -> Result<SwapReport, SwapError> {
        for &(id, target) in changes {
            if !self.owns(id) || target == 0 {
                return Err(SwapError::InvalidChange { id });
            }
        }
        let _serial = lock(&self.swap_lock);
        let start = std::time::Instant::now();
        let registry = thunk::registry();
        let me = thunk::current_thread();
        let own_calls = me.counter(self.index).load(Ordering::SeqCst);
        let mut old: Vec<(u32, usize)> = Vec::new();
        let mut repoint = |direction: Direction| {
            let mut st = lock(&self.state);
            st.generation += 1;
            let generation = st.generation;
            let plan: Vec<(u32, usize)> = match direction {
                Direction::Forward => {
                    old = changes
                        .iter()
                        .map(|&(id, _)| (id.0, st.live[&id.0].implementation))
                        .collect();
                    changes.iter().map(|&(id, t)| (id.0, t)).collect()
                }
                Direction::Back => old.iter().rev().copied().collect(),
            };
            for (slot, target) in plan {
                let fresh = Self::record(&mut st, slot, target, generation);
                SLOTS[slot as usize]
                    .current
                    .store(core::ptr::from_ref(&*fresh).cast_mut(), Ordering::Release);
                if let Some(retired) = st.live.insert(slot, fresh) {
                    self.retire(&mut st, retired, generation);
                }
            }
        };
        let result = protocol::swap(
            self.hot,
            registry,
            self.index,
            me.identity(),
            own_calls,
            Some(drain_timeout),
            phases,
            &mut repoint,
        );
        match result {
            Ok(t) => {
                let report = SwapReport {
                    drain: t.drain,
                    stall: t.stall,
                    total: start.elapsed(),
                    in_flight_at_stall: t.in_flight_at_stall,
                    generation: self.generation(),
                };
                *lock(&self.last_report) = Some(report);
                self.swaps.fetch_add(1, Ordering::Relaxed);
                Ok(report)
            }
            Err(e) => {
                self.failed_swaps.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn retire(&self, st: &mut State, retired: Box<Version>, by_generation: u64) {
        if self.poison.load(Ordering::SeqCst) {
            let address = core::ptr::from_ref(&*retired) as usize;
            lock(&thunk::POISONED)
                .get_or_insert_with(HashMap::new)
                .insert(
                    address,
                    (
                        retired.implementation,
                        retired.generation,
                        retired.slot,
                        by_generation,
                    ),
                );
            retired
                .target
                .store(thunk::poison_address(), Ordering::SeqCst);
            st.poisoned.push(retired);
        } else {
            st.spare.push(retired);
        }
    }

    /// Calls running in this engine's implementations now (a snapshot; all on the current
    /// generation except during a drain). From a completed drain until the stall ends
    /// (`ProxyStalled`, the repoint) it is 0: no call runs then, although a caller that has
    /// just counted itself and is about to see the stall and undo its count raises the
    /// counters for an instant.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        if self.hot.quiescent.load(Ordering::SeqCst) != 0 {
            return 0;
        }
        thunk::registry().sum(self.index)
    }

    /// Callers held by a stall right now.
    #[must_use]
    pub fn held_callers(&self) -> u32 {
        self.hot.held()
    }

    /// Whether a swap is stalling this engine right now.
    #[must_use]
    pub fn is_stalled(&self) -> bool {
        self.hot.stall.load(Ordering::SeqCst) != 0
    }

    /// Turns poisoning of retired implementations on or off for the swaps that follow.
    pub fn set_poison_retired(&self, on: bool) {
        self.poison.store(on, Ordering::SeqCst);
    }

    /// Whether poisoning is on.
    #[must_use]
    pub fn poison_retired(&self) -> bool {
        self.poison.load(Ordering::SeqCst)
    }

    /// Successful swaps so far.
    #[must_use]
    pub fn swaps_completed(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    /// The report of the last successful swap, if any.
    #[must_use]
    pub fn last_swap(&self) -> Option<SwapReport> {
        *lock(&self.last_report)
    }

    /// Failed (rolled back) swaps so far.
    #[must_use]
    pub fn swaps_failed(&self) -> u64 {
        self.failed_swaps.load(Ordering::Relaxed)
    }

    /// Whether this process uses `membarrier(2)` for the swapper's barrier (false: the
    /// mprotect fallback).
    #[must_use]
    pub fn uses_membarrier() -> bool {
        os::uses_membarrier()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _serial = lock(&self.swap_lock);
        self.hot.dead.store(1, Ordering::SeqCst);
        protocol::stall(self.hot);
        let in_flight = thunk::registry().sum(self.index);
        let mut st = lock(&self.state);
        for &slot in &st.slots {
            thunk::free_slot(slot);
        }
        let mut poisoned = lock(&thunk::POISONED);
        if let Some(map) = poisoned.as_mut() {
            for v in &st.poisoned {
                map.remove(&(core::ptr::from_ref(&**v) as usize));
            }
        }
        drop(poisoned);
        if in_flight == 0 {
            // Nobody can hold a record of ours: every call reads it after its check.
            self.hot.stall.store(0, Ordering::SeqCst);
            self.hot.dead.store(0, Ordering::SeqCst);
            thunk::free_index(self.index);
        } else {
            // A call is still running in an endpoint of a dropped engine: keep its records
            // and its counter index forever rather than risk a use after free.
            for (_, v) in st.live.drain() {
                Box::leak(v);
            }
            for v in st.poisoned.drain(..) {
                Box::leak(v);
            }
        }
    }
}

/// Test-only devices (hidden): the deliberately broken wrapper and its timing knob.
#[doc(hidden)]
pub mod testing {
    use super::{Engine, EngineConfig, EngineError};

    /// An engine whose wrappers use the broken common path: it checks the stall flag only
    /// *before* counting the call (the post-increment re-check dropped) and reads the
    /// implementation before counting. At most 64 such wrappers per process.
    ///
    /// # Errors
    ///
    /// As [`Engine::new`].
    pub fn mutant_engine(config: EngineConfig) -> Result<Engine, EngineError> {
        Engine::build(config, true)
    }

    /// Iterations of `pause` the broken path waits between reading the implementation and
    /// counting the call (widens its race window; 0 by default).
    pub fn set_mutant_delay(iterations: usize) {
        super::thunk::set_mutant_delay(iterations);
    }
}
