//! The test harness for a driver author's own `.sys`: load it into the host kernel, send it
//! every kind of request, hot-swap it under load, inject faults, and get a leak report at
//! unload, from an ordinary `cargo test` on x86-64 Linux.
//!
//! This module is the supported surface for tests of driver images; the sample's image tests
//! and the example driver's (`examples/scratchpad`) use nothing else. The README's *Testing
//! your driver on Linux* walks from an empty driver crate to a green `cargo test`.
//!
//! ```no_run
//! use driver_proxy_host::harness::{self, Images, TestDriver, ctl_code, METHOD_BUFFERED};
//!
//! let images = Images::find(env!("CARGO_MANIFEST_DIR"));
//! let Some(v1) = images.require("my_driver.sys") else { return }; // skipped (says why)
//! let driver = TestDriver::load(&v1, "MyDriver").expect("DriverEntry succeeds");
//! assert!(driver.dbg_print().iter().any(|line| line.contains("loaded")));
//! let handle = driver.open("\\\\.\\MyDriver").expect("IRP_MJ_CREATE succeeds");
//! let mut buffer = [0u8; 16];
//! let read = handle.read(&mut buffer, 0);
//! assert!(read.status.is_success());
//! let code = ctl_code(0x8000, 0x800, METHOD_BUFFERED, 0);
//! let answer = handle.device_control(code, b"ping", &mut buffer);
//! assert_eq!(answer.information, 4);
//! drop(handle);                                   // IRP_MJ_CLEANUP, IRP_MJ_CLOSE
//! driver.unload().expect("nothing left behind");  // else the error lists the leaks
//! ```
//!
//! # The API
//!
//! | what | how |
//! |---|---|
//! | find the images `cargo xtask build-driver` wrote | [`Images::find`], [`Images::require`] (skips with a note, or fails when `DRIVER_PROXY_REQUIRE_IMAGES` is set) |
//! | load an image as a driver, run its `DriverEntry` | [`TestDriver::load`] (service name), [`TestDriver::load_with`] ([`LoadOptions`]: registry path; DriverProxy features, a failing extension creation, the drain timeout, applied before the entry runs) |
//! | its entry's status, what it printed | [`TestDriver::entry_status`]; a failed entry is [`ImageDriverError::Entry`] with the status; [`TestDriver::dbg_print`] (this driver's), [`dbg_print_log`] (every driver's, process-wide) |
//! | open a device by NT name or symbolic link | [`TestDriver::open`] (`\\.\X`, `\??\X`, `\DosDevices\X`, `\Device\X`): `IRP_MJ_CREATE` |
//! | requests | [`Handle::read`], [`Handle::write`] (the device's buffering: `DO_BUFFERED_IO`, `DO_DIRECT_IO` with an MDL, or neither), [`Handle::device_control`] (all four transfer types, from the code's two low bits), each a [`Completion`] (status and `Information`) |
//! | cleanup and close | [`Handle::close`] ([`Closed`]: both statuses), or drop the handle |
//! | hot swap | [`TestDriver::swap_to`] ([`ImageSwap`]: drain, stall, entry times); under load: [`TestDriver::stress`] ([`Stress`], [`StressReport`]) |
//! | look inside the swap engine, fail a phase | [`TestDriver::hot_swap`] ([`ExtensionControl`]: `set_drain_timeout`, `fail_next_swap_in`, `swaps_completed`, `in_flight`, …) |
//! | faults | [`faults`]: hold a completion (a request stays in flight inside the driver), fail the calling thread's *n*th pool allocation, thread creation or MDL mapping, hide a kernel export |
//! | pool by tag | [`TestDriver::pool`] (what the driver holds now), [`pool_usage`] (a tag's totals) |
//! | unload with a leak report | [`TestDriver::unload`]: `DriverUnload`, then [`ImageDriverError::Unload`] with [`Leaks`] (devices, symbolic links, pool by tag, threads, kernel handles, MDLs, work items) if anything was left |
//! | a bugcheck as a test result | [`isolated`]: runs part of a test in a child process and returns its [`Outcome`] (the bugcheck parsed); [`isolated_each`]: one child per case, in parallel (process-wide faults such as a hidden export, one configuration each) |
//!
//! # What the model checks, in the spirit of Driver Verifier
//!
//! Each of these stops the process with `host kernel BUGCHECK <code> <name> in <routine>:
//! <what>` (assert it with [`isolated`]):
//!
//! * **IRPs**: completed twice (`MULTIPLE_IRP_COMPLETE_REQUESTS`, 0x44); a dispatch routine
//!   that returns without completing and without `STATUS_PENDING`, or returns a status other
//!   than the one it completed with; `STATUS_PENDING` without `IoMarkIrpPending`; a pended
//!   IRP never completed (lost) within the pending timeout ([`faults::set_pending_timeout`],
//!   30 s by default); completing with `STATUS_PENDING`; more `Information` than a buffered
//!   output buffer holds (all `DRIVER_VERIFIER_IOMANAGER_VIOLATION`, 0xC9).
//! * **Pool**: every block is accounted to its tag and to the driver; freeing with another
//!   tag, twice, or memory that is not pool (`BAD_POOL_CALLER`, 0xC2); what is not freed at
//!   unload is reported per tag. `ExAllocatePoolWithTag` memory is filled with `0xA5`, so code
//!   relying on zeroing it did not do fails visibly.
//! * **MDLs and probes**: freeing an MDL twice, the I/O manager's own, one attached to an
//!   IRP or one still locked; unlocking unlocked pages; mapping unlocked pages or mapping
//!   twice; unmapping what is not mapped (all 0xC4); a failed `ProbeForRead`/`ProbeForWrite`
//!   or user-mode `MmProbeAndLockPages` raises an exception no Rust driver can catch
//!   (`KMODE_EXCEPTION_NOT_HANDLED`, 0x1E).
//! * **Work items**: queued again before their routine started, freed while queued or twice
//!   (0xC4); the unload waits for running ones, as Windows does.
//! * **Handles, events, threads**: closing a handle twice (`INVALID_KERNEL_HANDLE`, 0x93), an
//!   uninitialised or moved event, 65 wait objects; threads and handles left at unload.
//! * **IRQL, where the model tracks it.** A thread holding a spin lock
//!   (`KeAcquireSpinLockRaiseToDpc`/`KeAcquireSpinLock`, `KeAcquireSpinLockAtDpcLevel`) is at
//!   `DISPATCH_LEVEL`; every routine of the model checks its documented limit against that
//!   (`IoCreateDevice`, `ZwClose`, `PsCreateSystemThread`, `MmGetSystemRoutineAddress`,
//!   `IoRegisterDriverProxyEndpoints`, … at `PASSIVE_LEVEL` only; paged pool, probes and
//!   waits with a timeout at `<= APC_LEVEL`), and a dispatch routine, `DriverEntry`,
//!   `DriverUnload` or work item that returns with a lock held, a lock released that the
//!   thread does not hold, or a lock acquired twice, are bugchecks (0xC4).
//! * **Faults of the image's own code** (access violation, illegal instruction, division by
//!   zero, breakpoint) are reported as `KMODE_EXCEPTION_NOT_HANDLED` with the image, the RVA
//!   and the request being dispatched; a call into an unloaded or swapped-out image names it;
//!   a call that does not return is reported by the watchdog ([`faults::set_call_limit`]).
//!
//! # What it does not check
//!
//! * **IRQL, beyond spin locks.** The only way a thread leaves `PASSIVE_LEVEL` here is a spin
//!   lock of the kernel's. `KeGetCurrentIrql`, `KeRaiseIrql` and `KeLowerIrql` are inline
//!   `CR8` accesses on x64, which fault in user mode: such a driver stops with a fault report
//!   naming the instruction's RVA. There are no interrupts, DPCs or timers, so nothing runs at
//!   `DISPATCH_LEVEL` by itself, and what a DPC or an ISR would break is not caught; queued
//!   spin locks and `ExAcquireFastMutex`-style locks are not modelled (an image importing them
//!   is refused by the loader, naming the import).
//! * Plug and Play and power IRPs, device stacks, completion routines, cancellation, fast I/O,
//!   `StartIo`, security and access checks (a control code's required access is not
//!   checked), physical memory and DMA, structured exception handling, and ARM64 code (ARM64
//!   images are verified by `cargo xtask verify`, never run). Timing is Linux's.
//!
//! # Process-wide state
//!
//! The host kernel is one per process: driver and device names are shared by every test of a
//! test binary (use distinct names, or serialise the tests that load the same driver), and
//! some faults are process-wide ([`faults::hold_next_completion`], [`faults::hide_export`],
//! the timeouts). A bugcheck ends the process: test it in [`isolated`].

mod images;
mod isolate;
mod stress;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver_proxy::NtStatus;

pub use crate::image::LoadError;
pub use crate::image_driver::{ImageDriver, ImageDriverError, ImageSwap, LoadOptions};
pub use crate::kernel::control::{
    DriverFeatures, EndpointKey, ExtensionControl, Phase, PoolLeak, PoolUsage, SwapReport,
    pool_usage,
};
pub use crate::wdm::{Closed, Leaks, dbg_print_log};
pub use images::Images;
pub use isolate::{Bugcheck, Outcome, isolated, isolated_as, isolated_each};
pub use stress::{Stress, StressReport};

use crate::image_driver::Connection;

/// `METHOD_BUFFERED`: the transfer type of a control code (its two low bits).
pub const METHOD_BUFFERED: u32 = 0;
/// `METHOD_IN_DIRECT`.
pub const METHOD_IN_DIRECT: u32 = 1;
/// `METHOD_OUT_DIRECT`.
pub const METHOD_OUT_DIRECT: u32 = 2;
/// `METHOD_NEITHER`.
pub const METHOD_NEITHER: u32 = 3;
/// `FILE_ANY_ACCESS`.
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_READ_ACCESS`.
pub const FILE_READ_ACCESS: u32 = 1;
/// `FILE_WRITE_ACCESS`.
pub const FILE_WRITE_ACCESS: u32 = 2;

/// `CTL_CODE(DeviceType, Function, Method, Access)` of `wdm.h`.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// How a request was completed: `IoStatus.Status` and `IoStatus.Information`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The completion status.
    pub status: NtStatus,
    /// `Information`: bytes transferred (or what the request defines).
    pub information: usize,
}

impl Completion {
    /// `(status, information)`.
    #[must_use]
    pub const fn new(status: NtStatus, information: usize) -> Self {
        Self {
            status,
            information,
        }
    }

    /// `NT_SUCCESS(status)`.
    #[must_use]
    pub const fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

impl From<(NtStatus, usize)> for Completion {
    fn from((status, information): (NtStatus, usize)) -> Self {
        Self::new(status, information)
    }
}

impl fmt::Display for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Information {}", self.status, self.information)
    }
}

/// A driver image loaded into the host kernel, under test.
///
/// `Send + Sync`: share it with `&` (or `Arc`) between the threads of a test. Dropped without
/// [`TestDriver::unload`], the driver stays loaded for the rest of the process.
#[derive(Debug)]
pub struct TestDriver {
    driver: Arc<ImageDriver>,
}

impl TestDriver {
    /// Maps the image at `image` and starts it as the driver `service` (registry path
    /// `\Registry\Machine\System\CurrentControlSet\Services\<service>`): its `DriverEntry`
    /// runs on this thread.
    ///
    /// # Errors
    /// [`ImageDriverError::Read`] (no such file), [`ImageDriverError::Load`] (the loader
    /// names what it refused: a wrong machine, an import the model lacks, …),
    /// [`ImageDriverError::Entry`] (`DriverEntry` failed; its status).
    pub fn load(image: impl AsRef<Path>, service: &str) -> Result<Self, ImageDriverError> {
        Self::load_with(image, &LoadOptions::new(service))
    }

    /// [`TestDriver::load`] with [`LoadOptions`].
    ///
    /// # Errors
    /// As [`TestDriver::load`].
    pub fn load_with(
        image: impl AsRef<Path>,
        options: &LoadOptions,
    ) -> Result<Self, ImageDriverError> {
        ImageDriver::load_with(image.as_ref(), options).map(|driver| Self {
            driver: Arc::new(driver),
        })
    }

    /// A driver that other code loaded (a client's lab, for instance), to test it through
    /// this API.
    #[must_use]
    pub fn attach(driver: Arc<ImageDriver>) -> Self {
        Self { driver }
    }

    /// The image driver underneath (its handles keep it alive).
    #[must_use]
    pub fn image_driver(&self) -> &Arc<ImageDriver> {
        &self.driver
    }

    /// The service name it was loaded as.
    #[must_use]
    pub fn service(&self) -> &str {
        self.driver.driver().name()
    }

    /// What its `DriverEntry` returned (a success code).
    #[must_use]
    pub fn entry_status(&self) -> NtStatus {
        self.driver.driver().entry_status()
    }

    /// What it printed with `DbgPrint` since it was loaded (every image of it, its work items
    /// and threads included), in order, each message as printed (with its line end).
    #[must_use]
    pub fn dbg_print(&self) -> Vec<String> {
        self.driver.driver().dbg_print()
    }

    /// The file name of the image serving now.
    #[must_use]
    pub fn serving_image(&self) -> String {
        self.driver.serving_image()
    }

    /// The images it was swapped away from (retired: a call into one aborts, naming it).
    #[must_use]
    pub fn retired_images(&self) -> Vec<String> {
        self.driver.retired_images()
    }

    /// The pool it holds now, per tag (blocks allocated by its code and not freed).
    #[must_use]
    pub fn pool(&self) -> Vec<PoolLeak> {
        self.driver.driver().pool()
    }

    /// Its DriverProxy extension, if it created one (it runs with hot swap): swap state and
    /// faults of the engine.
    #[must_use]
    pub fn hot_swap(&self) -> Option<ExtensionControl> {
        self.driver.extension()
    }

    /// Opens `path` (`\\.\X`, `\??\X`, `\DosDevices\X`, or a device name such as `\Device\X`),
    /// following symbolic links to a device of this driver, and sends `IRP_MJ_CREATE`.
    ///
    /// # Errors
    /// `STATUS_OBJECT_NAME_NOT_FOUND` (no such name, a dangling link, a device of another
    /// driver), `STATUS_OBJECT_NAME_INVALID`, `STATUS_NO_SUCH_DEVICE` (still initialising),
    /// `STATUS_ACCESS_DENIED` (an exclusive device already open), or the status the driver
    /// completed `IRP_MJ_CREATE` with.
    pub fn open(&self, path: &str) -> Result<Handle, NtStatus> {
        self.driver
            .connect(path)
            .map(|connection| Handle { connection })
    }

    /// Hot-swaps the driver to the image at `image`: maps it and runs its `DriverEntry` with
    /// the driver object of the loaded driver (the incoming image re-registers its endpoints;
    /// the kernel drains calls in the outgoing image, holds new ones, repoints, releases);
    /// on success the outgoing image is retired. Requests may run on other threads meanwhile.
    ///
    /// # Errors
    /// [`ImageDriverError::SwapRefused`] (rolled back: the outgoing image keeps serving),
    /// [`ImageDriverError::IncompleteSwap`] (some endpoints stayed behind),
    /// [`ImageDriverError::Read`], [`ImageDriverError::Load`].
    pub fn swap_to(&self, image: impl AsRef<Path>) -> Result<ImageSwap, ImageDriverError> {
        self.driver.swap_to(image.as_ref())
    }

    /// Sends requests from several threads, each with its own handle, and optionally
    /// hot-swaps the driver meanwhile (see [`Stress`]): `request(handle, thread, index)` sends
    /// one request and says whether its answer was right.
    #[must_use]
    pub fn stress<F>(&self, stress: &Stress, request: F) -> StressReport
    where
        F: Fn(&Handle, usize, u64) -> Result<(), String> + Sync,
    {
        stress::run(self, stress, &request)
    }

    /// Unloads the driver: waits (up to 10 s) for the handles still open to close, runs
    /// `DriverUnload` (of the image serving now), checks what was left behind, and unmaps the
    /// image.
    ///
    /// # Errors
    /// [`ImageDriverError::Unload`] with the [`Leaks`] ([`ImageDriverError::leaks`]);
    /// [`ImageDriverError::NoUnloadRoutine`]; [`ImageDriverError::HandlesOpen`] (the driver
    /// stays loaded).
    pub fn unload(self) -> Result<(), ImageDriverError> {
        self.unload_within(Duration::from_secs(10))
    }

    /// [`TestDriver::unload`], waiting at most `timeout` for open handles.
    ///
    /// # Errors
    /// As [`TestDriver::unload`].
    pub fn unload_within(self, timeout: Duration) -> Result<(), ImageDriverError> {
        let deadline = Instant::now() + timeout;
        let mut driver = self.driver;
        loop {
            match Arc::try_unwrap(driver) {
                Ok(driver) => return driver.unload(),
                Err(shared) if Instant::now() < deadline => {
                    driver = shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(shared) => {
                    return Err(ImageDriverError::HandlesOpen {
                        image: shared.serving_image(),
                        open: Arc::strong_count(&shared) - 1,
                    });
                }
            }
        }
    }
}

/// An open handle (a file object) on a device of a [`TestDriver`]: `Send + Sync`, usable from
/// several threads at once; it keeps the driver loaded. Dropping it closes it.
#[derive(Debug)]
pub struct Handle {
    connection: Connection,
}

impl Handle {
    /// `IRP_MJ_READ` of `buffer.len()` bytes at `offset`, with the device's buffering
    /// (`DO_BUFFERED_IO`: a system buffer, its first `Information` bytes copied to `buffer`
    /// unless the status is an error; `DO_DIRECT_IO`: an MDL of `buffer`, none for 0 bytes;
    /// neither: `Irp->UserBuffer` is `buffer`).
    #[must_use]
    pub fn read(&self, buffer: &mut [u8], offset: u64) -> Completion {
        self.connection.read(buffer, offset).into()
    }

    /// `IRP_MJ_WRITE` of `data` at `offset`, with the device's buffering.
    #[must_use]
    pub fn write(&self, data: &[u8], offset: u64) -> Completion {
        self.connection.write(data, offset).into()
    }

    /// `IRP_MJ_DEVICE_CONTROL` with `code`, its buffers built for the code's transfer type:
    /// `METHOD_BUFFERED` (one system buffer; `Information` bytes copied back unless the status
    /// is an error), `METHOD_IN_DIRECT`/`METHOD_OUT_DIRECT` (input in a system buffer,
    /// `output` described by an MDL locked for read/write access), `METHOD_NEITHER`
    /// (`Type3InputBuffer` = `input`, `UserBuffer` = `output`). With the direct and neither
    /// types the driver works on `output` itself.
    #[must_use]
    pub fn device_control(&self, code: u32, input: &[u8], output: &mut [u8]) -> Completion {
        self.connection.device_control(code, input, output).into()
    }

    /// Closes the handle: `IRP_MJ_CLEANUP` and `IRP_MJ_CLOSE`, both statuses.
    #[allow(clippy::must_use_candidate)] // closing is done for its effect
    pub fn close(self) -> Closed {
        self.connection.close()
    }
}

/// Faults and knobs of the host kernel for tests.
pub mod faults {
    use std::time::Duration;

    pub use crate::wdm::io::hold::{Held, hold_next_completion};

    /// Makes the `nth` pool allocation of the calling thread from now on fail
    /// (`ExAllocatePool2`/`ExAllocatePoolWithTag` return null, `IoAllocateMdl` and
    /// `IoAllocateWorkItem` too, `IoCreateDevice` gives `STATUS_INSUFFICIENT_RESOURCES`).
    /// Dispatch routines run on the thread that sends the request: arm it there. `0` disarms.
    pub fn fail_pool_allocation(nth: u32) {
        crate::kernel::control::fail_pool_allocation(nth);
    }

    /// Makes the `nth` system-thread creation of the calling thread fail. `0` disarms.
    pub fn fail_thread_creation(nth: u32) {
        crate::kernel::control::fail_thread_creation(nth);
    }

    /// Makes the `nth` `MmMapLockedPagesSpecifyCache` of the calling thread return null (so
    /// `MmGetSystemAddressForMdlSafe` does). `0` disarms.
    pub fn fail_mdl_mapping(nth: u32) {
        crate::kernel::control::fail_mdl_mapping(nth);
    }

    /// Hides a kernel export (process-wide, for the rest of the process): a static import of
    /// it makes the loader refuse an image, `MmGetSystemRoutineAddress` answers null for it.
    /// The library resolves its routines once per process, so hide before any driver loads
    /// (a test binary of its own, or [`super::isolated`]).
    pub fn hide_export(name: &str) {
        crate::hide_export(name);
    }

    /// How long a pended IRP may stay uncompleted before the I/O manager bugchecks (default
    /// 30 s). Process-wide.
    pub fn set_pending_timeout(timeout: Duration) {
        crate::wdm::set_pending_timeout(timeout);
    }

    /// How long a call into a driver (`DriverEntry`, a dispatch routine, a work item,
    /// `DriverUnload`) may run before the watchdog reports it and aborts (default 60 s).
    /// Process-wide.
    pub fn set_call_limit(limit: Duration) {
        crate::wdm::set_call_limit(limit);
    }
}
