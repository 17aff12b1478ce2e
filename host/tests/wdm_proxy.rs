//! The DriverProxy path of an image: a driver written in Rust with the Microsoft x64
//! convention resolves every routine through the Microsoft x64 `MmGetSystemRoutineAddress`,
//! registers V1 endpoints, hands out their wrappers as `MajorFunction` and `DriverUnload`,
//! starts a hot-swappable worker thread whose routine is Microsoft x64 code, and is swapped
//! by a second `DriverEntry` on the same driver object with a Microsoft x64 phased callback.
//! The callbacks check their context argument: called with the wrong convention, they would
//! find it in another register.

mod wdm_common;

use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use driver_proxy::NtStatus;
use driver_proxy_host::ddi;
use driver_proxy_host::wdm::Driver;
use driver_proxy_host::wdm::types::{
    DEVICE_OBJECT, DRIVER_OBJECT, IRP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL,
};

use wdm_common::{UString, nt, resolve};

type CreateExtension = unsafe extern "win64" fn(
    *mut DRIVER_OBJECT,
    ddi::DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
    *mut ddi::PDRIVER_PROXY_EXTENSION,
) -> ddi::NTSTATUS;
type ExtensionFromDriver =
    unsafe extern "win64" fn(*mut DRIVER_OBJECT) -> ddi::PDRIVER_PROXY_EXTENSION;
type Register = unsafe extern "win64" fn(
    ddi::PDRIVER_PROXY_EXTENSION,
    *mut ddi::DRIVER_PROXY_ENDPOINT_INFORMATION,
    u32,
    usize,
    ddi::PVOID,
) -> ddi::NTSTATUS;
type WrapperById = unsafe extern "win64" fn(ddi::PDRIVER_PROXY_EXTENSION, u32) -> usize;
type CreateWorker = unsafe extern "win64" fn(
    ddi::PDRIVER_PROXY_EXTENSION,
    *mut ddi::HANDLE,
    u32,
    ddi::POBJECT_ATTRIBUTES,
    ddi::HANDLE,
    ddi::PCLIENT_ID,
    *mut ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
) -> ddi::NTSTATUS;
type InitializeEvent = unsafe extern "win64" fn(ddi::PKEVENT, ddi::EVENT_TYPE, u8);
type SetEvent = unsafe extern "win64" fn(ddi::PKEVENT, i32, u8) -> i32;
type WaitMultiple = unsafe extern "win64" fn(
    u32,
    *mut ddi::PVOID,
    ddi::WAIT_TYPE,
    ddi::KWAIT_REASON,
    ddi::KPROCESSOR_MODE,
    u8,
    *mut ddi::LARGE_INTEGER,
    *mut c_void,
) -> ddi::NTSTATUS;
type CreateThread = unsafe extern "win64" fn(
    *mut ddi::HANDLE,
    u32,
    ddi::POBJECT_ATTRIBUTES,
    ddi::HANDLE,
    ddi::PCLIENT_ID,
    usize,
    ddi::PVOID,
) -> ddi::NTSTATUS;

/// A `KEVENT` that lives for the whole process.
fn leaked_event() -> ddi::PKEVENT {
    Box::leak(Box::new(MaybeUninit::<ddi::KEVENT>::zeroed())).as_mut_ptr()
}

const NAME: &str = "WdmProxySample";
const DISPATCH: u32 = 1;
const WORKER: u32 = 2;
const UNLOAD: u32 = 3;

/// The worker's and the callback's context: their address is what they must receive.
static WORKER_CONTEXT: u64 = 0x5752_4B52;
static CALLBACK_CONTEXT: u64 = 0x4342_434B;

static STOP: AtomicUsize = AtomicUsize::new(0);
static KICK: AtomicUsize = AtomicUsize::new(0);
static THREAD: AtomicUsize = AtomicUsize::new(0);
/// (version, wait status) per worker call; `(0, _)` marks a wrong context.
static WORKER_CALLS: Mutex<Vec<(u8, ddi::NTSTATUS)>> = Mutex::new(Vec::new());
/// Phases the phased callback saw; -1 marks a wrong context.
static PHASES: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// What `ZwWaitForSingleObject` on the worker thread returned in `DriverUnload`.
static UNLOAD_WAIT: Mutex<Option<ddi::NTSTATUS>> = Mutex::new(None);

#[allow(clippy::unnecessary_wraps)] // the DDI's field type is an Option
fn endpoint(address: usize) -> ddi::PDRIVER_PROXY_ENDPOINT_FUNCTION {
    // SAFETY: a code address, carried in the type-erased endpoint type (never called as it).
    Some(unsafe { core::mem::transmute::<usize, ddi::DRIVER_PROXY_ENDPOINT_FUNCTION>(address) })
}

fn table(dispatch: usize, worker: usize) -> [ddi::DRIVER_PROXY_ENDPOINT_INFORMATION; 3] {
    [
        ddi::DRIVER_PROXY_ENDPOINT_INFORMATION {
            Id: DISPATCH,
            EndpointFunction: endpoint(dispatch),
            ParameterCount: 2,
        },
        ddi::DRIVER_PROXY_ENDPOINT_INFORMATION {
            Id: WORKER,
            EndpointFunction: endpoint(worker),
            ParameterCount: 2,
        },
        ddi::DRIVER_PROXY_ENDPOINT_INFORMATION {
            Id: UNLOAD,
            EndpointFunction: endpoint(driver_unload as *const () as usize),
            ParameterCount: 1,
        },
    ]
}

fn record_worker(version: u8, context: ddi::PVOID, status: ddi::NTSTATUS) -> ddi::BOOLEAN {
    let version = if core::ptr::eq(context.cast_const(), (&raw const WORKER_CONTEXT).cast()) {
        version
    } else {
        0
    };
    WORKER_CALLS.lock().unwrap().push((version, status));
    ddi::BOOLEAN::from(status != ddi::STATUS_WAIT_0)
}

/// The worker endpoint of v1 (called through its wrapper by the worker thread).
///
/// # Safety
/// None: `context` is compared, never dereferenced.
unsafe extern "win64" fn worker_v1(context: ddi::PVOID, status: ddi::NTSTATUS) -> ddi::BOOLEAN {
    record_worker(1, context, status)
}

/// The worker endpoint of v2.
///
/// # Safety
/// As [`worker_v1`].
unsafe extern "win64" fn worker_v2(context: ddi::PVOID, status: ddi::NTSTATUS) -> ddi::BOOLEAN {
    record_worker(2, context, status)
}

/// Completes a device control with its one-byte answer `version`.
///
/// # Safety
/// The I/O manager's IRP, `METHOD_BUFFERED` with at least one byte of output.
unsafe fn answer(irp: *mut IRP, version: u8) -> ddi::NTSTATUS {
    // SAFETY: caller contract; METHOD_BUFFERED with at least one output byte.
    unsafe {
        (*irp).SystemBuffer.cast::<u8>().write(version);
        (*irp).IoStatus.Status = ddi::STATUS_SUCCESS;
        (*irp).IoStatus.Information = 1;
        (nt().IofCompleteRequest)(irp, 0);
    }
    ddi::STATUS_SUCCESS
}

/// The device control endpoint of v1: answers 1.
///
/// # Safety
/// Called by the I/O manager (through the wrapper) with a live IRP as [`answer`] needs.
unsafe extern "win64" fn dispatch_v1(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> ddi::NTSTATUS {
    // SAFETY: the I/O manager's IRP.
    unsafe { answer(irp, 1) }
}

/// The device control endpoint of v2: answers 2.
///
/// # Safety
/// As [`dispatch_v1`].
unsafe extern "win64" fn dispatch_v2(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> ddi::NTSTATUS {
    // SAFETY: the I/O manager's IRP.
    unsafe { answer(irp, 2) }
}

/// `IRP_MJ_CREATE` and `IRP_MJ_CLOSE`: complete with success.
///
/// # Safety
/// Called by the I/O manager with a live IRP.
unsafe extern "win64" fn create_close(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> ddi::NTSTATUS {
    // SAFETY: the I/O manager's IRP.
    unsafe {
        (*irp).IoStatus.Status = ddi::STATUS_SUCCESS;
        (*irp).IoStatus.Information = 0;
        (nt().IofCompleteRequest)(irp, 0);
    }
    ddi::STATUS_SUCCESS
}

/// The phased callback of v2's registration: records each phase (or -1 for a wrong context).
///
/// # Safety
/// None: `context` is compared, never dereferenced.
unsafe extern "win64" fn phased(phase: i32, context: ddi::PVOID) -> ddi::NTSTATUS {
    let ok = core::ptr::eq(context.cast_const(), (&raw const CALLBACK_CONTEXT).cast());
    PHASES.lock().unwrap().push(if ok { phase } else { -1 });
    ddi::STATUS_SUCCESS
}

/// `DriverEntry` of v1: extension, endpoints, wrappers as `MajorFunction` and `DriverUnload`,
/// a device and link, the hot-swappable worker thread.
///
/// # Safety
/// Called by the I/O manager with a new driver object.
#[allow(clippy::items_after_statements)] // the start context type, next to its use
unsafe extern "win64" fn entry_v1(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *mut ddi::UNICODE_STRING,
) -> ddi::NTSTATUS {
    // SAFETY: every routine is resolved with its Microsoft x64 type; the arguments are valid.
    unsafe {
        let create: CreateExtension = resolve("IoCreateDriverProxyExtension");
        let register: Register = resolve("IoRegisterDriverProxyEndpoints");
        let wrapper: WrapperById = resolve("IoGetDriverProxyEndpointWrapper");
        let initialize: InitializeEvent = resolve("KeInitializeEvent");
        let create_worker: CreateWorker = resolve("IoDriverProxyCreateHotSwappableWorkerThread");

        let mut extension: ddi::PDRIVER_PROXY_EXTENSION = core::ptr::null_mut();
        let status = create(
            driver,
            ddi::DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong: 0 },
            &raw mut extension,
        );
        assert_eq!(status, ddi::STATUS_SUCCESS);
        let mut entries = table(
            dispatch_v1 as *const () as usize,
            worker_v1 as *const () as usize,
        );
        let status = register(extension, entries.as_mut_ptr(), 3, 0, core::ptr::null_mut());
        assert_eq!(status, ddi::STATUS_SUCCESS);
        (*driver).MajorFunction[IRP_MJ_DEVICE_CONTROL] = wrapper(extension, DISPATCH);
        (*driver).MajorFunction[IRP_MJ_CREATE] = create_close as *const () as usize;
        (*driver).MajorFunction[IRP_MJ_CLOSE] = create_close as *const () as usize;
        (*driver).DriverUnload = wrapper(extension, UNLOAD);

        let mut device_name = UString::new(&format!("\\Device\\{NAME}"));
        let mut device: *mut DEVICE_OBJECT = core::ptr::null_mut();
        let status =
            (nt().IoCreateDevice)(driver, 0, device_name.as_ptr(), 0x22, 0, 0, &raw mut device);
        assert_eq!(status, ddi::STATUS_SUCCESS);
        let mut link = UString::new(&format!("\\DosDevices\\{NAME}"));
        assert_eq!(
            (nt().IoCreateSymbolicLink)(link.as_ptr(), device_name.as_ptr()),
            ddi::STATUS_SUCCESS
        );

        let (stop, kick) = (leaked_event(), leaked_event());
        initialize(stop, ddi::NotificationEvent, 0);
        initialize(kick, ddi::SynchronizationEvent, 0);
        STOP.store(stop as usize, Ordering::SeqCst);
        KICK.store(kick as usize, Ordering::SeqCst);

        #[repr(C)]
        struct Start {
            header: ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
            events: [ddi::PKEVENT; 2],
        }
        let worker = wrapper(extension, WORKER);
        let mut start = Start {
            header: ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
                WorkerRoutine: Some(core::mem::transmute::<
                    usize,
                    ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE,
                >(worker)),
                Context: (&raw const WORKER_CONTEXT).cast_mut().cast(),
                WaitType: ddi::WaitAny,
                WaitReason: ddi::Executive,
                WaitMode: ddi::KernelMode,
                Altertable: 0,
                HasTimeout: 0,
                Timeout: ddi::LARGE_INTEGER { QuadPart: 0 },
                EventCount: 2,
                Events: [],
            },
            events: [stop, kick],
        };
        let mut handle: ddi::HANDLE = core::ptr::null_mut();
        let status = create_worker(
            extension,
            &raw mut handle,
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            &raw mut start.header,
        );
        assert_eq!(status, ddi::STATUS_SUCCESS);
        THREAD.store(handle as usize, Ordering::SeqCst);
    }
    ddi::STATUS_SUCCESS
}

/// `DriverEntry` of v2 in swap mode: re-registers the endpoints with the phased callback.
///
/// # Safety
/// Called with the driver object v1 started.
unsafe extern "win64" fn entry_v2(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *mut ddi::UNICODE_STRING,
) -> ddi::NTSTATUS {
    // SAFETY: as in entry_v1.
    unsafe {
        let from_driver: ExtensionFromDriver = resolve("IoGetDriverProxyExtensionFromDriverObject");
        let register: Register = resolve("IoRegisterDriverProxyEndpoints");
        let set: SetEvent = resolve("KeSetEvent");
        let extension = from_driver(driver);
        assert!(!extension.is_null());
        let mut entries = table(
            dispatch_v2 as *const () as usize,
            worker_v2 as *const () as usize,
        );
        let status = register(
            extension,
            entries.as_mut_ptr(),
            3,
            phased as *const () as usize,
            (&raw const CALLBACK_CONTEXT).cast_mut().cast(),
        );
        if status != ddi::STATUS_SUCCESS {
            return status;
        }
        set(KICK.load(Ordering::SeqCst) as ddi::PKEVENT, 0, 0);
    }
    ddi::STATUS_SUCCESS
}

/// The unload endpoint: stops and waits for the worker, deletes the link and the device.
///
/// # Safety
/// Called by the I/O manager (through the wrapper) with this driver's object.
unsafe extern "win64" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: as in entry_v1; the thread handle is ours.
    unsafe {
        let set: SetEvent = resolve("KeSetEvent");
        set(STOP.load(Ordering::SeqCst) as ddi::PKEVENT, 0, 0);
        let handle = THREAD.load(Ordering::SeqCst) as ddi::HANDLE;
        let status = (nt().ZwWaitForSingleObject)(handle, 0, core::ptr::null_mut());
        *UNLOAD_WAIT.lock().unwrap() = Some(status);
        assert_eq!((nt().ZwClose)(handle), ddi::STATUS_SUCCESS);
        let mut link = UString::new(&format!("\\DosDevices\\{NAME}"));
        assert_eq!(
            (nt().IoDeleteSymbolicLink)(link.as_ptr()),
            ddi::STATUS_SUCCESS
        );
        (nt().IoDeleteDevice)((*driver).DeviceObject);
    }
}

fn wait_for_worker(call: (u8, ddi::NTSTATUS)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !WORKER_CALLS.lock().unwrap().contains(&call) {
        assert!(Instant::now() < deadline, "worker call {call:?} never came");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn version(driver: &Driver, handle: &driver_proxy_host::wdm::FileHandle<'_>) -> u8 {
    let mut output = [0u8; 1];
    let code = 0x8000_0004; // METHOD_BUFFERED
    assert_eq!(
        driver.device_control(handle, code, &[], &mut output),
        (NtStatus::SUCCESS, 1)
    );
    output[0]
}

#[test]
fn a_win64_driver_is_hot_swapped_through_the_win64_driverproxy_routines() {
    // SAFETY: Microsoft x64 DriverEntry routines of this file.
    let driver = unsafe {
        Driver::start(
            NAME,
            "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\WdmProxySample",
            entry_v1 as *const () as usize,
        )
    }
    .unwrap();
    let extension = driver.control().extension().expect("an extension");
    let handle = driver.open("\\\\.\\WdmProxySample").unwrap();
    assert_eq!(version(&driver, &handle), 1);

    // The worker ticks in v1 when kicked (WaitAny index 1).
    // SAFETY: the kick event, initialised by the driver.
    let set: SetEvent = unsafe { resolve("KeSetEvent") };
    // SAFETY: as above.
    unsafe { set(KICK.load(Ordering::SeqCst) as ddi::PKEVENT, 0, 0) };
    wait_for_worker((1, ddi::STATUS_WAIT_1));

    // Swap mode: v2's entry on the same driver object, with requests in flight on another
    // thread.
    let status = std::thread::scope(|scope| {
        let caller = scope.spawn(|| {
            for _ in 0..500 {
                assert!(matches!(version(&driver, &handle), 1 | 2));
            }
        });
        // SAFETY: a Microsoft x64 DriverEntry of this file.
        let status = unsafe { driver.call_entry_again(entry_v2 as *const () as usize) };
        caller.join().unwrap();
        status
    });
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(
        *PHASES.lock().unwrap(),
        [
            ddi::DriverProxyRegisterCallbackPreProcess,
            ddi::DriverProxyRegisterCallbackProxyStalled,
            ddi::DriverProxyRegisterCallbackPostProcess
        ],
        "the phased callback is called with Microsoft x64 and its context"
    );
    assert_eq!(extension.swaps_completed(), 1);
    assert_eq!(version(&driver, &handle), 2);
    wait_for_worker((2, ddi::STATUS_WAIT_1));
    assert_eq!(extension.worker_threads(), 1);

    drop(handle);
    driver.unload().expect("a clean unload");
    assert_eq!(*UNLOAD_WAIT.lock().unwrap(), Some(ddi::STATUS_SUCCESS));
    let calls = WORKER_CALLS.lock().unwrap().clone();
    assert!(
        calls.iter().all(|&(v, _)| v != 0),
        "wrong worker context: {calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&(2, ddi::STATUS_WAIT_0)),
        "stopped in v2"
    );
    assert_eq!(extension.worker_threads(), 0);
}

static THREAD_SAW: AtomicUsize = AtomicUsize::new(0);

/// A system thread's start routine: waits on the event its context points to.
///
/// # Safety
/// `context` points to a `PKEVENT` of an initialised event that outlives the thread.
unsafe extern "win64" fn thread_start(context: ddi::PVOID) {
    THREAD_SAW.store(context as usize, Ordering::SeqCst);
    // SAFETY: the context is the test's event pointer holder; the wait routine's type.
    unsafe {
        let wait: WaitMultiple = resolve("KeWaitForMultipleObjects");
        let mut objects = [*(context.cast::<ddi::PVOID>())];
        let status = wait(
            1,
            objects.as_mut_ptr(),
            ddi::WaitAny,
            ddi::Executive,
            ddi::KernelMode,
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        );
        assert_eq!(status, ddi::STATUS_WAIT_0);
    }
}

#[test]
fn ps_create_system_thread_runs_a_win64_start_routine_and_zw_wait_times_out() {
    // SAFETY: the routines with their Microsoft x64 types and valid arguments.
    unsafe {
        let create: CreateThread = resolve("PsCreateSystemThread");
        let initialize: InitializeEvent = resolve("KeInitializeEvent");
        let set: SetEvent = resolve("KeSetEvent");
        let event = leaked_event();
        initialize(event, ddi::NotificationEvent, 0);
        // The context: a pointer to the event, behind a static marker address check.
        let holder: &'static mut ddi::PVOID = Box::leak(Box::new(event.cast()));
        let context: ddi::PVOID = core::ptr::from_mut(holder).cast();
        let mut handle: ddi::HANDLE = core::ptr::null_mut();
        let status = create(
            &raw mut handle,
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            thread_start as *const () as usize,
            context,
        );
        assert_eq!(status, ddi::STATUS_SUCCESS);
        let mut ten_ms = ddi::LARGE_INTEGER { QuadPart: -100_000 };
        let started = Instant::now();
        assert_eq!(
            (nt().ZwWaitForSingleObject)(handle, 0, &raw mut ten_ms),
            ddi::STATUS_TIMEOUT
        );
        assert!(started.elapsed() >= Duration::from_millis(10));
        let deadline = Instant::now() + Duration::from_secs(10);
        while THREAD_SAW.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline);
            std::thread::yield_now();
        }
        assert_eq!(
            THREAD_SAW.load(Ordering::SeqCst),
            context as usize,
            "the start routine got its context in rcx"
        );
        set(event, 0, 0);
        assert_eq!(
            (nt().ZwWaitForSingleObject)(handle, 0, core::ptr::null_mut()),
            ddi::STATUS_SUCCESS
        );
        let mut poll = ddi::LARGE_INTEGER { QuadPart: 0 };
        assert_eq!(
            (nt().ZwWaitForSingleObject)(handle, 0, &raw mut poll),
            ddi::STATUS_SUCCESS,
            "an ended thread satisfies a poll"
        );
        assert_eq!((nt().ZwClose)(handle), ddi::STATUS_SUCCESS);
        assert_eq!(
            (nt().ZwWaitForSingleObject)(handle, 0, core::ptr::null_mut()),
            driver_proxy_host::kernel::STATUS_INVALID_HANDLE
        );
    }
}
