//! The V1 phased callback: [`Phase`] and [`SwapCallback`].

use core::ffi::c_void;

use crate::{NtStatus, sys};

/// A phase of a V1 registration (`DRIVER_PROXY_REGISTER_CALLBACK_PHASE`), in the order the
/// kernel delivers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before any switching: endpoint calls still flow. Prepare: take the driver's locks,
    /// snapshot state, allocate what the switch needs. An error aborts the registration and
    /// nothing changes.
    PreProcess,
    /// The DriverProxy rundown is held: no call can enter any endpoint of the extension and
    /// none is running. The only window with exclusive access to state the endpoints touch:
    /// hand state over from the old version to the new one here. Keep it short; never call a
    /// wrapper of the same extension (it would wait for this phase to end). An error aborts
    /// the registration and nothing changes.
    ProxyStalled,
    /// Switching is done and calls flow again (to the new code): release locks, log. What the
    /// kernel does with an error here is undocumented; this crate reports it as
    /// [`crate::RegisterError::Callback`] and the host kernel rolls the swap back.
    PostProcess,
}

impl Phase {
    /// The phase for a raw `DRIVER_PROXY_REGISTER_CALLBACK_PHASE`, or `None` for `Max` and
    /// any other value.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn from_raw(raw: sys::DRIVER_PROXY_REGISTER_CALLBACK_PHASE) -> Option<Self> {
        match raw {
            sys::DriverProxyRegisterCallbackPreProcess => Some(Self::PreProcess),
            sys::DriverProxyRegisterCallbackProxyStalled => Some(Self::ProxyStalled),
            sys::DriverProxyRegisterCallbackPostProcess => Some(Self::PostProcess),
            _ => None,
        }
    }

    /// The raw value.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn raw(self) -> sys::DRIVER_PROXY_REGISTER_CALLBACK_PHASE {
        match self {
            Self::PreProcess => sys::DriverProxyRegisterCallbackPreProcess,
            Self::ProxyStalled => sys::DriverProxyRegisterCallbackProxyStalled,
            Self::PostProcess => sys::DriverProxyRegisterCallbackPostProcess,
        }
    }
}

/// Code run in each [`Phase`] of a V1 registration; where a new version of the driver takes
/// over state from the old one. Implemented for every `FnMut(Phase) -> Result<(), NtStatus>`.
///
/// Runs at `PASSIVE_LEVEL`, on the thread that called the registration.
pub trait SwapCallback {
    /// Called once per phase, in order. `Err(status)` aborts the registration (which is rolled
    /// back) and becomes [`crate::RegisterError::Callback`]; a success code given as an error is
    /// reported as `STATUS_UNSUCCESSFUL`.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// Whatever status should abort the registration.
    fn on_phase(&mut self, phase: Phase) -> Result<(), NtStatus>;
}

impl<F: FnMut(Phase) -> Result<(), NtStatus>> SwapCallback for F {
    fn on_phase(&mut self, phase: Phase) -> Result<(), NtStatus> {
        self(phase)
    }
}

/// What the trampoline needs: the driver's callback (if any), what the crate does once the
/// callback accepted `ProxyStalled` (record the registration), and where to note which phase
/// failed.
pub(crate) struct CallbackContext<'c, 's> {
    pub(crate) callback: Option<&'c mut dyn SwapCallback>,
    pub(crate) on_stalled: &'s mut dyn FnMut(),
    pub(crate) failure: Option<(Phase, NtStatus)>,
}

/// The `DRIVER_PROXY_REGISTER_CALLBACK` the kernel calls; forwards to the Rust callback.
///
/// # Safety
/// `context` must point to a live `CallbackContext` not otherwise borrowed for the duration
/// of the call (guaranteed by `HotSwap::register`, which passes a local and waits for the
/// registration to return).
pub(crate) unsafe extern "system" fn callback_trampoline(
    phase: sys::DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
    context: *mut c_void,
) -> sys::NTSTATUS {
    // SAFETY: per this function's contract, `context` is an exclusive live CallbackContext.
    let context = unsafe { &mut *context.cast::<CallbackContext<'_, '_>>() };
    let Some(phase) = Phase::from_raw(phase) else {
        return sys::STATUS_INVALID_PARAMETER;
    };
    let outcome = match context.callback.as_mut() {
        Some(callback) => callback.on_phase(phase),
        None => Ok(()),
    };
    match outcome {
        Ok(()) => {
            if phase == Phase::ProxyStalled {
                (context.on_stalled)();
            }
            sys::STATUS_SUCCESS
        }
        Err(status) => {
            let status = if status.is_success() {
                NtStatus::UNSUCCESSFUL
            } else {
                status
            };
            context.failure = Some((phase, status));
            status.raw()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_through_their_documented_values() {
        for (raw, phase) in [
            (0, Phase::PreProcess),
            (1, Phase::ProxyStalled),
            (2, Phase::PostProcess),
        ] {
            assert_eq!(Phase::from_raw(raw), Some(phase));
            assert_eq!(phase.raw(), raw);
        }
        assert_eq!(Phase::from_raw(sys::DriverProxyRegisterCallbackMax), None);
        assert_eq!(Phase::from_raw(-1), None);
    }

    #[test]
    fn trampoline_forwards_phases_and_records_the_failing_one() {
        let mut seen = [None; 3];
        let mut count = 0;
        let mut callback = |phase: Phase| {
            seen[count] = Some(phase);
            count += 1;
            if phase == Phase::ProxyStalled {
                Err(NtStatus::INSUFFICIENT_RESOURCES)
            } else {
                Ok(())
            }
        };
        let mut stalled = 0;
        let mut on_stalled = || stalled += 1;
        let mut context = CallbackContext {
            callback: Some(&mut callback),
            on_stalled: &mut on_stalled,
            failure: None,
        };
        let ptr = (&raw mut context).cast::<c_void>();
        // SAFETY: `context` is a live local, not otherwise borrowed during the calls.
        unsafe {
            assert_eq!(callback_trampoline(0, ptr), sys::STATUS_SUCCESS);
            assert_eq!(
                callback_trampoline(1, ptr),
                sys::STATUS_INSUFFICIENT_RESOURCES
            );
            assert_eq!(callback_trampoline(3, ptr), sys::STATUS_INVALID_PARAMETER);
        }
        assert_eq!(
            context.failure,
            Some((Phase::ProxyStalled, NtStatus::INSUFFICIENT_RESOURCES))
        );
        assert_eq!(
            seen,
            [Some(Phase::PreProcess), Some(Phase::ProxyStalled), None]
        );
        assert_eq!(stalled, 0, "a failed ProxyStalled records nothing");
    }

    #[test]
    fn an_accepted_proxy_stalled_phase_records_the_registration_once() {
        let mut stalled = 0;
        let mut on_stalled = || stalled += 1;
        let mut context = CallbackContext {
            callback: None,
            on_stalled: &mut on_stalled,
            failure: None,
        };
        let ptr = (&raw mut context).cast::<c_void>();
        // SAFETY: `context` is a live local, not otherwise borrowed during the calls.
        unsafe {
            for phase in 0..3 {
                assert_eq!(callback_trampoline(phase, ptr), sys::STATUS_SUCCESS);
            }
        }
        assert!(context.failure.is_none());
        assert_eq!(stalled, 1);
    }

    #[test]
    fn an_error_carrying_a_success_code_is_reported_as_unsuccessful() {
        let mut callback = |_: Phase| Err(NtStatus::SUCCESS);
        let mut on_stalled = || {};
        let mut context = CallbackContext {
            callback: Some(&mut callback),
            on_stalled: &mut on_stalled,
            failure: None,
        };
        // SAFETY: `context` is a live local, not otherwise borrowed during the call.
        let status = unsafe { callback_trampoline(0, (&raw mut context).cast()) };
        assert_eq!(status, sys::STATUS_UNSUCCESSFUL);
    }
}
