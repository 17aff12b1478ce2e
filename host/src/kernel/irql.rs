//! The IRQL the model tracks, per thread: `PASSIVE_LEVEL`, except while the thread holds a
//! spin lock acquired through the kernel (`KeAcquireSpinLockRaiseToDpc`,
//! `KeAcquireSpinLockAtDpcLevel`: `DISPATCH_LEVEL`). Every routine of the model with an IRQL
//! limit checks it ([`require`]), and the I/O manager checks that a driver's routine returns
//! at the IRQL it was called at ([`check_returned`]); a violation is bugcheck
//! `DRIVER_VERIFIER_DETECTED_VIOLATION` (0xC4), as Driver Verifier's IRQL checking reports it.
//!
//! What this cannot see: `KeRaiseIrql`, `KeLowerIrql` and `KeGetCurrentIrql` are inline `CR8`
//! accesses on x64 (they fault in user mode, and the fault is reported as the image's); there
//! are no interrupts, DPCs or timers, so nothing else runs above `PASSIVE_LEVEL`.

use std::cell::Cell;

use super::{BugCheck, bugcheck};

/// `PASSIVE_LEVEL`.
pub(crate) const PASSIVE: u8 = 0;
/// `APC_LEVEL`.
pub(crate) const APC: u8 = 1;
/// `DISPATCH_LEVEL`.
pub(crate) const DISPATCH: u8 = 2;

thread_local! {
    static LEVEL: Cell<u8> = const { Cell::new(PASSIVE) };
}

/// The calling thread's IRQL in the model.
pub(crate) fn current() -> u8 {
    LEVEL.get()
}

/// Sets the calling thread's IRQL (a spin lock's acquisition or release).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the spin locks are the WDM model's
pub(crate) fn set(level: u8) {
    LEVEL.set(level);
}

/// The name of an IRQL.
pub(crate) fn name(level: u8) -> String {
    match level {
        PASSIVE => "PASSIVE_LEVEL".to_owned(),
        APC => "APC_LEVEL".to_owned(),
        DISPATCH => "DISPATCH_LEVEL".to_owned(),
        other => format!("IRQL {other}"),
    }
}

/// Bugchecks unless the calling thread's IRQL is at most `max`: `routine` was called where
/// Windows forbids it.
pub(crate) fn require(max: u8, routine: &str) {
    let level = current();
    if level > max {
        bugcheck(
            BugCheck::IrqlViolation,
            routine,
            format_args!(
                "called at {} (a spin lock is held); it must be called at {}{}",
                name(level),
                if max == PASSIVE { "" } else { "<= " },
                name(max)
            ),
        );
    }
}

/// Bugchecks unless the calling thread is back at `expected` after a call into the driver
/// (`what`, of driver `driver`): a routine that returns with a spin lock held.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the WDM model
pub(crate) fn check_returned(expected: u8, what: &str, driver: &str) {
    let level = current();
    if level != expected {
        bugcheck(
            BugCheck::IrqlViolation,
            what,
            format_args!(
                "returned to the I/O manager at {} (called at {}) in driver {driver}: a spin lock is still held",
                name(level),
                name(expected)
            ),
        );
    }
}
