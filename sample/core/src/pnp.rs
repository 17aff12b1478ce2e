//! The framework-free half of the KMDF front end (`sample/kmdf`), a `PnP` function driver of
//! the root-enumerated device node `Root\HotSwapSample`: everything it decides that is not a
//! call into the framework, here so that Linux CI compiles and tests it (the `wdk` crates,
//! and therefore `sample/kmdf` itself, build only on Windows with the WDK).
//!
//! * [`ENDPOINTS`]: every routine the driver hands to the framework or the kernel, with its
//!   V1 endpoint id and parameter count: the driver's one endpoint table, and the contract
//!   between two KMDF images of a swap.
//! * [`DeviceContext`]: the context of the driver's `WDFDEVICE`: the worker thread the device
//!   runs while it is in D0, and how often it entered D0.
//! * [`enter_d0`] and [`leave_d0`]: what `EvtDeviceD0Entry` and `EvtDeviceD0Exit` do with
//!   it: start the worker thread, stop and join it.
//! * [`PowerState`]: the `WDF_POWER_DEVICE_STATE` those callbacks receive, for the log.
//! * [`CONTEXT_TYPE_EXTENSION_KEY`] and [`DEVICE_CONTEXT_NAME`]: where every image of the
//!   driver finds the context's type (below).
//!
//! The requests themselves are served by [`crate::device_control`]; the state both images of
//! a swap reach is [`crate::shared`]; the swap callback is [`crate::takeover`].
//!
//! # The device context across images
//!
//! KMDF finds an object's context by comparing the address of a *type description*
//! (`WDF_OBJECT_CONTEXT_TYPE_INFO`) with the one the context was created with
//! (`WdfObjectGetTypedContextWorker`: a pointer comparison). A C driver declares that
//! description as a global of its image (`WDF_DECLARE_CONTEXT_TYPE`). A second image of a hot
//! swap has a global of its own, at another address, so it would never find the context the
//! first image created, and once the first image is unmapped the framework would hold a
//! pointer into freed memory. The front end therefore keeps the description in a **driver
//! object extension** (`IoAllocateDriverObjectExtension` under [`CONTEXT_TYPE_EXTENSION_KEY`],
//! written by the first image's `DriverEntry`, name [`DEVICE_CONTEXT_NAME`] stored beside it):
//! memory owned by the driver object, which every image finds and which outlives the device.
//! The context itself ([`DeviceContext`]) is plain `#[repr(C)]` memory with a header, which
//! an image checks ([`check_context_header`]) before using it.
//!
//! # The worker thread
//!
//! The worker belongs to the device: `EvtDeviceD0Entry` starts it ([`enter_d0`]) and
//! `EvtDeviceD0Exit` stops and joins it ([`leave_d0`]), so it runs exactly while the device
//! is in D0 (started, not disabled, not asleep). The context holds it as the address
//! `WorkerThread::into_raw` gives; the image that stops it takes it back with
//! `WorkerThread::from_raw`, the front end's unsafe step. A swap does not touch it: its
//! routine is an endpoint, so after the swap its next wake-up (at most
//! [`crate::worker::WORKER_PERIOD`] later) runs in the new image.

use core::ffi::{CStr, c_void};
use core::fmt;
use core::mem::{offset_of, size_of};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use driver_proxy::{NtStatus, WorkerError};

use crate::worker::{SampleWorkerRoutine, SampleWorkerThread};

/// One routine the KMDF build hands out, as registered in its V1 endpoint table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The V1 id (`DRIVER_PROXY_ENDPOINT_INFORMATION.Id`).
    pub id: u32,
    /// The routine's parameter count (`ParameterCount`). `driver-proxy` derives it from the
    /// routine's type; the front end asserts at compile time that the two agree.
    pub parameter_count: u32,
    /// The callback's name in the WDF / `DriverProxy` documentation.
    pub callback: &'static str,
    /// Where the front end hands its wrapper out.
    pub handed_out_as: &'static str,
}

/// `EvtIoDeviceControl`: `VOID (WDFQUEUE, WDFREQUEST, size_t OutputBufferLength,
/// size_t InputBufferLength, ULONG IoControlCode)`.
pub const DEVICE_CONTROL: EndpointSpec = EndpointSpec {
    id: 1,
    parameter_count: 5,
    callback: "EvtIoDeviceControl",
    handed_out_as: "WDF_IO_QUEUE_CONFIG.EvtIoDeviceControl of the device's default queue",
};

/// `EvtDriverUnload`: `VOID (WDFDRIVER)`.
pub const DRIVER_UNLOAD: EndpointSpec = EndpointSpec {
    id: 2,
    parameter_count: 1,
    callback: "EvtDriverUnload",
    handed_out_as: "WDF_DRIVER_CONFIG.EvtDriverUnload",
};

/// The worker routine, `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE`:
/// `BOOLEAN (PVOID WorkerContext, NTSTATUS WaitStatus)`.
pub const WORKER: EndpointSpec = EndpointSpec {
    id: 3,
    parameter_count: 2,
    callback: "DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE",
    handed_out_as: "the hot-swappable worker thread's start context (EvtDeviceD0Entry)",
};

/// `EvtDriverDeviceAdd`: `NTSTATUS (WDFDRIVER, PWDFDEVICE_INIT)`.
pub const DEVICE_ADD: EndpointSpec = EndpointSpec {
    id: 4,
    parameter_count: 2,
    callback: "EvtDriverDeviceAdd",
    handed_out_as: "WDF_DRIVER_CONFIG.EvtDriverDeviceAdd",
};

/// `EvtDeviceD0Entry`: `NTSTATUS (WDFDEVICE, WDF_POWER_DEVICE_STATE PreviousState)`.
pub const D0_ENTRY: EndpointSpec = EndpointSpec {
    id: 5,
    parameter_count: 2,
    callback: "EvtDeviceD0Entry",
    handed_out_as: "WDF_PNPPOWER_EVENT_CALLBACKS.EvtDeviceD0Entry",
};

/// `EvtDeviceD0Exit`: `NTSTATUS (WDFDEVICE, WDF_POWER_DEVICE_STATE TargetState)`.
pub const D0_EXIT: EndpointSpec = EndpointSpec {
    id: 6,
    parameter_count: 2,
    callback: "EvtDeviceD0Exit",
    handed_out_as: "WDF_PNPPOWER_EVENT_CALLBACKS.EvtDeviceD0Exit",
};

/// Every routine the KMDF build hands to the framework or the kernel, in its one V1 table. A
/// swap between two KMDF images registers the same ids with the same parameter counts
/// (`IoRegisterDriverProxyEndpoints` refuses another count with
/// `STATUS_INVALID_PARAMETER_3`).
pub const ENDPOINTS: [EndpointSpec; 6] = [
    DEVICE_CONTROL,
    DRIVER_UNLOAD,
    WORKER,
    DEVICE_ADD,
    D0_ENTRY,
    D0_EXIT,
];

const _: () =
    assert!(<SampleWorkerRoutine as driver_proxy::Endpoint>::ARITY == WORKER.parameter_count);

/// A `WDF_POWER_DEVICE_STATE` (`wdfdevice.h`): the state a device leaves in
/// `EvtDeviceD0Entry` or enters in `EvtDeviceD0Exit`. The front end asserts at compile time
/// that [`PowerState::raw`] matches the `wdk-sys` constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// `WdfPowerDeviceInvalid` (0).
    Invalid,
    /// `WdfPowerDeviceD0` (1): working.
    D0,
    /// `WdfPowerDeviceD1` (2).
    D1,
    /// `WdfPowerDeviceD2` (3).
    D2,
    /// `WdfPowerDeviceD3` (4): off, the device stays (sleep, or a start after a resource
    /// rebalance).
    D3,
    /// `WdfPowerDeviceD3Final` (5): off for good: the device is being removed (disabled,
    /// uninstalled, its driver stopped) or the system shuts down. Entered from `D3Final`: the
    /// first start.
    D3Final,
    /// `WdfPowerDevicePrepareForHibernation` (6): stays on the hibernation path.
    PrepareForHibernation,
    /// Any other value.
    Other(i64),
}

impl PowerState {
    /// The state of the raw value (any integer type `wdk-sys` gives the enum: `i64::from`).
    #[must_use]
    pub const fn from_raw(raw: i64) -> Self {
        match raw {
            0 => Self::Invalid,
            1 => Self::D0,
            2 => Self::D1,
            3 => Self::D2,
            4 => Self::D3,
            5 => Self::D3Final,
            6 => Self::PrepareForHibernation,
            other => Self::Other(other),
        }
    }

    /// The raw value.
    #[must_use]
    pub const fn raw(self) -> i64 {
        match self {
            Self::Invalid => 0,
            Self::D0 => 1,
            Self::D1 => 2,
            Self::D2 => 3,
            Self::D3 => 4,
            Self::D3Final => 5,
            Self::PrepareForHibernation => 6,
            Self::Other(raw) => raw,
        }
    }
}

/// The WDF name (`WdfPowerDeviceD3Final`).
impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Invalid => "WdfPowerDeviceInvalid",
            Self::D0 => "WdfPowerDeviceD0",
            Self::D1 => "WdfPowerDeviceD1",
            Self::D2 => "WdfPowerDeviceD2",
            Self::D3 => "WdfPowerDeviceD3",
            Self::D3Final => "WdfPowerDeviceD3Final",
            Self::PrepareForHibernation => "WdfPowerDevicePrepareForHibernation",
            Self::Other(raw) => return write!(f, "WDF_POWER_DEVICE_STATE {raw}"),
        };
        f.write_str(name)
    }
}

/// The `ClientIdentificationAddress` of the driver object extension that holds the device
/// context's type description (module docs): the pool tag-like bytes `"HSwc"`, like
/// [`crate::shared::DRIVER_EXTENSION_KEY`] far below any kernel address and the same in
/// every image.
pub const CONTEXT_TYPE_EXTENSION_KEY: usize = u32::from_le_bytes(*b"HSwc") as usize;

/// `ContextName` of the device context's type description (what `!wdfkd` and the
/// framework's traces show), kept in the same extension as the description.
pub const DEVICE_CONTEXT_NAME: &CStr = c"HOTSWAP_DEVICE_CONTEXT";

/// `magic` of a [`DeviceContext`]: the bytes `"HSwD"`.
pub const DEVICE_CONTEXT_MAGIC: u32 = u32::from_le_bytes(*b"HSwD");

/// Format version of [`DeviceContext`].
pub const DEVICE_CONTEXT_FORMAT: u32 = 1;

/// `layout` of a [`DeviceContext`]: [`DEVICE_CONTEXT_FORMAT`] in the high half, the size in
/// the low half.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the size is asserted below to fit 16 bits"
)]
pub const DEVICE_CONTEXT_LAYOUT: u32 =
    (DEVICE_CONTEXT_FORMAT << 16) | size_of::<DeviceContext>() as u32;

/// The context of the driver's `WDFDEVICE` (module docs). The framework allocates it, zeroed,
/// with the device (`ContextSize` = `size_of::<DeviceContext>()`) and frees it with the
/// device; the front end writes [`DeviceContext::new`] into it right after `WdfDeviceCreate`.
/// Every field written afterwards is atomic.
#[repr(C)]
pub struct DeviceContext {
    /// [`DEVICE_CONTEXT_MAGIC`].
    magic: u32,
    /// [`DEVICE_CONTEXT_LAYOUT`].
    layout: u32,
    /// The worker thread, as `WorkerThread::into_raw` gave it; null while the device is not
    /// in D0, or runs without its worker.
    worker: AtomicPtr<c_void>,
    /// How many times the device entered D0.
    d0_entries: AtomicU32,
    reserved: u32,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(DeviceContext, magic) == 0);
    assert!(offset_of!(DeviceContext, layout) == 4);
    assert!(offset_of!(DeviceContext, worker) == 8);
    assert!(offset_of!(DeviceContext, d0_entries) == 0x10);
    assert!(size_of::<DeviceContext>() == 0x18);
};
const _: () = assert!(size_of::<DeviceContext>() <= 0xFFFF);

/// Checks the first two words of memory that should hold a [`DeviceContext`].
///
/// IRQL: any.
///
/// # Errors
/// `STATUS_INVALID_DEVICE_STATE` when `magic` is not [`DEVICE_CONTEXT_MAGIC`] (not
/// initialised, or not this driver's context); `STATUS_REVISION_MISMATCH` when `layout` is
/// not [`DEVICE_CONTEXT_LAYOUT`] (an image built with another layout).
pub const fn check_context_header(magic: u32, layout: u32) -> Result<(), NtStatus> {
    if magic != DEVICE_CONTEXT_MAGIC {
        Err(NtStatus::INVALID_DEVICE_STATE)
    } else if layout != DEVICE_CONTEXT_LAYOUT {
        Err(NtStatus::REVISION_MISMATCH)
    } else {
        Ok(())
    }
}

impl DeviceContext {
    /// The value the front end writes into the framework's fresh context memory: no worker,
    /// never in D0.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            magic: DEVICE_CONTEXT_MAGIC,
            layout: DEVICE_CONTEXT_LAYOUT,
            worker: AtomicPtr::new(ptr::null_mut()),
            d0_entries: AtomicU32::new(0),
            reserved: 0,
        }
    }

    /// The identification words, as [`check_context_header`] reads them.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn header(&self) -> (u32, u32) {
        (self.magic, self.layout)
    }

    /// [`check_context_header`] of this context.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// As [`check_context_header`].
    pub const fn check(&self) -> Result<(), NtStatus> {
        check_context_header(self.magic, self.layout)
    }

    /// Whether the context holds a worker thread (the device is in D0 with its worker).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn has_worker(&self) -> bool {
        !self.worker.load(Ordering::Acquire).is_null()
    }

    /// How many times the device entered D0.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn d0_entries(&self) -> u32 {
        self.d0_entries.load(Ordering::Relaxed)
    }
}

impl Default for DeviceContext {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`enter_d0`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum D0Entry {
    /// The worker thread was started (the `n`th entry into D0).
    Started(u32),
    /// The kernel cannot run the worker (the front end logged why): the device serves
    /// without it.
    WithoutWorker(u32),
    /// A worker was still held (D0 entered twice without an exit): left as it was.
    AlreadyRunning(u32),
}

/// `EvtDeviceD0Entry` of the sample: counts the entry and starts the device's worker thread
/// with `start`, which returns the running thread, or `None` when this kernel cannot run one
/// (`HotSwap::worker_threads`): the device then serves without its worker rather than fail
/// to start. The context holds the thread (`WorkerThread::into_raw`) until [`leave_d0`].
///
/// IRQL: `PASSIVE_LEVEL` (the framework calls `EvtDeviceD0Entry` there; `start` creates a
/// thread).
///
/// # Errors
/// The context's header ([`check_context_header`]); `start`'s error (a failed spawn on a
/// kernel that has every routine a worker needs): the device fails to start.
pub fn enter_d0(
    context: &DeviceContext,
    start: impl FnOnce() -> Result<Option<SampleWorkerThread>, NtStatus>,
) -> Result<D0Entry, NtStatus> {
    context.check()?;
    let entry = context
        .d0_entries
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(1);
    if context.has_worker() {
        return Ok(D0Entry::AlreadyRunning(entry));
    }
    Ok(match start()? {
        Some(thread) => {
            context
                .worker
                .store(thread.into_raw().as_ptr(), Ordering::Release);
            D0Entry::Started(entry)
        }
        None => D0Entry::WithoutWorker(entry),
    })
}

/// What [`leave_d0`] did.
#[derive(Debug)]
pub enum D0Exit {
    /// The worker thread was stopped and joined, its storage freed.
    Stopped,
    /// The device ran without its worker.
    NoWorker,
    /// The address in the context is not a worker thread of the sample's type
    /// (`WorkerThread::from_raw` refused it; cannot happen with images of this driver built
    /// against the same `driver-proxy`): it is put back, untouched.
    NotTakenBack(WorkerError),
    /// Waiting for the thread failed: the library keeps its storage (the thread may still
    /// use it).
    JoinFailed(WorkerError),
}

/// `EvtDeviceD0Exit` of the sample: takes the worker thread out of the context, back with
/// `take_back` (the front end's `WorkerThread::from_raw`), and stops and joins it
/// (`WorkerThread::stop_and_join`: the library sets its stop event, the routine returns
/// `false`, the thread ends, its storage is freed). The device leaves D0 whatever happens:
/// the outcome is for the log.
///
/// IRQL: `PASSIVE_LEVEL` (it waits for the thread).
///
/// # Errors
/// The context's header ([`check_context_header`]).
pub fn leave_d0(
    context: &DeviceContext,
    take_back: impl FnOnce(NonNull<c_void>) -> Result<SampleWorkerThread, WorkerError>,
) -> Result<D0Exit, NtStatus> {
    context.check()?;
    let Some(raw) = NonNull::new(context.worker.swap(ptr::null_mut(), Ordering::AcqRel)) else {
        return Ok(D0Exit::NoWorker);
    };
    Ok(match take_back(raw) {
        Ok(thread) => match thread.stop_and_join() {
            Ok(()) => D0Exit::Stopped,
            Err(error) => D0Exit::JoinFailed(error),
        },
        Err(error) => {
            context.worker.store(raw.as_ptr(), Ordering::Release);
            D0Exit::NotTakenBack(error)
        }
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{ffi::c_void as std_void, format, string::ToString};

    use driver_proxy::Endpoint;

    use super::*;

    #[test]
    fn endpoint_ids_are_distinct_and_counts_match_the_documented_prototypes() {
        // The C prototypes, with WDF handles as the opaque pointers they are and the power
        // state as the C enum it is.
        type EvtIoDeviceControl =
            unsafe extern "system" fn(*mut std_void, *mut std_void, usize, usize, u32);
        type EvtDriverUnload = unsafe extern "system" fn(*mut std_void);
        type EvtDriverDeviceAdd = unsafe extern "system" fn(*mut std_void, *mut std_void) -> i32;
        type EvtDeviceD0 = unsafe extern "system" fn(*mut std_void, i32) -> i32;
        for (i, spec) in ENDPOINTS.iter().enumerate() {
            assert_ne!(spec.id, 0);
            assert!(ENDPOINTS[..i].iter().all(|earlier| earlier.id != spec.id));
            assert!(!spec.callback.is_empty() && !spec.handed_out_as.is_empty());
        }
        assert_eq!(EvtIoDeviceControl::ARITY, DEVICE_CONTROL.parameter_count);
        assert_eq!(EvtDriverUnload::ARITY, DRIVER_UNLOAD.parameter_count);
        assert_eq!(SampleWorkerRoutine::ARITY, WORKER.parameter_count);
        assert_eq!(EvtDriverDeviceAdd::ARITY, DEVICE_ADD.parameter_count);
        assert_eq!(EvtDeviceD0::ARITY, D0_ENTRY.parameter_count);
        assert_eq!(EvtDeviceD0::ARITY, D0_EXIT.parameter_count);
        // The ids of the routines the non-`PnP` build had keep their numbers.
        assert_eq!((DEVICE_CONTROL.id, DRIVER_UNLOAD.id, WORKER.id), (1, 2, 3));
    }

    #[test]
    fn power_states_round_trip_and_read_as_their_wdf_names() {
        for raw in -1..9 {
            assert_eq!(PowerState::from_raw(raw).raw(), raw);
        }
        assert_eq!(PowerState::from_raw(5), PowerState::D3Final);
        assert_eq!(PowerState::D3Final.to_string(), "WdfPowerDeviceD3Final");
        assert_eq!(PowerState::D0.to_string(), "WdfPowerDeviceD0");
        assert_eq!(
            format!("{}", PowerState::from_raw(7)),
            "WDF_POWER_DEVICE_STATE 7"
        );
    }

    #[test]
    fn the_context_identifies_itself_and_refuses_zeroed_or_foreign_memory() {
        let context = DeviceContext::new();
        assert_eq!(context.check(), Ok(()));
        let (magic, layout) = context.header();
        assert_eq!(magic.to_le_bytes(), *b"HSwD");
        assert_eq!(layout, 0x0001_0018);
        // What the framework hands out before the front end writes the context: zeroes.
        assert_eq!(
            check_context_header(0, 0),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        assert_eq!(
            check_context_header(DEVICE_CONTEXT_MAGIC, DEVICE_CONTEXT_LAYOUT + 1),
            Err(NtStatus::REVISION_MISMATCH)
        );
        assert!(!context.has_worker());
        assert_eq!(context.d0_entries(), 0);
    }

    #[test]
    fn the_extension_keys_differ_and_are_no_kernel_addresses() {
        assert_eq!(CONTEXT_TYPE_EXTENSION_KEY.to_le_bytes()[..4], *b"HSwc");
        assert_ne!(
            CONTEXT_TYPE_EXTENSION_KEY,
            crate::shared::DRIVER_EXTENSION_KEY
        );
        assert_eq!(CONTEXT_TYPE_EXTENSION_KEY >> 32, 0, "in the low 4 GiB");
        assert_eq!(DEVICE_CONTEXT_NAME.to_bytes(), b"HOTSWAP_DEVICE_CONTEXT");
    }

    #[test]
    fn d0_entry_without_a_worker_and_a_failed_start() {
        let context = DeviceContext::new();
        assert_eq!(
            enter_d0(&context, || Ok(None)),
            Ok(D0Entry::WithoutWorker(1))
        );
        assert!(matches!(
            leave_d0(&context, |_| panic!("nothing to take back")),
            Ok(D0Exit::NoWorker)
        ));
        assert_eq!(
            enter_d0(&context, || Err(NtStatus::INSUFFICIENT_RESOURCES)),
            Err(NtStatus::INSUFFICIENT_RESOURCES)
        );
        assert_eq!(context.d0_entries(), 2);
        assert!(!context.has_worker());
    }

    #[test]
    fn an_uninitialised_context_is_refused_before_anything_runs() {
        // As the framework's zeroed context memory would read before the front end writes it.
        let context = DeviceContext {
            magic: 0,
            ..DeviceContext::new()
        };
        assert_eq!(
            enter_d0(&context, || panic!("started on a bad context")),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
        assert!(matches!(
            leave_d0(&context, |_| panic!("took back from a bad context")),
            Err(NtStatus::INVALID_DEVICE_STATE)
        ));
        assert_eq!(context.d0_entries(), 0);
    }

    /// D0 entry and exit as the KMDF front end runs them, on the host kernel: a worker of
    /// the sample's types started into the context, ticking, then taken back through its
    /// raw address and stopped at D0 exit (its storage freed); a second cycle starts a new
    /// one; an address that is not a worker is put back untouched.
    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code, reason = "a driver object, as DriverEntry receives one")]
    fn d0_entry_starts_the_worker_and_d0_exit_stops_it() {
        use driver_proxy::{
            DriverObject, EndpointEntry, EndpointId, EndpointTable, HotSwap, Timeout, WorkerRef,
        };
        use driver_proxy_host::HostDriverObject;
        use driver_proxy_host::kernel::control::pool_usage;
        use std::time::{Duration, Instant};

        use crate::{
            DriverVersion, State,
            worker::{WORKER_EVENT_COUNT, WORKER_EVENTS, WORKER_KICK_EVENT, worker_routine_as},
        };

        static STATE: State = State::new();
        extern "system" fn routine(
            worker: WorkerRef<(), WORKER_EVENT_COUNT>,
            wait_status: NtStatus,
        ) -> bool {
            worker_routine_as(DriverVersion::V1, &STATE, worker.wake(wait_status))
        }
        const ID: EndpointId<SampleWorkerRoutine> = EndpointId::new(WORKER.id);

        // The pool counts below are of this test's workers only.
        let _alone = crate::HOST_WORKERS.lock();
        let mut object = HostDriverObject::new();
        // SAFETY: a host driver object that outlives every use below.
        let driver = unsafe { DriverObject::from_raw(object.as_raw()) }.unwrap();
        let hotswap = HotSwap::new(driver).unwrap();
        let table =
            EndpointTable::new([EndpointEntry::new(ID, routine as SampleWorkerRoutine)]).unwrap();
        hotswap.register(&table, None).unwrap();
        let start = || {
            hotswap
                .worker_thread(hotswap.wrapper(&table, ID).unwrap(), ())
                .events(WORKER_EVENTS)
                .timeout(Timeout::from_millis(600_000))
                .spawn()
                .map(Some)
                .map_err(NtStatus::from)
        };
        // SAFETY: only addresses `enter_d0` stored from `into_raw` reach this closure.
        let take_back = |raw| unsafe { SampleWorkerThread::from_raw(raw) };
        let dpwk = || pool_usage(u32::from_le_bytes(*b"DPwk")).outstanding;
        let before = dpwk();

        let context = DeviceContext::new();
        assert_eq!(enter_d0(&context, start), Ok(D0Entry::Started(1)));
        assert!(context.has_worker());
        assert_eq!(dpwk(), before + 1);
        assert_eq!(
            enter_d0(&context, || panic!("a second worker")),
            Ok(D0Entry::AlreadyRunning(2))
        );
        // The worker runs: kick it through its address, as the front end could.
        let raw = NonNull::new(context.worker.load(Ordering::Acquire)).unwrap();
        // SAFETY: the context's thread, taken back and handed back at once.
        let thread = unsafe { SampleWorkerThread::from_raw(raw) }.unwrap();
        thread.event(WORKER_KICK_EVENT).unwrap().set();
        let _ = thread.into_raw();
        let deadline = Instant::now() + Duration::from_secs(10);
        while STATE.stats().worker_ticks_v1 == 0 {
            assert!(Instant::now() < deadline, "the kick made no tick");
            std::thread::sleep(Duration::from_millis(1));
        }

        assert!(matches!(leave_d0(&context, take_back), Ok(D0Exit::Stopped)));
        assert!(!context.has_worker());
        assert_eq!(dpwk(), before, "freed once the thread ended");
        assert!(matches!(
            leave_d0(&context, take_back),
            Ok(D0Exit::NoWorker)
        ));

        // A second start after the exit (a disable and enable of the node, a wake-up).
        assert_eq!(enter_d0(&context, start), Ok(D0Entry::Started(3)));
        assert_eq!(dpwk(), before + 1);
        // A take-back that refuses: the address stays, untouched.
        assert!(matches!(
            leave_d0(&context, |_| Err(WorkerError::NotAWorkerThread)),
            Ok(D0Exit::NotTakenBack(WorkerError::NotAWorkerThread))
        ));
        assert!(context.has_worker());
        assert!(matches!(leave_d0(&context, take_back), Ok(D0Exit::Stopped)));
        assert_eq!(dpwk(), before);
        drop(object);
    }
}
