//! The body of the sample's hot-swappable worker thread.
//!
//! The front end starts one worker with `IoDriverProxyCreateHotSwappableWorkerThread`
//! (falling back to an ordinary system thread where hot swap is unavailable). The kernel
//! waits on the [`WORKER_EVENT_COUNT`] events of its start context — `WaitAny`, with the
//! relative timeout [`WORKER_PERIOD_100NS`] — and then calls the worker routine *through its
//! wrapper* with the wait's status; the routine returns `TRUE` to wait again and `FALSE` to
//! end the thread. Because the routine is an endpoint, a swap repoints it: ticks after the
//! swap are run, and counted, by the incoming build ([`StatsInfo::worker_ticks_v2`](crate::StatsInfo)).
//!
//! The front end's routine is one line: `worker_routine(&STATE, wait_status.into()).into()`.
//!
//! | wait status | meaning | [`WorkerWake`] | ticks | returns |
//! |---|---|---|---|---|
//! | `STATUS_TIMEOUT` | the period elapsed | `Periodic` | yes | `TRUE` |
//! | `STATUS_WAIT_0` (index [`WORKER_STOP_EVENT`]) | the front end is stopping the worker (unload) | `Stop` | no | `FALSE` |
//! | `STATUS_WAIT_1` (index [`WORKER_KICK_EVENT`]) | a tick was asked for now | `Kicked` | yes | `TRUE` |
//! | `STATUS_ALERTED`, `STATUS_USER_APC` | the wait was interrupted | `Interrupted` | no | `TRUE` |
//! | anything else (other wait indices, abandoned waits, errors) | the wait failed | `Failed` | no | `FALSE`: the thread ends rather than spin on a failing wait |

use driver_proxy::NtStatus;

use crate::{
    state::State,
    version::{DriverVersion, THIS_BUILD},
};

/// Index of the stop event in the start context's `Events` (set on unload).
pub const WORKER_STOP_EVENT: u32 = 0;
/// Index of the kick event in the start context's `Events` (a tick on demand).
pub const WORKER_KICK_EVENT: u32 = 1;
/// Number of events the worker waits on.
pub const WORKER_EVENT_COUNT: usize = 2;
/// The worker's period: a relative timeout of 500 ms in 100 ns units (negative = relative),
/// for the start context's `Timeout`.
pub const WORKER_PERIOD_100NS: i64 = -5_000_000;

/// Why the worker woke up, from its wait status (module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerWake {
    /// The period elapsed.
    Periodic,
    /// The kick event was set.
    Kicked,
    /// The stop event was set.
    Stop,
    /// An alert or user APC interrupted the wait.
    Interrupted,
    /// Any other status: the wait failed.
    Failed(NtStatus),
}

impl WorkerWake {
    /// Classifies a wait status.
    #[must_use]
    pub const fn classify(wait_status: NtStatus) -> Self {
        if wait_status.raw() == NtStatus::TIMEOUT.raw() {
            return Self::Periodic;
        }
        if wait_status.raw() == NtStatus::ALERTED.raw()
            || wait_status.raw() == NtStatus::USER_APC.raw()
        {
            return Self::Interrupted;
        }
        match wait_status.wait_index() {
            Some(WORKER_STOP_EVENT) => Self::Stop,
            Some(WORKER_KICK_EVENT) => Self::Kicked,
            _ => Self::Failed(wait_status),
        }
    }

    /// Whether this wake-up runs a tick.
    #[must_use]
    pub const fn ticks(self) -> bool {
        matches!(self, Self::Periodic | Self::Kicked)
    }

    /// Whether the worker waits again afterwards (the routine's `BOOLEAN`).
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
pub fn worker_routine(state: &State, wait_status: NtStatus) -> bool {
    worker_routine_as(THIS_BUILD, state, wait_status)
}

/// The worker routine's body as `version` (see [`worker_routine`]).
///
/// IRQL: any.
#[must_use]
pub fn worker_routine_as(version: DriverVersion, state: &State, wait_status: NtStatus) -> bool {
    let wake = WorkerWake::classify(wait_status);
    if wake.ticks() {
        state.record_worker_tick(version);
    }
    wake.keeps_running()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_wait_status_is_handled_as_the_table_says() {
        let cases = [
            (NtStatus::TIMEOUT, WorkerWake::Periodic, true, true),
            (NtStatus::WAIT_0, WorkerWake::Stop, false, false),
            (NtStatus(1), WorkerWake::Kicked, true, true),
            (NtStatus::ALERTED, WorkerWake::Interrupted, false, true),
            (NtStatus::USER_APC, WorkerWake::Interrupted, false, true),
            (NtStatus(2), WorkerWake::Failed(NtStatus(2)), false, false),
            (
                NtStatus::ABANDONED_WAIT_0,
                WorkerWake::Failed(NtStatus::ABANDONED_WAIT_0),
                false,
                false,
            ),
            (
                NtStatus::INVALID_PARAMETER,
                WorkerWake::Failed(NtStatus::INVALID_PARAMETER),
                false,
                false,
            ),
            (
                NtStatus::PENDING,
                WorkerWake::Failed(NtStatus::PENDING),
                false,
                false,
            ),
        ];
        for (status, wake, ticks, again) in cases {
            let state = State::new();
            assert_eq!(WorkerWake::classify(status), wake, "{status}");
            assert_eq!(
                worker_routine_as(DriverVersion::V2, &state, status),
                again,
                "{status}"
            );
            let counters = state.stats();
            assert_eq!(counters.worker_ticks_v2, u64::from(ticks), "{status}");
            assert_eq!(counters.worker_ticks_v1, 0);
            let last = if ticks { Some(DriverVersion::V2) } else { None };
            assert_eq!(counters.last_worker_version(), last, "{status}");
        }
    }

    #[test]
    fn ticks_are_credited_to_the_build_that_ran_them() {
        let state = State::new();
        for _ in 0..3 {
            assert!(worker_routine_as(
                DriverVersion::V1,
                &state,
                NtStatus::TIMEOUT
            ));
        }
        assert!(worker_routine_as(DriverVersion::V2, &state, NtStatus(1)));
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
        assert!(worker_routine(&state, NtStatus::TIMEOUT));
        assert_eq!(
            state.stats().worker_ticks_by(THIS_BUILD),
            if cfg!(feature = "v2") { 2 } else { 4 }
        );
        assert_eq!(state.stats().last_worker_version(), Some(THIS_BUILD));
    }
}
