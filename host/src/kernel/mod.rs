//! The model kernel: the seven DriverProxy routines on top of the wrapper engine
//! ([`crate::engine`]), and the kernel support routines the library resolves (events, the
//! multi-object wait, system threads, handles, pool). Every routine is exported under its C
//! name with exactly the `PFN_` type of the host's own reading of its prototype
//! ([`crate::ddi`], checked at compile time) and listed in the table of [`crate::exports`], so
//! `MmGetSystemRoutineAddress` finds it.
//!
//! The model follows the DDI (`docs/ddi.md`); where it is silent, it takes the strictest reading
//! and says so below. Tests configure it and inject faults through [`control`].
//!
//! # DriverProxy routines
//!
//! | routine | input | result |
//! |---|---|---|
//! | `IoGetDriverProxyFeatures` | null `DriverObject` | `Enabled` = system-wide switch (and wrappers supported on this host) |
//! | | a driver object | `Enabled` = system-wide *and* the driver's features are `Enabled` (the default); `Disabled` and `Blocked` give 0 |
//! | | null `Flags` | bugcheck |
//! | | any | the whole `ULONG` is written: reserved bits 0 |
//! | `IoCreateDriverProxyExtension` | null out-pointer, **null `OwningDriverObject`**, `Flags` ≠ 0 | `STATUS_INVALID_PARAMETER` (*policy: the DDI allows a null owner, with undocumented meaning; the model refuses it*) |
//! | | switched off system-wide, or driver `Disabled` | `STATUS_NOT_SUPPORTED` |
//! | | driver `Blocked` | `STATUS_DRIVER_BLOCKED` |
//! | | the driver object already owns one | `STATUS_RESOURCE_IN_USE` (the first stays as it was) |
//! | | one-shot failure armed ([`control::DriverControl::fail_next_create`]) | that status |
//! | | allocation fault, engine exhausted | `STATUS_INSUFFICIENT_RESOURCES` |
//! | | otherwise | `STATUS_SUCCESS`; wrappers exist at once for every declared `.shsept` endpoint |
//! | | any failure | nothing created, `*DriverProxyExtension` not written |
//! | `IoGetDriverProxyExtensionFromDriverObject` | a driver object owning one / not / null | the extension / NULL / NULL |
//! | `IoRegisterDriverProxyEndpoints` | null extension | `STATUS_INVALID_PARAMETER` |
//! | | null array or `Count` 0 | `STATUS_INVALID_PARAMETER` |
//! | | an entry with a null function, or an id twice in the array | `STATUS_INVALID_PARAMETER` (*policy*) |
//! | | an existing id with another `ParameterCount` (anywhere in the array) | `STATUS_INVALID_PARAMETER_3` |
//! | | more endpoints than the extension allows, allocation fault | `STATUS_INSUFFICIENT_RESOURCES` |
//! | | only new ids, no callback (first registration) | wrappers made and published; `STATUS_SUCCESS`; no protocol |
//! | | any existing id, or a callback | the swap protocol: new ids get wrappers, existing ids are repointed |
//! | | the callback returns anything but `STATUS_SUCCESS` in a phase | that status (`STATUS_UNSUCCESSFUL` if it is not an error code: a failed registration never returns success); rolled back |
//! | | drain timeout; registration from inside an endpoint of the same extension | `STATUS_UNSUCCESSFUL`; nothing changed |
//! | | called from its own phased callback (same extension) | bugcheck (the DDI: it would deadlock) |
//! | `IoGetDriverProxyEndpointWrapper` | a registered id / unknown id / null extension | the wrapper / NULL / NULL |
//! | `IofGetDriverProxyWrapperFromEndpoint` | the *current* implementation of an endpoint (V1 or `.shsept`) | `STATUS_SUCCESS`, `*Wrapper` = its wrapper |
//! | | any other address (never registered, a retired implementation, a wrapper, another extension's endpoint) | `STATUS_NOT_FOUND`, `*Wrapper` = NULL |
//! | | null extension or null endpoint | `STATUS_INVALID_PARAMETER`, `*Wrapper` = NULL (*policy*) |
//! | | null `Wrapper` | `STATUS_INVALID_PARAMETER` |
//! | `IoDriverProxyCreateHotSwappableWorkerThread` | null extension | `STATUS_INVALID_PARAMETER` |
//! | | switched off system-wide | `STATUS_NOT_SUPPORTED` |
//! | | null `ThreadHandle`, null start context, null routine, `EventCount` 0 or > 64, unknown `WaitType`/`WaitMode`, an event null or not initialised | `STATUS_INVALID_PARAMETER` |
//! | | a routine that is not a wrapper of *this* extension (a raw function, another extension's wrapper), or the wrapper of a V1 endpoint whose `ParameterCount` is not 2 | `STATUS_INVALID_PARAMETER` (*policy: rejected, not merely un-swappable*) |
//! | | allocation fault | `STATUS_INSUFFICIENT_RESOURCES` |
//! | | `ObjectAttributes.Length` ≠ 0x30; `ProcessHandle` not NULL / `NtCurrentProcess()` | `STATUS_INVALID_PARAMETER` / `STATUS_INVALID_HANDLE` |
//! | | thread-creation fault, thread cannot start | `STATUS_INSUFFICIENT_RESOURCES` |
//! | | otherwise | `STATUS_SUCCESS`, a handle, the client id if asked; the start context was copied |
//! | any routine | a non-null extension handle that is not a live extension (stale, stray) | bugcheck |
//!
//! Checks run in the order of the rows, so a call with several faults gets the first row's
//! status.
//!
//! ## Policies where the DDI is silent
//!
//! * **One extension per driver object**, keyed by the driver object's address. It is
//!   released when the driver object is deleted ([`control::DriverControl::delete`];
//!   [`crate::HostDriverObject`] does it on drop); worker threads still running keep its
//!   engine alive until they end.
//! * **Endpoints.** V1 ids and `.shsept` ordinals are separate namespaces. A lookup by
//!   endpoint matches the endpoint's *current* implementation only: after a swap, the retired
//!   implementation's address is no longer an endpoint (`STATUS_NOT_FOUND`); a lookup with it
//!   could only come from code of the retired version. Two endpoints with the same current
//!   implementation: the first created wins.
//! * **The `[in, out]` array** of registration is only read (what the kernel writes is
//!   undocumented).
//! * **`ParameterCount`** is checked only against the endpoint's earlier registration; the
//!   engine forwards any signature, so no upper bound is imposed.
//! * **All or nothing.** The whole array is validated before any change. Wrappers for new ids
//!   are made before the protocol starts; if the registration then fails they are never
//!   published (they stay unreachable for the extension's life). The endpoint table is updated
//!   when the wrappers have been repointed (at the start of `PostProcess`) and restored on a
//!   rollback. One exception, as in the engine: when `PostProcess` fails and the rollback's
//!   drain of the new implementations times out, the new implementations stay, the table says
//!   so, and the callback's status is returned.
//! * **The drain timeout** is 5 s unless configured (the DDI does not give the kernel's).
//! * **Phased callback.** Called on the registering thread, `PreProcess` → `ProxyStalled` →
//!   `PostProcess`, with the engine's semantics ([`crate::engine`]): in `ProxyStalled` no call
//!   runs in any endpoint of the extension and new calls are held; calling a wrapper of the
//!   extension there aborts the process (it would wait for itself). A new-ids-only
//!   registration *with* a callback runs the whole protocol too (the callback is delivered).
//! * **Poisoning** of retired implementations is on by default.
//! * **Calling conventions.** Every routine exists twice: the `extern "system"` export (the
//!   `SysV` convention of this host's Rust code, for drivers compiled for the host) and the
//!   `extern "win64"` entry point of [`crate::wdm`] (for code of a `.sys` image). The driver
//!   code the kernel calls back (the phased callback, the worker routine through its wrapper,
//!   a system thread's start routine) is called with the convention of the entry point the
//!   driver used to hand it over ([`CallConv`]); the two entry points of each of these three
//!   routines are one macro (`callback_entry!`) given the convention, over one implementation.
//!   Alerts and APCs are not modelled: an alertable wait never returns `STATUS_ALERTED` or
//!   `STATUS_USER_APC`.
//!
//! # Kernel support routines
//!
//! [`events`]: `KeInitializeEvent`, `KeSetEvent`, `KeClearEvent`, `KeResetEvent`,
//! `KeReadStateEvent`, `KeWaitForMultipleObjects` (notification and synchronization events,
//! `WaitAny`/`WaitAll`, relative/absolute/zero timeouts). [`threads`]: `PsCreateSystemThread`
//! (real threads), `ZwWaitForSingleObject` (on thread handles), `ZwClose`. [`pool`]:
//! `ExAllocatePool2` (zeroed, 16-byte aligned, per-tag accounting), `ExFreePoolWithTag`.
//! [`driver_extensions`]: `IoAllocateDriverObjectExtension`, `IoGetDriverObjectExtension`
//! (freed with the driver object). Their docs list every status and bugcheck.
//!
//! # Bugchecks
//!
//! Where Windows would stop the machine (a wait on 65 objects, a stray handle closed, pool
//! freed with the wrong tag, an uninitialised event, a stale extension handle), the host
//! prints `host kernel BUGCHECK <code> <name> in <routine>: <what>` to stderr and aborts the
//! process: a driver bug is loud and points at itself. Tests check these in child processes.

// The exported routines keep the parameter names of the C prototypes, to be matched
// against `docs/ddi.md`.
pub mod control;
#[allow(non_snake_case)]
pub mod driver_extensions;
#[allow(non_snake_case)]
pub mod events;
mod extension;
pub(crate) mod irql;
#[allow(non_snake_case)]
pub mod pool;
#[allow(non_snake_case)]
pub mod proxy;
#[allow(non_snake_case)]
pub mod threads;
mod worker;

pub use driver_extensions::{IoAllocateDriverObjectExtension, IoGetDriverObjectExtension};
pub use events::{
    KeClearEvent, KeInitializeEvent, KeReadStateEvent, KeResetEvent, KeSetEvent,
    KeWaitForMultipleObjects,
};
pub use pool::{ExAllocatePool2, ExAllocatePoolWithTag, ExFreePoolWithTag};
pub use proxy::{
    IoCreateDriverProxyExtension, IoDriverProxyCreateHotSwappableWorkerThread,
    IoGetDriverProxyEndpointWrapper, IoGetDriverProxyExtensionFromDriverObject,
    IoGetDriverProxyFeatures, IoRegisterDriverProxyEndpoints, IofGetDriverProxyWrapperFromEndpoint,
};
pub use threads::{PsCreateSystemThread, ZwClose, ZwWaitForSingleObject};

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::ddi;

/// `STATUS_INVALID_HANDLE` (also [`ddi::STATUS_INVALID_HANDLE`]).
pub const STATUS_INVALID_HANDLE: ddi::NTSTATUS = ddi::STATUS_INVALID_HANDLE;

/// The bugchecks the model raises.
// The I/O bugchecks are raised by the WDM model, which exists on x86-64 only.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BugCheck {
    /// `MAXIMUM_WAIT_OBJECTS_EXCEEDED` (0xC).
    MaximumWaitObjectsExceeded,
    /// `INVALID_KERNEL_HANDLE` (0x93).
    InvalidKernelHandle,
    /// `BAD_POOL_CALLER` (0xC2).
    BadPoolCaller,
    /// An object that is not what the routine needs (an uninitialised event, a bad wait
    /// type): reported as `DRIVER_VERIFIER_DETECTED_VIOLATION` (0xC4).
    InvalidObject,
    /// A DriverProxy rule broken (stale extension, re-entrant registration): reported as
    /// `DRIVER_VERIFIER_DETECTED_VIOLATION` (0xC4).
    DriverProxyViolation,
    /// `MULTIPLE_IRP_COMPLETE_REQUESTS` (0x44): an IRP completed twice, or a pointer that is
    /// not a live IRP completed.
    MultipleIrpCompleteRequests,
    /// `DRIVER_VERIFIER_IOMANAGER_VIOLATION` (0xC9): an I/O manager rule broken (an IRP never
    /// completed, completed with `STATUS_PENDING`, a dispatch status that differs from the
    /// completion status, more output than the buffer holds, a stray device object).
    IoManagerViolation,
    /// `KMODE_EXCEPTION_NOT_HANDLED` (0x1E): a routine raised an exception (a failed
    /// `ProbeForRead`, `ProbeForWrite` or `MmProbeAndLockPages`) that the driver could only
    /// have caught with structured exception handling, which this model (and Rust) lacks.
    ExceptionNotHandled,
    /// A routine called above its IRQL limit, or a driver routine returning at another IRQL
    /// than it was called at: reported as `DRIVER_VERIFIER_DETECTED_VIOLATION` (0xC4), as
    /// Verifier's IRQL checking does.
    IrqlViolation,
    /// A bugcheck the driver raised itself with `KeBugCheckEx`.
    Driver(u32),
}

impl BugCheck {
    pub(crate) const fn code(self) -> (u32, &'static str) {
        match self {
            Self::MaximumWaitObjectsExceeded => (0x0C, "MAXIMUM_WAIT_OBJECTS_EXCEEDED"),
            Self::InvalidKernelHandle => (0x93, "INVALID_KERNEL_HANDLE"),
            Self::BadPoolCaller => (0xC2, "BAD_POOL_CALLER"),
            Self::InvalidObject | Self::DriverProxyViolation | Self::IrqlViolation => {
                (0xC4, "DRIVER_VERIFIER_DETECTED_VIOLATION")
            }
            Self::MultipleIrpCompleteRequests => (0x44, "MULTIPLE_IRP_COMPLETE_REQUESTS"),
            Self::IoManagerViolation => (0xC9, "DRIVER_VERIFIER_IOMANAGER_VIOLATION"),
            Self::ExceptionNotHandled => (0x1E, "KMODE_EXCEPTION_NOT_HANDLED"),
            Self::Driver(code) => (code, "(raised by the driver)"),
        }
    }
}

/// Stops "the machine": prints what happened and aborts the process.
pub(crate) fn bugcheck(check: BugCheck, routine: &str, what: core::fmt::Arguments<'_>) -> ! {
    let (code, name) = check.code();
    eprintln!("host kernel BUGCHECK {code:#04X} {name} in {routine}: {what}");
    std::process::abort();
}

/// The address of driver code handed over as a function pointer of the type `F` (0 for NULL).
///
/// # Safety
/// `F` is a function-pointer type or an `Option` of one (pointer-sized, no padding).
pub(crate) unsafe fn code_address<F: Copy>(code: F) -> usize {
    const { assert!(size_of::<F>() == size_of::<usize>()) };
    // SAFETY: caller contract: a (nullable) function pointer has the bits of its address.
    unsafe { core::mem::transmute_copy::<F, usize>(&code) }
}

/// Defines the entry point, in one calling convention, of a routine that takes driver code to
/// call back later (`IoRegisterDriverProxyEndpoints`' phased callback,
/// `IoDriverProxyCreateHotSwappableWorkerThread`'s worker routine, `PsCreateSystemThread`'s
/// start routine): it forwards its arguments unchanged to the implementation shared by both
/// conventions, adding the [`CallConv`] the handed-over code is called with. The `SysV` exports
/// (`extern "system"`, [`proxy`], [`threads`]) and the Microsoft x64 entry points of
/// `crate::wdm` (`extern "win64"`) are the two uses of this one arm.
macro_rules! callback_entry {
    (
        $(#[$meta:meta])*
        extern $abi:literal fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty
            = $implementation:path, $conv:expr;
    ) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern $abi fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: the same contract, forwarded; the code handed over is code of this entry
            // point's convention, which `$conv` names.
            unsafe { $implementation($($arg,)* $conv) }
        }
    };
}
pub(crate) use callback_entry;

/// The calling convention of driver code that the kernel calls back: the convention of the
/// entry point through which the driver handed the code over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallConv {
    /// `extern "system"`: on this host the `SysV` convention (drivers compiled for the host).
    System,
    /// `extern "win64"`: the Microsoft x64 convention (code of a `.sys` image; x86-64 only).
    #[cfg(target_arch = "x86_64")]
    Win64,
}

/// The driver the current thread runs for: set by the I/O manager model ([`crate::wdm`])
/// while it calls into a driver, and inherited by the system threads created meanwhile.
/// Pool blocks and system threads are attributed to it, for the leak check at unload.
pub(crate) mod context {
    use std::cell::Cell;

    thread_local! {
        static CURRENT: Cell<usize> = const { Cell::new(0) };
    }

    /// The driver object (address) the thread runs for, 0 for none.
    pub(crate) fn current() -> usize {
        CURRENT.get()
    }

    /// Runs for `driver` until the guard is dropped (then for the previous one again).
    pub(crate) fn enter(driver: usize) -> Guard {
        Guard(CURRENT.replace(driver))
    }

    /// Restores the previous driver on drop.
    pub(crate) struct Guard(usize);

    impl Drop for Guard {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
}

/// Locks `m`, ignoring poisoning (a panicking test thread must not wedge the kernel).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pool tag as the four characters C code writes (`'kwPD'` → `DPwk` in memory order).
pub(crate) fn tag_name(tag: u32) -> String {
    let bytes = tag.to_le_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!(
            "'{}'",
            bytes.iter().map(|&b| char::from(b)).collect::<String>()
        )
    } else {
        format!("{tag:#010x}")
    }
}

/// A pointer handed to another thread (a thread's start context, a worker's context).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) ddi::PVOID);

// SAFETY: the kernel only passes the pointer through to driver code, which owns its meaning
// (the C contract of the routine that took it).
unsafe impl Send for SendPtr {}

/// Faults scoped to the calling thread.
pub(crate) mod faults {
    use std::cell::Cell;
    use std::thread::LocalKey;

    thread_local! {
        /// Countdown to a failing `ExAllocatePool2` (0 = none).
        pub(crate) static POOL: Cell<u32> = const { Cell::new(0) };
        /// Countdown to a failing system-thread creation (0 = none).
        pub(crate) static THREAD: Cell<u32> = const { Cell::new(0) };
        /// Countdown to a failing `MmMapLockedPagesSpecifyCache` (0 = none).
        pub(crate) static MAP: Cell<u32> = const { Cell::new(0) };
    }

    /// Arms `fault` to fire on the `nth` event from now (0 disarms).
    pub(crate) fn arm(fault: &'static LocalKey<Cell<u32>>, nth: u32) {
        fault.set(nth);
    }

    /// Counts one event; whether the fault fires on it.
    pub(crate) fn take(fault: &'static LocalKey<Cell<u32>>) -> bool {
        fault.with(|countdown| match countdown.get() {
            0 => false,
            1 => {
                countdown.set(0);
                true
            }
            n => {
                countdown.set(n - 1);
                false
            }
        })
    }
}
