//! [`TakeOver`]: the incoming image's phased callback of a V1 hot swap, which moves the
//! outgoing image's [`State`] into its own while the proxy is stalled.
//!
//! A V1 swap is the incoming image registering the same endpoint ids again with
//! `IoRegisterDriverProxyEndpoints` and a phased callback
//! (`driver_proxy::HotSwap::register`). The kernel calls the callback in three phases; this
//! type is that callback, framework-free, so that every front end runs the same, tested
//! hand-over:
//!
//! | phase | what [`TakeOver`] does | on failure |
//! |---|---|---|
//! | `PreProcess` | checks that an outgoing image's exporter was found (published, and not this image's own) | `STATUS_INVALID_DEVICE_STATE` |
//! | `ProxyStalled` | asks the outgoing exporter for its 64-byte hand-over snapshot and imports it ([`State::import_from`]: counts added, one more swap recorded) | the exporter's status, or the hand-over error's ([`HandOverError::status`]) |
//! | `PostProcess` | nothing | — |
//!
//! Any failure makes the kernel roll the registration back: the outgoing image keeps
//! serving with its counters intact, and the incoming image's `DriverEntry` returns the
//! status (see `sample/wdm/src/main.rs`, *Swap mode*). Why the hand-over is exact in
//! `ProxyStalled` is explained in [`crate::state`].
//!
//! The exporter is a closure: calling the outgoing image's routine through a raw code
//! address is the front end's one unsafe step (`sample/wdm/src/swap.rs`,
//! `sample/kmdf/src/swap.rs`). It must call it **directly**, never through a wrapper of the
//! same extension (a wrapper would wait for `ProxyStalled` to end).

use driver_proxy::{NtStatus, Phase, SwapCallback};

use crate::state::{HANDOVER_SIZE, HandOverError, State};

/// The incoming image's swap callback (module table). `E` asks the outgoing image for its
/// snapshot: it fills the buffer and returns the outgoing exporter's status.
pub struct TakeOver<'a, E> {
    state: &'a State,
    outgoing: Option<E>,
    /// One bit per phase seen ([`phase_bit`]).
    phases: u8,
}

/// The bit of `phase` in [`TakeOver::ran`]'s record.
const fn phase_bit(phase: Phase) -> u8 {
    match phase {
        Phase::PreProcess => 1,
        Phase::ProxyStalled => 2,
        Phase::PostProcess => 4,
    }
}

impl<'a, E: FnMut(&mut [u8; HANDOVER_SIZE]) -> NtStatus> TakeOver<'a, E> {
    /// A take-over into `state` (the incoming image's) from the `outgoing` exporter, `None`
    /// when none was found (the swap then fails in `PreProcess`).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn new(state: &'a State, outgoing: Option<E>) -> Self {
        Self {
            state,
            outgoing,
            phases: 0,
        }
    }

    /// Whether the callback has been called in `phase` (whatever it returned).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn ran(&self, phase: Phase) -> bool {
        self.phases & phase_bit(phase) != 0
    }

    fn hand_over(&mut self) -> Result<(), NtStatus> {
        let export = self
            .outgoing
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?;
        let mut snapshot = [0u8; HANDOVER_SIZE];
        let status = export(&mut snapshot);
        if !status.is_success() {
            return Err(status);
        }
        self.state
            .import_from(&snapshot)
            .map_err(HandOverError::status)
    }
}

impl<E: FnMut(&mut [u8; HANDOVER_SIZE]) -> NtStatus> SwapCallback for TakeOver<'_, E> {
    /// The module table. Runs at `PASSIVE_LEVEL` on the registering thread.
    fn on_phase(&mut self, phase: Phase) -> Result<(), NtStatus> {
        self.phases |= phase_bit(phase);
        match phase {
            Phase::PreProcess if self.outgoing.is_none() => Err(NtStatus::INVALID_DEVICE_STATE),
            Phase::PreProcess | Phase::PostProcess => Ok(()),
            Phase::ProxyStalled => self.hand_over(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::DriverVersion;

    /// The outgoing image's exporter over `state`, as the front ends' `export_state` routine.
    fn exporter(
        version: DriverVersion,
        state: &State,
    ) -> impl FnMut(&mut [u8; HANDOVER_SIZE]) -> NtStatus + '_ {
        move |buffer| match state.export_to(version, buffer) {
            Ok(_) => NtStatus::SUCCESS,
            Err(error) => error.status(),
        }
    }

    fn run_phases(callback: &mut dyn SwapCallback) -> Result<(), NtStatus> {
        for phase in [Phase::PreProcess, Phase::ProxyStalled, Phase::PostProcess] {
            callback.on_phase(phase)?;
        }
        Ok(())
    }

    #[test]
    fn a_swap_moves_every_count_into_the_incoming_state() {
        let outgoing = State::new();
        outgoing.record_served(DriverVersion::V1);
        outgoing.record_served(DriverVersion::V1);
        outgoing.record_rejected();
        outgoing.record_worker_tick(DriverVersion::V1);
        let incoming = State::new();
        let mut take_over = TakeOver::new(&incoming, Some(exporter(DriverVersion::V1, &outgoing)));
        assert_eq!(run_phases(&mut take_over), Ok(()));
        let stats = incoming.stats();
        assert_eq!(
            (
                stats.served_v1,
                stats.rejected,
                stats.worker_ticks_v1,
                stats.swaps
            ),
            (2, 1, 1, 1)
        );
        assert!(take_over.ran(Phase::PostProcess));
        // The export leaves the outgoing state as it was (a rollback keeps it serving).
        assert_eq!(outgoing.stats().served_v1, 2);
    }

    #[test]
    fn without_an_outgoing_exporter_the_swap_fails_before_the_stall() {
        let incoming = State::new();
        let mut take_over =
            TakeOver::<fn(&mut [u8; HANDOVER_SIZE]) -> NtStatus>::new(&incoming, None);
        assert_eq!(
            run_phases(&mut take_over),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        assert!(take_over.ran(Phase::PreProcess));
        assert!(!take_over.ran(Phase::ProxyStalled));
        assert!(!incoming.has_imported());
    }

    #[test]
    fn a_failing_exporter_aborts_in_proxy_stalled_and_imports_nothing() {
        let incoming = State::new();
        let failing = |_: &mut [u8; HANDOVER_SIZE]| NtStatus::INSUFFICIENT_RESOURCES;
        let mut take_over = TakeOver::new(&incoming, Some(failing));
        assert_eq!(
            run_phases(&mut take_over),
            Err(NtStatus::INSUFFICIENT_RESOURCES)
        );
        assert!(take_over.ran(Phase::ProxyStalled));
        assert!(!take_over.ran(Phase::PostProcess));
        assert!(!incoming.has_imported());
    }

    #[test]
    fn a_corrupt_snapshot_is_refused_with_its_status() {
        let incoming = State::new();
        let garbage = |buffer: &mut [u8; HANDOVER_SIZE]| {
            buffer.fill(0xEE);
            NtStatus::SUCCESS
        };
        let mut take_over = TakeOver::new(&incoming, Some(garbage));
        assert_eq!(run_phases(&mut take_over), Err(NtStatus::INVALID_PARAMETER));
        assert!(!incoming.has_imported());
    }

    #[test]
    fn a_state_takes_over_once() {
        let outgoing = State::new();
        outgoing.record_served(DriverVersion::V2);
        let incoming = State::new();
        let mut first = TakeOver::new(&incoming, Some(exporter(DriverVersion::V2, &outgoing)));
        assert_eq!(run_phases(&mut first), Ok(()));
        let mut again = TakeOver::new(&incoming, Some(exporter(DriverVersion::V2, &outgoing)));
        assert_eq!(
            run_phases(&mut again),
            Err(NtStatus::INVALID_DEVICE_STATE),
            "HandOverError::AlreadyImported"
        );
        assert_eq!(incoming.stats().served_v2, 1, "counted once");
    }

    #[test]
    fn swaps_chain_v1_to_v2_to_v1() {
        let first = State::new();
        first.record_served(DriverVersion::V1);
        let second = State::new();
        let mut to_v2 = TakeOver::new(&second, Some(exporter(DriverVersion::V1, &first)));
        run_phases(&mut to_v2).unwrap();
        second.record_served(DriverVersion::V2);
        let third = State::new();
        let mut to_v1 = TakeOver::new(&third, Some(exporter(DriverVersion::V2, &second)));
        run_phases(&mut to_v1).unwrap();
        let stats = third.stats();
        assert_eq!((stats.served_v1, stats.served_v2, stats.swaps), (1, 1, 2));
    }
}
