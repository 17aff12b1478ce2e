//! `hotswap_sample_wdm.sys`: the WDM front end of the driver-proxy hot-swap sample, a
//! legacy (non-PnP) kernel driver cross-linked on any machine into PE32+ images for x64 and
//! ARM64.
//!
//! The driver logic is the sample core's (`hotswap-sample-core`): the IOCTL protocol, the
//! counters that survive a swap, the worker body. This crate adds only what WDM needs:
//! minimal bindings of its own ([`wdm_sys`]), the control device ([`device`]), the five
//! endpoints ([`endpoints`]) and the swap-mode entry ([`swap`]). The C run-time symbols a
//! driver linked without a CRT needs (`memcpy`, `memset`, `__chkstk`, …) and the panic
//! handler's bug check are the repository's crate `driver-proxy-rt` (`driver-rt/`), which
//! every driver of the repository uses.
//!
//! # What `DriverEntry` does (first load)
//!
//! 1. `HotSwap::new`: probes DriverProxy and creates the driver's extension, or falls back
//!    (kernel older than 24H2, no Secure Kernel, feature disabled, a routine the library
//!    needs missing): then every "wrapper" below is the routine itself and the driver runs
//!    without hot swap, same code path. Which one it is goes to `DbgPrint`, with the reason
//!    (the missing routine by name).
//! 2. Registers one V1 [`driver_proxy::EndpointTable`] with every routine the driver hands
//!    out: the `IRP_MJ_CREATE`, `IRP_MJ_CLOSE` and `IRP_MJ_DEVICE_CONTROL` dispatch routines,
//!    `DriverUnload` and the worker routine (ids 1 to 5, [`endpoints`]).
//! 3. Looks up the five wrappers and stores them, never the routines, in
//!    `MajorFunction[…]` and `DriverUnload`.
//! 4. Starts the worker thread with the library's builder
//!    (the core's `start_worker`:
//!    `hotswap.worker_thread(wrapper, ()).events(WORKER_EVENTS).timeout(WORKER_PERIOD)`):
//!    its routine's wrapper, `WaitAny` on the library's stop event and the routine's kick
//!    event (indices 0 and 1 of the wait, as the core's worker table says), a relative
//!    timeout of 500 ms. The kernel calls the routine through its wrapper at each wake-up,
//!    so a swap takes effect at the next tick. Where hot swap is unavailable the library
//!    runs the same loop on a plain system thread. The library owns the thread's storage
//!    (context and events, in a pool block of its own, tag `DPwk`, outside every image,
//!    freed when the thread is stopped and joined). When
//!    `HotSwap::worker_threads` says this kernel cannot run one (a routine missing, named
//!    in the log), the driver loads and serves **without its worker** rather than fail.
//! 5. Creates `\Device\HotSwapSample` (device type `0x8D57`, the protocol's; secure open)
//!    whose device extension is the core's shared block (`hotswap_sample_core::SharedBlock`,
//!    see [`device`]), and the symbolic link `\DosDevices\HotSwapSample` (names from
//!    `hotswap_sample_core::names`); stores the worker thread there
//!    (`WorkerThread::into_raw`). If the device cannot be created, the worker thread is
//!    stopped and joined (dropped) and `DriverEntry` fails.
//! 6. Clears `DO_DEVICE_INITIALIZING`.
//!
//! `IRP_MJ_DEVICE_CONTROL` hands the `METHOD_BUFFERED` system buffer to the core's
//! `dispatch_buffered` and completes the IRP with its status and `Information`.
//! `DriverUnload` takes the worker thread back from the device extension
//! (`WorkerThread::from_raw`), stops and joins it (`stop_and_join`: the library sets its
//! stop event and waits for the thread), and deletes the link and the device.
//!
//! # Swap mode: how v2 takes over a loaded v1
//!
//! How Windows starts a hot swap is not documented; the V1 mechanism is: the new code
//! re-registers the same endpoint ids with `IoRegisterDriverProxyEndpoints` and a phased
//! callback, and the kernel drains, stalls, repoints and resumes inside that call. This
//! driver makes that reachable with **one entry point and no exports**:
//!
//! * **The loader** (the host kernel's PE loader, or whatever servicing mechanism Windows
//!   uses) maps the incoming image, applies its relocations, binds its imports, and calls
//!   its `DriverEntry` (the PE entry point) **with the driver object of the loaded driver**.
//!   Nothing else: no second entry point, no export table, no registry convention.
//! * **Detection.** `DriverEntry` looks at `DriverObject->DeviceObject`. Null: first load.
//!   Non-null: swap mode, provided the device's extension starts with the shared block's
//!   magic `"HSwK"` and this build's layout tag (else `STATUS_INVALID_DEVICE_STATE` /
//!   `STATUS_REVISION_MISMATCH`, and nothing changes).
//! * **Finding the outgoing image's state.** The device extension holds the *exporter* of
//!   the image currently serving: the code address of its
//!   `extern "system" fn(buffer, length) -> NTSTATUS`
//!   (`hotswap_sample_core::shared::ExportState`), which writes that image's 64-byte
//!   hand-over snapshot (`hotswap_sample_core::HandOverSnapshot`).
//!   The device object and its extension are the only memory of the sample both images
//!   reach, and they outlive every image; the worker thread's address
//!   (`WorkerThread::into_raw`) is there too, because the worker thread outlives the image
//!   that started it (its context and events are the library's, in a pool block of its
//!   own).
//! * **The swap.** The incoming image gets the existing extension
//!   (`HotSwap::from_driver_object`; fallback means no swap: `STATUS_NOT_SUPPORTED`; an
//!   extension without the library's endpoint record, or with another layout of it:
//!   `STATUS_REVISION_MISMATCH`) and
//!   registers the same five ids with its own routines and the core's phased callback
//!   (`hotswap_sample_core::TakeOver`): `PreProcess` checks that an exporter is published
//!   and is not its own;
//!   **`ProxyStalled`** (no endpoint call running or starting) calls the outgoing exporter
//!   directly and imports the snapshot into its own state (`State::import_from`: counts
//!   added, one more swap recorded); `PostProcess` does nothing. A failure in any phase
//!   makes the kernel roll back, and `DriverEntry` returns that status.
//! * **Commit.** When the registration returns success, the incoming image publishes its
//!   own exporter and version in the extension (only then, so a rolled-back swap leaves the
//!   outgoing image's exporter in place), looks its wrappers up again with its full table
//!   and re-stores them (unchanged by V1 re-registration), and takes the worker thread
//!   from the extension (`WorkerThread::from_raw`), sets its kick event so that the worker
//!   ticks in the new code at once, and gives it back (`WorkerThread::into_raw`). A driver
//!   running without its worker has none to kick. `DriverEntry` returns `STATUS_SUCCESS`.
//! * **What the loader may do afterwards.** Success: the outgoing image is no longer
//!   reachable through any wrapper and nothing points into it (its exporter was replaced),
//!   so it may be unmapped once its in-flight calls have drained, which the registration
//!   already waited for. Failure: the outgoing image keeps serving; unmap the incoming image
//!   without calling its `DriverUnload` (it registered nothing that survives the rollback).
//!   Later swaps (v2 → v1 again) work the same way, and whichever image is loaded last runs
//!   `DriverUnload`, through the same wrapper.
//!
//! The protocol needs only the kernel's own calls (DriverProxy plus the imports below):
//! nothing the host kernel serves is specific to this driver.
//!
//! # v1 and v2
//!
//! The cargo feature `v2` (forwarded to the core) builds version 2; without it, version 1.
//! The versions answer `TRANSFORM` differently and name themselves in every response.
//!
//! # Test image: v2 missing an endpoint
//!
//! The cargo feature `test-omit-unload-endpoint` (**test only**; it implies `v2`) builds a
//! v2 image that takes over **incompletely**, for tests of how a loader and the kernel deal
//! with a swap that leaves an endpoint behind:
//!
//! * **First load:** exactly v2's (all five ids registered, every wrapper installed).
//! * **Swap mode:** exactly v2's (same checks, same phased callback, the hand-over in
//!   `ProxyStalled`, the same commit), except that the registered table holds only ids 1,
//!   2, 3 and 5 ([`endpoints::swap_table`]): `DriverUnload`'s id 4 is left out, so after a
//!   committed swap its wrapper still leads to the outgoing image's routine. The wrapper
//!   lookup after the commit (with the image's full table, as every image does) then fails
//!   on that id: the library's endpoint record says id 4 is registered by another image,
//!   so this image cannot get its wrapper (`LookupError::RegisteredByAnotherImage(4)`,
//!   `STATUS_OBJECT_TYPE_MISMATCH`, logged as "wrapper lookup after the swap"), and the
//!   driver object's slots keep the wrappers they hold; `DriverEntry` still returns
//!   `STATUS_SUCCESS`. Unloading such a driver runs the outgoing image's `DriverUnload`,
//!   which takes the worker thread back and stops it like any image's.
//!
//! `cargo xtask build-driver` builds it for x64 only, as
//! `target/drivers/amd64/hotswap_sample_v2_missing_unload.sys` (and `.map`), with no install
//! package; `cargo xtask test` verifies it like the other images.
//!
//! # Build
//!
//! This crate is **not a member of the repository's workspace** (the root `Cargo.toml`
//! excludes it; it has its own `[workspace]`, `Cargo.lock` and profiles): it is a
//! `#![no_main]` image for Windows targets only, which `cargo clippy --workspace` and
//! `cargo test --workspace` on the Linux host could not build. The xtask builds and lints it
//! with `--manifest-path`:
//!
//! ```text
//! cargo xtask build-driver          # v1 and v2, x64 and ARM64 (+ the x64 test image), into target/drivers/
//! cargo xtask verify target/drivers/amd64/hotswap_sample_v1.sys
//! ```
//!
//! or by hand (the linker, `rust-lld`, is set in the repository's `.cargo/config.toml`):
//!
//! ```text
//! cargo build --release --manifest-path sample/wdm/Cargo.toml --target x86_64-pc-windows-msvc [--features v2]
//! ```
//!
//! Release builds use fat LTO, one codegen unit and `panic = "abort"`; `build.rs` passes the
//! kernel link flags (`/DRIVER /SUBSYSTEM:NATIVE,10.0 /ENTRY:DriverEntry /NODEFAULTLIB
//! /RELEASE /TSAWARE:NO`) for Windows targets only.
//!
//! # Imports
//!
//! `ntoskrnl.exe` only: `MmGetSystemRoutineAddress` (through `driver-proxy`), `IoCreateDevice`,
//! `IoDeleteDevice`, `IoCreateSymbolicLink`, `IoDeleteSymbolicLink`, `IofCompleteRequest`,
//! and `DbgPrint`; on ARM64 also the C run-time routines the code calls (`memcpy`,
//! `memset`, …, declared by `driver-proxy-rt`). An image contains only the imports its code
//! references: the panic handler's `KeBugCheckEx` (declared by `driver-proxy-rt`) is
//! imported only if a panic is reachable, and none is (the host's image tests check both).
//!
//! Nothing the library resolves at run time is imported statically: the DriverProxy
//! routines, the event routines (`KeInitializeEvent`, `KeSetEvent`, `KeClearEvent`,
//! `KeResetEvent`, `KeReadStateEvent`), `KeWaitForMultipleObjects`, `PsCreateSystemThread`,
//! `ZwWaitForSingleObject`, `ZwClose`, `IoAllocateDriverObjectExtension`,
//! `IoGetDriverObjectExtension`, `ExAllocatePool2`, `ExAllocatePoolWithTag` and
//! `ExFreePoolWithTag`. A static import the kernel lacks fails the load
//! (`STATUS_DRIVER_ENTRYPOINT_NOT_FOUND`); resolved at run time, a missing routine only
//! costs what needs it, named in the log: hot swap (the DriverProxy routines and the
//! driver-object extensions of the endpoint record), or the worker thread (the event, wait,
//! handle and pool routines: the driver then serves without it; `ExAllocatePool2` alone
//! missing costs nothing, the library then allocates with `ExAllocatePoolWithTag`). The
//! worker's stop, wait and handle are the library's (`WorkerThread::stop_and_join`), so the
//! driver calls none of those routines itself.
//!
//! # Panics
//!
//! None are reachable by design (the core denies panicking constructs); the handler stops
//! the system with bug check `0x48535750` ("HSWP"), parameters: line, column, driver
//! version.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(
    target_os = "windows",
    target_env = "msvc",
    target_pointer_width = "64"
)))]
compile_error!(
    "hotswap-sample-wdm is a Windows kernel driver: build it with `cargo xtask build-driver`, \
     or with --target x86_64-pc-windows-msvc / aarch64-pc-windows-msvc"
);

pub mod device;
pub mod endpoints;
pub mod swap;
pub mod wdm_sys;

use core::ffi::CStr;

use driver_proxy::{DriverObject, HotSwap, NtStatus, Unavailable, Wrapped};
use hotswap_sample_core::worker::{
    SampleWorkerRoutine, SampleWorkerThread, WorkerStart, start_worker as core_start_worker,
};
use hotswap_sample_core::{State, THIS_BUILD};

use crate::device::Device;
use crate::endpoints::Wrappers;
use crate::wdm_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING};

/// This image's counters: each image has its own; a swap moves them (crate docs).
pub static STATE: State = State::new();

/// Bug check code of a Rust panic: `"HSWP"`.
pub const PANIC_BUGCHECK_CODE: u32 = u32::from_be_bytes(*b"HSWP");

/// The entry point (`/ENTRY:DriverEntry`): first load, or swap mode when the driver object
/// already has this driver's device (crate docs).
///
/// IRQL: `PASSIVE_LEVEL` (a system thread).
///
/// # Safety
/// Called by the I/O manager (or a loader in swap mode) with the driver's own
/// `DRIVER_OBJECT`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver: PDRIVER_OBJECT,
    _registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded contract.
    match unsafe { entry(driver) } {
        Ok(()) => NtStatus::SUCCESS.raw(),
        Err(status) => {
            log_status(c"DriverEntry failed", status);
            status.raw()
        }
    }
}

/// `DriverEntry`'s body.
///
/// # Safety
/// As [`DriverEntry`].
unsafe fn entry(driver: PDRIVER_OBJECT) -> Result<(), NtStatus> {
    // SAFETY: the driver's own DRIVER_OBJECT (contract), valid until unload.
    let proxy_driver = unsafe { DriverObject::from_raw(driver.cast()) }?;
    // SAFETY: the driver's own DRIVER_OBJECT; no unload can run during DriverEntry.
    match unsafe { Device::existing(driver) }? {
        // SAFETY: as above.
        None => unsafe { first_load(driver, proxy_driver) },
        // SAFETY: as above.
        Some(device) => unsafe { swap::take_over(driver, proxy_driver, &device) },
    }
}

/// The first load (crate docs, steps 1–6).
///
/// # Safety
/// As [`DriverEntry`]; the driver has no device yet.
unsafe fn first_load(driver: PDRIVER_OBJECT, proxy_driver: DriverObject) -> Result<(), NtStatus> {
    let hotswap = HotSwap::new(proxy_driver)?;
    match hotswap.unavailable() {
        None => log_version(c"DriverEntry: hot swap available"),
        Some(reason) => log_unavailable(
            c"DriverEntry: hot swap unavailable, running without it",
            reason,
        ),
    }
    let table = endpoints::table()?;
    hotswap.register(&table, None)?;
    let wrappers = Wrappers::look_up(&hotswap, &table)?;
    // SAFETY: our driver object; it has no device yet, so nothing reads the slots.
    unsafe { wrappers.install(driver) };
    // Dropped (stopped and joined) if the device cannot be created.
    let worker = start_worker(&hotswap, wrappers.worker)?;
    // SAFETY: our driver object, in DriverEntry.
    let device = unsafe { Device::create(driver, THIS_BUILD, swap::exporter()) }?;
    if let Some(thread) = worker {
        // The device extension holds the thread from now on: the unload routine of whichever
        // image is loaded last takes it back to stop it (`device::stop_worker`).
        device.extension().store_worker(thread.into_raw());
    }
    device.start();
    Ok(())
}

/// Starts the worker thread ([`core_start_worker`]), or `None` when this kernel cannot run
/// it: the reason is logged and the driver serves without its worker rather than fail to
/// load.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// The status of a failed `spawn` on a kernel that has every routine a worker needs.
fn start_worker(
    hotswap: &HotSwap,
    routine: Wrapped<SampleWorkerRoutine>,
) -> Result<Option<SampleWorkerThread>, NtStatus> {
    Ok(match core_start_worker(hotswap, routine)? {
        WorkerStart::Started(thread) => Some(thread),
        WorkerStart::Unavailable(reason) => {
            log_unavailable(c"DriverEntry: no worker thread, running without it", reason);
            None
        }
    })
}

/// `DbgPrint("HotSwapSample v<version>: <message>")`.
fn log_version(message: &CStr) {
    // SAFETY: a NUL-terminated format whose conversions match the arguments (%u: u32,
    // %s: a NUL-terminated string).
    unsafe {
        wdm_sys::DbgPrint(
            c"HotSwapSample v%u: %s\n".as_ptr(),
            u32::from(THIS_BUILD.raw()),
            message.as_ptr(),
        );
    }
}

/// `DbgPrint("HotSwapSample v<version>: <message>: <status>")`.
fn log_status(message: &CStr, status: NtStatus) {
    // SAFETY: as in `log_version`; %08X takes the status as a u32.
    unsafe {
        wdm_sys::DbgPrint(
            c"HotSwapSample v%u: %s: 0x%08X\n".as_ptr(),
            u32::from(THIS_BUILD.raw()),
            message.as_ptr(),
            status.raw().cast_unsigned(),
        );
    }
}

/// `DbgPrint("HotSwapSample v<version>: <message>: <why>")`, naming the kernel routine
/// that is missing, or the status of the kernel's refusal, when that is the reason.
fn log_unavailable(message: &CStr, reason: Unavailable) {
    let (why, name): (&CStr, &str) = match reason {
        Unavailable::ExportMissing(name) => (c"the kernel does not export ", name),
        Unavailable::FeatureDisabled => (c"DriverProxy is not enabled for this driver", ""),
        Unavailable::NotSupported => (c"the system does not support DriverProxy", ""),
        Unavailable::DriverBlocked => (c"the driver is blocked from DriverProxy by policy", ""),
        Unavailable::RecordRefused(status) => {
            // SAFETY: as in `log_version`; %08X takes the status as a u32.
            unsafe {
                wdm_sys::DbgPrint(
                    c"HotSwapSample v%u: %s: the kernel refused the storage of the endpoint record: 0x%08X\n"
                        .as_ptr(),
                    u32::from(THIS_BUILD.raw()),
                    message.as_ptr(),
                    status.raw().cast_unsigned(),
                );
            }
            return;
        }
    };
    // The routine names are short ASCII; a longer one would be cut, never overread.
    let length = i32::try_from(name.len()).unwrap_or(0);
    // SAFETY: as in `log_version`; `%.*s` takes an int length and reads at most that many
    // bytes of `name` (no NUL needed).
    unsafe {
        wdm_sys::DbgPrint(
            c"HotSwapSample v%u: %s: %s%.*s\n".as_ptr(),
            u32::from(THIS_BUILD.raw()),
            message.as_ptr(),
            why.as_ptr(),
            length,
            name.as_ptr(),
        );
    }
}

/// `DbgPrint` of a committed swap.
fn log_swap(from: u32, swaps: u32) {
    // SAFETY: as in `log_version`; three u32 for three %u.
    unsafe {
        wdm_sys::DbgPrint(
            c"HotSwapSample v%u: took over from v%u (swap %u)\n".as_ptr(),
            u32::from(THIS_BUILD.raw()),
            from,
            swaps,
        );
    }
}

/// Stops the system with bug check [`PANIC_BUGCHECK_CODE`], parameters: line, column,
/// driver version (`driver_proxy_rt::panic_bug_check`). None is reachable (crate docs).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    driver_proxy_rt::panic_bug_check(PANIC_BUGCHECK_CODE, info, usize::from(THIS_BUILD.raw()))
}
