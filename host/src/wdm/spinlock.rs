//! Spin locks: `KeAcquireSpinLockRaiseToDpc` (what the `KeAcquireSpinLock` macro calls on
//! x64), `KeReleaseSpinLock`, `KeAcquireSpinLockAtDpcLevel`, `KeReleaseSpinLockFromDpcLevel`
//! (Microsoft x64). The only way the model's IRQL leaves `PASSIVE_LEVEL`
//! (the model's per-thread IRQL): holding a spin lock puts the thread at `DISPATCH_LEVEL`, where
//! routines limited to lower levels bugcheck, and a driver routine that returns with one held
//! bugchecks.
//!
//! A `KSPIN_LOCK` is the caller's pointer-sized word (`KeInitializeSpinLock`, inline, writes
//! 0). Held, it holds the owning thread's token; other threads spin (yielding the CPU, as a
//! user-mode model must: a real kernel cannot preempt the owner at `DISPATCH_LEVEL`).
//! Checked, as Driver Verifier does: acquiring a lock the thread already holds (on Windows the
//! thread spins forever), releasing one it does not hold, acquiring at `DpcLevel` below
//! `DISPATCH_LEVEL`, releasing with the thread not at `DISPATCH_LEVEL`, lowering to an IRQL
//! above `DISPATCH_LEVEL`; each is bugcheck `DRIVER_VERIFIER_DETECTED_VIOLATION` (0xC4).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::kernel::irql::{self, DISPATCH};
use crate::kernel::{BugCheck, bugcheck};

/// `KSPIN_LOCK`.
type KspinLock = usize;

static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// This thread's owner token (0 until its first acquisition).
    static TOKEN: Cell<usize> = const { Cell::new(0) };
}

fn token() -> usize {
    TOKEN.with(|token| {
        if token.get() == 0 {
            // Odd, so that a held lock is never a plausible pointer value of 0.
            token.set(NEXT_TOKEN.fetch_add(2, Ordering::Relaxed) | 1);
        }
        token.get()
    })
}

fn violation(routine: &str, what: core::fmt::Arguments<'_>) -> ! {
    bugcheck(BugCheck::IrqlViolation, routine, what)
}

/// The lock word as an atomic.
///
/// # Safety
/// `lock` is a valid, aligned `KSPIN_LOCK` that lives while it is used.
unsafe fn word<'l>(lock: *mut KspinLock) -> &'l AtomicUsize {
    // SAFETY: caller contract; AtomicUsize has usize's layout.
    unsafe { AtomicUsize::from_ptr(lock) }
}

fn acquire(routine: &str, lock: *mut KspinLock) {
    if lock.is_null() || !lock.is_aligned() {
        violation(routine, format_args!("{lock:p} is not a KSPIN_LOCK"));
    }
    let me = token();
    // SAFETY: checked non-null and aligned; the caller's lock.
    let word = unsafe { word(lock) };
    let mut spins = 0u32;
    loop {
        match word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return,
            Err(owner) if owner == me => violation(
                routine,
                format_args!(
                    "{lock:p} is held by this thread already (on Windows it would spin forever)"
                ),
            ),
            Err(_) => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

fn release(routine: &str, lock: *mut KspinLock) {
    if lock.is_null() || !lock.is_aligned() {
        violation(routine, format_args!("{lock:p} is not a KSPIN_LOCK"));
    }
    // SAFETY: checked non-null and aligned; the caller's lock.
    let word = unsafe { word(lock) };
    if word
        .compare_exchange(token(), 0, Ordering::Release, Ordering::Relaxed)
        .is_err()
    {
        violation(routine, format_args!("{lock:p} is not held by this thread"));
    }
}

/// `KIRQL KeAcquireSpinLockRaiseToDpc(PKSPIN_LOCK SpinLock)`: raises to `DISPATCH_LEVEL`,
/// acquires, returns the previous IRQL. Callable at `<= DISPATCH_LEVEL`.
///
/// # Safety
/// `SpinLock` is a valid, initialised `KSPIN_LOCK`.
pub unsafe extern "win64" fn KeAcquireSpinLockRaiseToDpc(SpinLock: *mut KspinLock) -> u8 {
    const NAME: &str = "KeAcquireSpinLockRaiseToDpc";
    irql::require(DISPATCH, NAME);
    let previous = irql::current();
    acquire(NAME, SpinLock);
    irql::set(DISPATCH);
    previous
}

/// `VOID KeReleaseSpinLock(PKSPIN_LOCK SpinLock, KIRQL NewIrql)`: releases and lowers to
/// `NewIrql` (the value the acquisition returned).
///
/// # Safety
/// `SpinLock` is a valid `KSPIN_LOCK`.
pub unsafe extern "win64" fn KeReleaseSpinLock(SpinLock: *mut KspinLock, NewIrql: u8) {
    const NAME: &str = "KeReleaseSpinLock";
    if irql::current() != DISPATCH {
        violation(
            NAME,
            format_args!(
                "called at {}: a spin lock is released at DISPATCH_LEVEL",
                irql::name(irql::current())
            ),
        );
    }
    if NewIrql > DISPATCH {
        violation(
            NAME,
            format_args!("NewIrql {NewIrql} is above DISPATCH_LEVEL"),
        );
    }
    release(NAME, SpinLock);
    irql::set(NewIrql);
}

/// The rule of the `…AtDpcLevel`/`…FromDpcLevel` routines: the caller is already at
/// `DISPATCH_LEVEL`; below it, a bug check naming `routine`.
fn require_dispatch_level(routine: &str) {
    if irql::current() < DISPATCH {
        violation(
            routine,
            format_args!(
                "called at {}: it requires DISPATCH_LEVEL",
                irql::name(irql::current())
            ),
        );
    }
}

/// `VOID KeAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock)`: acquires, the caller already at
/// `DISPATCH_LEVEL`.
///
/// # Safety
/// `SpinLock` is a valid, initialised `KSPIN_LOCK`.
pub unsafe extern "win64" fn KeAcquireSpinLockAtDpcLevel(SpinLock: *mut KspinLock) {
    const NAME: &str = "KeAcquireSpinLockAtDpcLevel";
    require_dispatch_level(NAME);
    acquire(NAME, SpinLock);
}

/// `VOID KeReleaseSpinLockFromDpcLevel(PKSPIN_LOCK SpinLock)`: releases, staying at
/// `DISPATCH_LEVEL`.
///
/// # Safety
/// `SpinLock` is a valid `KSPIN_LOCK`.
pub unsafe extern "win64" fn KeReleaseSpinLockFromDpcLevel(SpinLock: *mut KspinLock) {
    const NAME: &str = "KeReleaseSpinLockFromDpcLevel";
    require_dispatch_level(NAME);
    release(NAME, SpinLock);
}
