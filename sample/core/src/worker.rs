//! The body of the sample's hot-swappable worker thread.
//!
//! The front end starts one worker with the library's builder
//! (`HotSwap::worker_thread(wrapper, ()).events(WORKER_EVENTS).timeout(WORKER_PERIOD)`):
//! a hot-swappable worker thread (`IoDriverProxyCreateHotSwappableWorkerThread`), or where
//! hot swap is unavailable a plain system thread running the same loop. The library owns
//! the thread's storage: its context (here `()`: the routine uses its own image's
//! [`State`]), the **stop event** it adds at index 0 of the kernel's wait, and the routine's
//! one event of its own, the **kick event** ([`WORKER_KICK_EVENT`], index 1 of the wait).
//! After each wait — `WaitAny`, with the relative timeout [`WORKER_PERIOD`] — the kernel
//! calls the worker routine *through its wrapper* with the wait's status; the front end's
//! routine reads it with `WorkerRef::wake` and hands the resulting `Wake` to
//! [`worker_routine`], which returns `true` to wait again and `false` to end the thread.
//! Because the routine is an endpoint, a swap repoints it: ticks after the swap are run, and
//! counted, by the incoming build ([`StatsInfo::worker_ticks_v2`](crate::StatsInfo)).
//!
//! The front end's routine is one line:
//! `worker_routine(&STATE, worker.wake(wait_status))`.
//!
//! | wait status | `Wake` | meaning | [`WorkerWake`] | ticks | returns |
//! |---|---|---|---|---|---|
//! | `STATUS_TIMEOUT` | `Timeout` | the period elapsed | `Periodic` | yes | `true` |
//! | `STATUS_WAIT_0` (the library's stop event), or any status once a stop was requested | `Stop` | the thread is being stopped (`WorkerThread::stop_and_join`, at unload) | `Stop` | no | `false` |
//! | `STATUS_WAIT_1` (the kick event, the routine's event [`WORKER_KICK_EVENT`]) | `Event(0)` | a tick was asked for now (a swap kicks it) | `Kicked` | yes | `true` |
//! | `STATUS_ALERTED`, `STATUS_USER_APC` | `Alerted`, `UserApc` | the wait was interrupted | `Interrupted` | no | `true` |
//! | anything else (abandoned waits, errors; an event or a `WaitAll` this worker does not have) | `Failed(status)`, `Event(1..)`, `All` | the wait failed | `Failed` | no | `false`: the thread ends rather than spin on a failing wait |

use driver_proxy::{
    EventKind, HotSwap, NtStatus, Timeout, Unavailable, Wake, WorkerRoutine, WorkerThread, Wrapped,
};

use crate::{
    state::State,
    version::{DriverVersion, THIS_BUILD},
};

/// Index of the kick event among the worker routine's own events (`Wake::Event(0)`; index 1
/// of the kernel's wait, after the library's stop event).
pub const WORKER_KICK_EVENT: usize = 0;
/// Number of events of the worker routine's own (the library adds its stop event).
pub const WORKER_EVENT_COUNT: usize = 1;
/// The kinds of the routine's events, for `WorkerThreadBuilder::events`: the kick event is
/// a synchronization event (one tick per set).
pub const WORKER_EVENTS: [EventKind; WORKER_EVENT_COUNT] = [EventKind::Synchronization];
/// The worker's period: a relative timeout of 500 ms in 100 ns units (negative = relative).
pub const WORKER_PERIOD_100NS: i64 = -5_000_000;
/// [`WORKER_PERIOD_100NS`] as the builder's `Timeout`.
pub const WORKER_PERIOD: Timeout = Timeout::relative_100ns(WORKER_PERIOD_100NS.unsigned_abs());

/// The type of the front ends' worker routine: no context of its own (`()`), one event.
/// Every image of the driver registers its routine under the same id with this type, and
/// takes the thread back as a [`SampleWorkerThread`].
pub type SampleWorkerRoutine = WorkerRoutine<(), WORKER_EVENT_COUNT>;
/// The running worker thread, owned (`WorkerThread::into_raw` / `from_raw` hand it from one
/// image to the next through [`crate::SharedBlock`]).
pub type SampleWorkerThread = WorkerThread<(), WORKER_EVENT_COUNT>;

/// Why the worker woke up, from its `Wake` (module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerWake {
    /// The period elapsed.
    Periodic,
    /// The kick event was set.
    Kicked,
    /// The thread is asked to end.
    Stop,
    /// An alert or user APC interrupted the wait.
    Interrupted,
    /// Anything else: the wait failed, or woke for an event or a `WaitAll` this worker does
    /// not have.
    Failed(Wake),
}

impl WorkerWake {
    /// Classifies a wake-up.
    #[must_use]
    pub const fn classify(wake: Wake) -> Self {
        match wake {
            Wake::Timeout => Self::Periodic,
            Wake::Event(WORKER_KICK_EVENT) => Self::Kicked,
            Wake::Stop => Self::Stop,
            Wake::Alerted | Wake::UserApc => Self::Interrupted,
            other @ (Wake::Event(_) | Wake::All | Wake::Failed(_)) => Self::Failed(other),
        }
    }

    /// Whether this wake-up runs a tick.
    #[must_use]
    pub const fn ticks(self) -> bool {
        matches!(self, Self::Periodic | Self::Kicked)
    }

    /// Whether the worker waits again afterwards (the routine's result).
    #[must_use]
    pub const fn keeps_running(self) -> bool {
        matches!(self, Self::Periodic | Self::Kicked | Self::Interrupted)
    }
}

/// The worker routine's body as [`THIS_BUILD`]: handles one wake-up and returns whether to
/// wait again (module table).
///
/// IRQL: any (the worker calls it at `PASSIVE_LEVEL`).
#[must_use]
pub fn worker_routine(state: &State, wake: Wake) -> bool {
    worker_routine_as(THIS_BUILD, state, wake)
}

/// The worker routine's body as `version` (see [`worker_routine`]).
///
/// IRQL: any.
#[must_use]
pub fn worker_routine_as(version: DriverVersion, state: &State, wake: Wake) -> bool {
    let wake = WorkerWake::classify(wake);
    if wake.ticks() {
        state.record_worker_tick(version);
    }
    wake.keeps_running()
}

/// What [`start_worker`] did.
#[derive(Debug)]
pub enum WorkerStart {
    /// The worker thread runs; its owner stops and joins it (`WorkerThread::stop_and_join`,
    /// or by dropping it).
    Started(SampleWorkerThread),
    /// This kernel cannot run a worker thread: the routine it lacks
    /// (`HotSwap::worker_threads`). The front end logs it and serves without a worker rather
    /// than fail to start.
    Unavailable(Unavailable),
}

/// Starts the sample's worker thread on `routine`, the wrapper of the worker endpoint, with
/// the sample's events ([`WORKER_EVENTS`]) and period ([`WORKER_PERIOD`]): a hot-swappable
/// worker thread where hot swap is available, a system thread running the same loop where it
/// is not. The library owns the thread's storage (context, stop and kick events), a pool
/// block of its own (tag `DPwk`) freed when the thread is stopped and joined.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// The status of a failed `spawn` on a kernel that has every routine a worker needs.
pub fn start_worker(
    hotswap: &HotSwap,
    routine: Wrapped<SampleWorkerRoutine>,
) -> Result<WorkerStart, NtStatus> {
    if let Err(reason) = hotswap.worker_threads() {
        return Ok(WorkerStart::Unavailable(reason));
    }
    let thread = hotswap
        .worker_thread(routine, ())
        .events(WORKER_EVENTS)
        .timeout(WORKER_PERIOD)
        .spawn()?;
    Ok(WorkerStart::Started(thread))
}

#[cfg(test)]
mod tests {
    use driver_proxy::NtStatus;

    use super::*;

    #[test]
    fn every_wake_is_handled_as_the_table_says() {
        let failed = |wake| (wake, WorkerWake::Failed(wake), false, false);
        let cases = [
            (Wake::Timeout, WorkerWake::Periodic, true, true),
            (Wake::Stop, WorkerWake::Stop, false, false),
            (Wake::Event(0), WorkerWake::Kicked, true, true),
            (Wake::Alerted, WorkerWake::Interrupted, false, true),
            (Wake::UserApc, WorkerWake::Interrupted, false, true),
            failed(Wake::Event(1)),
            failed(Wake::All),
            failed(Wake::Failed(NtStatus::ABANDONED_WAIT_0)),
            failed(Wake::Failed(NtStatus::INVALID_PARAMETER)),
            failed(Wake::Failed(NtStatus::PENDING)),
        ];
        for (wake, expected, ticks, again) in cases {
            let state = State::new();
            assert_eq!(WorkerWake::classify(wake), expected, "{wake:?}");
            assert_eq!(
                worker_routine_as(DriverVersion::V2, &state, wake),
                again,
                "{wake:?}"
            );
            let counters = state.stats();
            assert_eq!(counters.worker_ticks_v2, u64::from(ticks), "{wake:?}");
            assert_eq!(counters.worker_ticks_v1, 0);
            let last = if ticks { Some(DriverVersion::V2) } else { None };
            assert_eq!(counters.last_worker_version(), last, "{wake:?}");
        }
    }

    #[test]
    fn ticks_are_credited_to_the_build_that_ran_them() {
        let state = State::new();
        for _ in 0..3 {
            assert!(worker_routine_as(DriverVersion::V1, &state, Wake::Timeout));
        }
        assert!(worker_routine_as(
            DriverVersion::V2,
            &state,
            Wake::Event(WORKER_KICK_EVENT)
        ));
        let counters = state.stats();
        assert_eq!(
            (
                counters.worker_ticks,
                counters.worker_ticks_v1,
                counters.worker_ticks_v2
            ),
            (4, 3, 1)
        );
        assert_eq!(counters.last_worker_version(), Some(DriverVersion::V2));
        assert!(worker_routine(&state, Wake::Timeout));
        assert_eq!(
            state.stats().worker_ticks_by(THIS_BUILD),
            if cfg!(feature = "v2") { 2 } else { 4 }
        );
        assert_eq!(state.stats().last_worker_version(), Some(THIS_BUILD));
    }

    #[test]
    fn the_period_is_500_ms_relative() {
        assert_eq!(WORKER_PERIOD, Timeout::from_millis(500));
        assert_eq!(WORKER_PERIOD.raw(), WORKER_PERIOD_100NS);
    }

    /// The table's wait statuses as the library's worker thread produces them, on the host
    /// kernel: a thread of the sample's types, kicked (`STATUS_WAIT_1`: a tick), handed
    /// through its raw address as between images (its storage stays allocated), then stopped
    /// (`STATUS_WAIT_0`: no tick, the routine ends the thread; the storage is freed).
    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code, reason = "a driver object, as DriverEntry receives one")]
    fn a_worker_of_the_sample_s_type_ticks_when_kicked_and_ends_when_stopped() {
        extern crate std;
        use driver_proxy::{
            DriverObject, EndpointEntry, EndpointId, EndpointTable, HotSwap, WorkerRef,
        };
        use driver_proxy_host::HostDriverObject;
        use driver_proxy_host::kernel::control::pool_usage;
        use std::time::{Duration, Instant};

        static STATE: State = State::new();
        extern "system" fn routine(
            worker: WorkerRef<(), WORKER_EVENT_COUNT>,
            wait_status: NtStatus,
        ) -> bool {
            worker_routine_as(DriverVersion::V1, &STATE, worker.wake(wait_status))
        }
        const WORKER: EndpointId<SampleWorkerRoutine> = EndpointId::new(5);

        // The pool counts below are of this test's worker only.
        let _alone = crate::HOST_WORKERS.lock();
        let mut object = HostDriverObject::new();
        // SAFETY: a host driver object that outlives every use below.
        let driver = unsafe { DriverObject::from_raw(object.as_raw()) }.unwrap();
        let hotswap = HotSwap::new(driver).unwrap();
        hotswap.worker_threads().unwrap();
        let table =
            EndpointTable::new([EndpointEntry::new(WORKER, routine as SampleWorkerRoutine)])
                .unwrap();
        hotswap.register(&table, None).unwrap();
        // The thread's storage: a pool block of the library's (no other test of this process
        // runs a worker meanwhile: `HOST_WORKERS`).
        let dpwk = || pool_usage(u32::from_le_bytes(*b"DPwk")).outstanding;
        let before = dpwk();
        let thread = hotswap
            .worker_thread(hotswap.wrapper(&table, WORKER).unwrap(), ())
            .events(WORKER_EVENTS)
            .timeout(Timeout::from_millis(600_000)) // no periodic tick during the test
            .spawn()
            .unwrap();
        assert_eq!(dpwk(), before + 1);
        thread.event(WORKER_KICK_EVENT).unwrap().set();
        let deadline = Instant::now() + Duration::from_secs(10);
        while STATE.stats().worker_ticks_v1 == 0 {
            assert!(Instant::now() < deadline, "the kick made no tick");
            std::thread::sleep(Duration::from_millis(1));
        }
        let raw = thread.into_raw();
        // SAFETY: the address `into_raw` just gave, taken back once.
        let thread = unsafe { SampleWorkerThread::from_raw(raw) }.unwrap();
        assert_eq!(dpwk(), before + 1, "handed on, not freed");
        thread.stop_and_join().unwrap();
        assert_eq!(STATE.stats().worker_ticks_v1, 1, "stopping is not a tick");
        assert_eq!(dpwk(), before, "freed once the thread ended");
        drop(object);
    }

    /// `start_worker` starts a worker of the sample's events and wrapper: the kick event is
    /// its only event, a kick runs the routine through the wrapper (a tick), and stopping
    /// it ends the thread and frees its storage.
    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code, reason = "a driver object, as DriverEntry receives one")]
    fn start_worker_starts_the_sample_s_worker_on_its_wrapper() {
        extern crate std;
        use driver_proxy::{
            DriverObject, EndpointEntry, EndpointId, EndpointTable, HotSwap, WorkerRef,
        };
        use driver_proxy_host::HostDriverObject;
        use driver_proxy_host::kernel::control::pool_usage;
        use std::time::{Duration, Instant};

        static STATE: State = State::new();
        extern "system" fn routine(
            worker: WorkerRef<(), WORKER_EVENT_COUNT>,
            wait_status: NtStatus,
        ) -> bool {
            worker_routine_as(DriverVersion::V1, &STATE, worker.wake(wait_status))
        }
        const WORKER: EndpointId<SampleWorkerRoutine> = EndpointId::new(5);

        let _alone = crate::HOST_WORKERS.lock();
        let mut object = HostDriverObject::new();
        // SAFETY: a host driver object that outlives every use below.
        let driver = unsafe { DriverObject::from_raw(object.as_raw()) }.unwrap();
        let hotswap = HotSwap::new(driver).unwrap();
        let table =
            EndpointTable::new([EndpointEntry::new(WORKER, routine as SampleWorkerRoutine)])
                .unwrap();
        hotswap.register(&table, None).unwrap();
        let dpwk = || pool_usage(u32::from_le_bytes(*b"DPwk")).outstanding;
        let before = dpwk();
        let started = start_worker(&hotswap, hotswap.wrapper(&table, WORKER).unwrap()).unwrap();
        let WorkerStart::Started(thread) = started else {
            panic!("the host kernel runs worker threads: {started:?}");
        };
        assert!(thread.is_hot_swappable());
        assert_eq!(dpwk(), before + 1);
        assert!(thread.event(WORKER_KICK_EVENT).is_some());
        assert!(
            thread.event(WORKER_EVENT_COUNT).is_none(),
            "one event of its own"
        );
        let ticks_before = STATE.stats().worker_ticks_v1;
        thread.event(WORKER_KICK_EVENT).unwrap().set();
        let deadline = Instant::now() + Duration::from_secs(10);
        while STATE.stats().worker_ticks_v1 == ticks_before {
            assert!(Instant::now() < deadline, "the kick made no tick");
            std::thread::sleep(Duration::from_millis(1));
        }
        thread.stop_and_join().unwrap();
        assert_eq!(dpwk(), before, "freed once the thread ended");
        drop(object);
    }
}
