//! Every transfer type of the I/O manager model, driven by a small driver written in Rust
//! with the Microsoft x64 convention (as an image's code is): reads and writes of a device
//! with buffered, direct and neither I/O; device controls of `METHOD_BUFFERED`,
//! `METHOD_IN_DIRECT`, `METHOD_OUT_DIRECT` and `METHOD_NEITHER`; the MDL routines drivers
//! call on them; work items; and what the model checks (leaks of MDLs, work items and
//! handles at unload, MDL and probe rule violations as bugchecks in child processes).
//!
//! The driver takes its name from the last component of its registry path, and the
//! buffering of its reads and writes from words in the name: `Buffered` (`DO_BUFFERED_IO`),
//! `Direct` (`DO_DIRECT_IO`), neither otherwise.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod common;
mod wdm_common;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use driver_proxy::NtStatus;
use driver_proxy_host::ddi;
use driver_proxy_host::kernel::control::fail_mdl_mapping;
use driver_proxy_host::wdm::types::{
    DEVICE_OBJECT, DO_BUFFERED_IO, DO_DIRECT_IO, DRIVER_OBJECT, IO_STACK_LOCATION, IRP,
    IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, IRP_MJ_READ, IRP_MJ_WRITE,
    MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_PAGES_LOCKED, MDL_SOURCE_IS_NONPAGED_POOL,
    MDL_WRITE_OPERATION, METHOD_BUFFERED, METHOD_IN_DIRECT, METHOD_NEITHER, METHOD_OUT_DIRECT,
};
use driver_proxy_host::wdm::{Driver, UnloadError, win64_routine};

use common::{assert_bugcheck, child_scenario, run_child};
use wdm_common::{UString, complete, create_device, ctl, delete_devices, name_of, nt};

/// The model's MDL and work-item entry points, as the test driver calls them.
#[allow(non_snake_case)]
struct Mm {
    IoAllocateMdl: unsafe extern "win64" fn(ddi::PVOID, u32, u8, u8, *mut IRP) -> *mut MDL,
    IoFreeMdl: unsafe extern "win64" fn(*mut MDL),
    MmBuildMdlForNonPagedPool: unsafe extern "win64" fn(*mut MDL),
    MmProbeAndLockPages: unsafe extern "win64" fn(*mut MDL, i8, i32),
    MmUnlockPages: unsafe extern "win64" fn(*mut MDL),
    MmMapLockedPagesSpecifyCache:
        unsafe extern "win64" fn(*mut MDL, i8, i32, ddi::PVOID, u32, u32) -> ddi::PVOID,
    MmUnmapLockedPages: unsafe extern "win64" fn(ddi::PVOID, *mut MDL),
    ProbeForRead: unsafe extern "win64" fn(ddi::PVOID, usize, u32),
    ProbeForWrite: unsafe extern "win64" fn(ddi::PVOID, usize, u32),
    IoAllocateWorkItem: unsafe extern "win64" fn(*mut DEVICE_OBJECT) -> ddi::PVOID,
    IoQueueWorkItem: unsafe extern "win64" fn(ddi::PVOID, usize, i32, ddi::PVOID),
    IoFreeWorkItem: unsafe extern "win64" fn(ddi::PVOID),
    PsCreateSystemThread: unsafe extern "win64" fn(
        *mut ddi::HANDLE,
        u32,
        ddi::PVOID,
        ddi::HANDLE,
        ddi::PVOID,
        usize,
        ddi::PVOID,
    ) -> ddi::NTSTATUS,
}

fn mm() -> &'static Mm {
    fn routine<F: Copy>(name: &str) -> F {
        let address = win64_routine("ntoskrnl.exe", name).unwrap_or_else(|| panic!("{name}"));
        // SAFETY: F is the routine's function-pointer type (each field of Mm).
        unsafe { core::mem::transmute_copy::<usize, F>(&address) }
    }
    static MM: std::sync::OnceLock<Mm> = std::sync::OnceLock::new();
    MM.get_or_init(|| Mm {
        IoAllocateMdl: routine("IoAllocateMdl"),
        IoFreeMdl: routine("IoFreeMdl"),
        MmBuildMdlForNonPagedPool: routine("MmBuildMdlForNonPagedPool"),
        MmProbeAndLockPages: routine("MmProbeAndLockPages"),
        MmUnlockPages: routine("MmUnlockPages"),
        MmMapLockedPagesSpecifyCache: routine("MmMapLockedPagesSpecifyCache"),
        MmUnmapLockedPages: routine("MmUnmapLockedPages"),
        ProbeForRead: routine("ProbeForRead"),
        ProbeForWrite: routine("ProbeForWrite"),
        IoAllocateWorkItem: routine("IoAllocateWorkItem"),
        IoQueueWorkItem: routine("IoQueueWorkItem"),
        IoFreeWorkItem: routine("IoFreeWorkItem"),
        PsCreateSystemThread: routine("PsCreateSystemThread"),
    })
}

/// Records the request's buffers in the extension, for every transfer type.
const fn params(method: u32) -> u32 {
    ctl(1, method)
}
/// `METHOD_IN_DIRECT`: sums the bytes of the MDL's buffer (read access) plus the input's
/// first byte into `sum`; Information = the buffer's length.
const SUM_IN_DIRECT: u32 = ctl(2, METHOD_IN_DIRECT);
/// `METHOD_OUT_DIRECT`: fills the MDL's buffer with the input repeated; Information = its
/// length.
const FILL_OUT_DIRECT: u32 = ctl(3, METHOD_OUT_DIRECT);
/// `METHOD_NEITHER`: probes both buffers and writes the input reversed into the output.
const REVERSE_NEITHER: u32 = ctl(4, METHOD_NEITHER);
/// Queues a work item that charges pool to the driver, prints, and frees itself.
const QUEUE_WORK: u32 = ctl(5, METHOD_BUFFERED);
/// Queues a work item whose routine sleeps 300 ms before counting (unload must wait).
const QUEUE_SLOW_WORK: u32 = ctl(6, METHOD_BUFFERED);
/// Leaks one MDL, one work item and one thread handle.
const LEAK: u32 = ctl(7, METHOD_BUFFERED);
/// An MDL over non-paged pool, mapped by `MmGetSystemAddressForMdlSafe` and freed.
const NON_PAGED: u32 = ctl(8, METHOD_BUFFERED);
/// `METHOD_NEITHER`: locks the output with an MDL of the driver's own
/// (`MmProbeAndLockPages`, user mode, write access), maps it, fills it with `0x5A`, unmaps,
/// unlocks and frees; plus an MDL attached to the IRP, which the I/O manager frees.
const LOCK_USER_BUFFER: u32 = ctl(9, METHOD_NEITHER);
/// Rule violations, each run in a child process.
const FREE_IRP_MDL: u32 = ctl(20, METHOD_OUT_DIRECT);
const UNMAP_UNMAPPED: u32 = ctl(21, METHOD_OUT_DIRECT);
const PROBE_KERNEL_ADDRESS: u32 = ctl(22, METHOD_NEITHER);
const FREE_WORK_ITEM_TWICE: u32 = ctl(23, METHOD_BUFFERED);
const FREE_LOCKED_MDL: u32 = ctl(24, METHOD_NEITHER);

/// What the driver saw of the last request.
#[repr(C)]
#[derive(Default)]
struct Seen {
    major: AtomicU32,
    irp_flags: AtomicU32,
    system_buffer: AtomicUsize,
    user_buffer: AtomicUsize,
    type3_input: AtomicUsize,
    mdl: AtomicUsize,
    mdl_flags: AtomicU32,
    mdl_byte_count: AtomicU32,
    mdl_address: AtomicUsize,
    length: AtomicU64,
    offset: AtomicU64,
    sum: AtomicU64,
    work_runs: AtomicU32,
    last_write: Mutex<Vec<u8>>,
}

/// The device extension: the driver's own `Seen`, boxed (its address).
#[repr(C)]
struct Extension {
    seen: *const Seen,
}

const EXTENSION_SIZE: u32 = 16;
const POOL_TAG: u32 = u32::from_le_bytes(*b"XfrT");

fn seen(device: *mut DEVICE_OBJECT) -> &'static Seen {
    // SAFETY: every device of this driver has an Extension pointing at a leaked Seen.
    unsafe { &*(*(*device).DeviceExtension.cast::<Extension>()).seen }
}

/// `MmGetSystemAddressForMdlSafe`, the `wdm.h` macro.
///
/// # Safety
/// A valid MDL.
unsafe fn system_address(mdl: *mut MDL) -> *mut u8 {
    // SAFETY: caller contract.
    unsafe {
        if (*mdl).MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
            (*mdl).MappedSystemVa.cast()
        } else {
            (mm().MmMapLockedPagesSpecifyCache)(mdl, 0, 1, core::ptr::null_mut(), 0, 16).cast()
        }
    }
}

/// # Safety
/// Called by the I/O manager with a new driver object and a valid registry path.
unsafe extern "win64" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *mut ddi::UNICODE_STRING,
) -> ddi::NTSTATUS {
    let name = name_of(registry_path);
    let mut device_name = UString::new(&format!("\\Device\\{name}"));
    // SAFETY: our driver object, in its DriverEntry.
    let device = unsafe { create_device(driver, &name, EXTENSION_SIZE, 0x22, 0, false) }
        .expect("IoCreateDevice");
    let seen: &'static Seen = Box::leak(Box::default());
    // SAFETY: the new device and its extension; no request reaches it yet.
    unsafe {
        (*device)
            .DeviceExtension
            .cast::<Extension>()
            .write(Extension { seen });
        if name.contains("Buffered") {
            (*device).Flags |= DO_BUFFERED_IO;
        } else if name.contains("Direct") {
            (*device).Flags |= DO_DIRECT_IO;
        }
        let mut link = UString::new(&format!("\\DosDevices\\{name}"));
        assert_eq!(
            (nt().IoCreateSymbolicLink)(link.as_ptr(), device_name.as_ptr()),
            ddi::STATUS_SUCCESS
        );
        for major in [IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE] {
            (*driver).MajorFunction[major] = dispatch_success as *const () as usize;
        }
        (*driver).MajorFunction[IRP_MJ_READ] = dispatch_read as *const () as usize;
        (*driver).MajorFunction[IRP_MJ_WRITE] = dispatch_write as *const () as usize;
        (*driver).MajorFunction[IRP_MJ_DEVICE_CONTROL] =
            dispatch_device_control as *const () as usize;
        (*driver).DriverUnload = driver_unload as *const () as usize;
    }
    ddi::STATUS_SUCCESS
}

/// # Safety
/// Called by the I/O manager with this driver's object.
unsafe extern "win64" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: our driver object: its name is `\Driver\<name>`.
    let name = name_of(unsafe { &raw mut (*driver).DriverName });
    let mut link = UString::new(&format!("\\DosDevices\\{name}"));
    // SAFETY: a valid string; our devices, no request in flight.
    unsafe {
        let _ = (nt().IoDeleteSymbolicLink)(link.as_ptr());
        delete_devices(driver);
    }
}

/// # Safety
/// Called by the I/O manager.
unsafe extern "win64" fn dispatch_success(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> i32 {
    // SAFETY: the I/O manager's IRP.
    unsafe { complete(irp, ddi::STATUS_SUCCESS, 0) }
}

/// Records the request's buffers in `seen`.
///
/// # Safety
/// A live IRP.
unsafe fn record(seen: &Seen, irp: *mut IRP) {
    // SAFETY: caller contract: the IRP, its stack location and its MDL are valid.
    unsafe {
        let stack: &IO_STACK_LOCATION = &*(*irp).CurrentStackLocation;
        seen.major
            .store(u32::from(stack.MajorFunction), Ordering::SeqCst);
        seen.irp_flags.store((*irp).Flags, Ordering::SeqCst);
        seen.system_buffer
            .store((*irp).SystemBuffer as usize, Ordering::SeqCst);
        seen.user_buffer
            .store((*irp).UserBuffer as usize, Ordering::SeqCst);
        seen.type3_input
            .store(stack.Parameters[3], Ordering::SeqCst);
        let mdl = (*irp).MdlAddress;
        seen.mdl.store(mdl as usize, Ordering::SeqCst);
        if !mdl.is_null() {
            seen.mdl_flags
                .store(u32::from((*mdl).MdlFlags.cast_unsigned()), Ordering::SeqCst);
            seen.mdl_byte_count
                .store((*mdl).ByteCount, Ordering::SeqCst);
            seen.mdl_address.store(
                (*mdl).StartVa as usize + (*mdl).ByteOffset as usize,
                Ordering::SeqCst,
            );
        }
        seen.length
            .store(stack.Parameters[0] as u64, Ordering::SeqCst);
        seen.offset
            .store(stack.Parameters[2] as u64, Ordering::SeqCst);
    }
}

/// The buffer of a read or write, however the device's buffering delivers it; null when
/// there is none (or the MDL cannot be mapped).
///
/// # Safety
/// A live read or write IRP of `device`.
unsafe fn transfer_buffer(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> *mut u8 {
    // SAFETY: caller contract.
    unsafe {
        let flags = (*device).Flags;
        if flags & DO_BUFFERED_IO != 0 {
            (*irp).SystemBuffer.cast()
        } else if flags & DO_DIRECT_IO != 0 {
            let mdl = (*irp).MdlAddress;
            if mdl.is_null() {
                core::ptr::null_mut()
            } else {
                system_address(mdl)
            }
        } else {
            (*irp).UserBuffer.cast()
        }
    }
}

/// `IRP_MJ_READ`: fills the buffer with `(offset + i) as u8`.
///
/// # Safety
/// Called by the I/O manager.
unsafe extern "win64" fn dispatch_read(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> i32 {
    let seen = seen(device);
    // SAFETY: the I/O manager's read IRP.
    unsafe {
        record(seen, irp);
        let stack: &IO_STACK_LOCATION = &*(*irp).CurrentStackLocation;
        let (length, offset) = (stack.Parameters[0], stack.Parameters[2]);
        if length == 0 {
            return complete(irp, ddi::STATUS_SUCCESS, 0);
        }
        let buffer = transfer_buffer(device, irp);
        if buffer.is_null() {
            return complete(irp, ddi::STATUS_INSUFFICIENT_RESOURCES, 0);
        }
        for i in 0..length {
            #[allow(clippy::cast_possible_truncation)]
            buffer.add(i).write((offset + i) as u8);
        }
        complete(irp, ddi::STATUS_SUCCESS, length)
    }
}

/// `IRP_MJ_WRITE`: keeps a copy of the data.
///
/// # Safety
/// Called by the I/O manager.
unsafe extern "win64" fn dispatch_write(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> i32 {
    let seen = seen(device);
    // SAFETY: the I/O manager's write IRP.
    unsafe {
        record(seen, irp);
        let length = (*(*irp).CurrentStackLocation).Parameters[0];
        let data = if length == 0 {
            Vec::new()
        } else {
            let buffer = transfer_buffer(device, irp);
            if buffer.is_null() {
                return complete(irp, ddi::STATUS_INSUFFICIENT_RESOURCES, 0);
            }
            std::slice::from_raw_parts(buffer, length).to_vec()
        };
        *seen.last_write.lock().unwrap() = data;
        complete(irp, ddi::STATUS_SUCCESS, length)
    }
}

/// A work item's routine: charges a pool block to the driver and frees it, prints, counts,
/// and frees its own work item (the context).
///
/// # Safety
/// Called by the kernel with a device of this driver and its work item.
unsafe extern "win64" fn work_routine(device: *mut DEVICE_OBJECT, context: ddi::PVOID) {
    // SAFETY: model routines with valid arguments; the work item is ours to free.
    unsafe {
        let block = (nt().ExAllocatePool2)(ddi::POOL_FLAG_NON_PAGED, 8, POOL_TAG);
        assert!(!block.is_null());
        (nt().ExFreePoolWithTag)(block, POOL_TAG);
        (nt().DbgPrint)(c"Xfer: work item ran".as_ptr().cast(), 0, 0, 0, 0, 0, 0, 0);
        seen(device).work_runs.fetch_add(1, Ordering::SeqCst);
        (mm().IoFreeWorkItem)(context);
    }
}

/// As [`work_routine`], after 300 ms.
///
/// # Safety
/// As [`work_routine`].
unsafe extern "win64" fn slow_work_routine(device: *mut DEVICE_OBJECT, context: ddi::PVOID) {
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: forwarded.
    unsafe { work_routine(device, context) };
}

/// A system thread's routine that returns at once.
///
/// # Safety
/// None.
unsafe extern "win64" fn thread_routine(_context: ddi::PVOID) {}

/// # Safety
/// Called by the I/O manager.
#[allow(clippy::too_many_lines)] // one arm per control code
unsafe extern "win64" fn dispatch_device_control(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> i32 {
    let seen = seen(device);
    // SAFETY: the I/O manager's IRP, its buffers as its transfer type says.
    unsafe {
        record(seen, irp);
        let stack: &IO_STACK_LOCATION = &*(*irp).CurrentStackLocation;
        let [output_length, input_length, code, type3] = stack.Parameters;
        let system = (*irp).SystemBuffer.cast::<u8>();
        let mdl = (*irp).MdlAddress;
        let code = u32::try_from(code).unwrap();
        match code {
            c if c == params(METHOD_BUFFERED)
                || c == params(METHOD_IN_DIRECT)
                || c == params(METHOD_OUT_DIRECT)
                || c == params(METHOD_NEITHER) =>
            {
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            SUM_IN_DIRECT => {
                let key = if input_length == 0 {
                    0
                } else {
                    u64::from(*system)
                };
                let data = system_address(mdl);
                let sum: u64 = std::slice::from_raw_parts(data, output_length)
                    .iter()
                    .map(|&b| u64::from(b))
                    .sum();
                seen.sum.store(sum + key, Ordering::SeqCst);
                complete(irp, ddi::STATUS_SUCCESS, output_length)
            }
            FILL_OUT_DIRECT => {
                let input = std::slice::from_raw_parts(system, input_length).to_vec();
                let data = system_address(mdl);
                if data.is_null() {
                    return complete(irp, ddi::STATUS_INSUFFICIENT_RESOURCES, 0);
                }
                for i in 0..output_length {
                    data.add(i).write(input[i % input.len()]);
                }
                complete(irp, ddi::STATUS_SUCCESS, output_length)
            }
            REVERSE_NEITHER => {
                let input = type3 as *mut u8;
                let output = (*irp).UserBuffer.cast::<u8>();
                (mm().ProbeForRead)(input.cast(), input_length, 1);
                (mm().ProbeForWrite)(output.cast(), output_length, 1);
                let n = input_length.min(output_length);
                for i in 0..n {
                    output.add(i).write(*input.add(input_length - 1 - i));
                }
                complete(irp, ddi::STATUS_SUCCESS, n)
            }
            QUEUE_WORK | QUEUE_SLOW_WORK => {
                let item = (mm().IoAllocateWorkItem)(device);
                assert!(!item.is_null());
                let routine = if code == QUEUE_WORK {
                    work_routine as *const () as usize
                } else {
                    slow_work_routine as *const () as usize
                };
                (mm().IoQueueWorkItem)(item, routine, 1, item);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            LEAK => {
                let mdl = (mm().IoAllocateMdl)(system.cast(), 4, 0, 0, core::ptr::null_mut());
                assert!(!mdl.is_null());
                let item = (mm().IoAllocateWorkItem)(device);
                assert!(!item.is_null());
                let mut handle: ddi::HANDLE = core::ptr::null_mut();
                let status = (mm().PsCreateSystemThread)(
                    &raw mut handle,
                    0,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    thread_routine as *const () as usize,
                    core::ptr::null_mut(),
                );
                assert_eq!(status, ddi::STATUS_SUCCESS);
                // Wait for the thread (but never close its handle).
                assert_eq!(
                    (nt().ZwWaitForSingleObject)(handle, 0, core::ptr::null_mut()),
                    ddi::STATUS_SUCCESS
                );
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            NON_PAGED => {
                let block = (nt().ExAllocatePool2)(ddi::POOL_FLAG_NON_PAGED, 100, POOL_TAG);
                let mdl = (mm().IoAllocateMdl)(block, 100, 0, 0, core::ptr::null_mut());
                (mm().MmBuildMdlForNonPagedPool)(mdl);
                let mapped = system_address(mdl);
                let ok = mapped == block.cast()
                    && (*mdl).MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL != 0
                    && (*mdl).ByteCount == 100;
                (mm().IoFreeMdl)(mdl);
                (nt().ExFreePoolWithTag)(block, POOL_TAG);
                complete(irp, ddi::STATUS_SUCCESS, usize::from(ok))
            }
            LOCK_USER_BUFFER => {
                let output = (*irp).UserBuffer;
                let length = u32::try_from(output_length).unwrap();
                let own = (mm().IoAllocateMdl)(output, length, 0, 0, core::ptr::null_mut());
                (mm().MmProbeAndLockPages)(own, 1, 1);
                let locked = (*own).MdlFlags & (MDL_PAGES_LOCKED | MDL_WRITE_OPERATION)
                    == MDL_PAGES_LOCKED | MDL_WRITE_OPERATION;
                let data = system_address(own);
                data.write_bytes(0x5A, output_length);
                (mm().MmUnmapLockedPages)(data.cast(), own);
                (mm().MmUnlockPages)(own);
                (mm().IoFreeMdl)(own);
                // Attached to the IRP: the I/O manager frees it (not a leak).
                let attached = (mm().IoAllocateMdl)(output, length, 0, 0, irp);
                let ok = locked && (*irp).MdlAddress == attached;
                complete(irp, ddi::STATUS_SUCCESS, usize::from(ok))
            }
            FREE_IRP_MDL => {
                (mm().IoFreeMdl)(mdl);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            UNMAP_UNMAPPED => {
                (mm().MmUnmapLockedPages)((*mdl).StartVa, mdl);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            PROBE_KERNEL_ADDRESS => {
                (mm().ProbeForRead)(0xFFFF_F800_0000_0000_usize as ddi::PVOID, 16, 1);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            FREE_WORK_ITEM_TWICE => {
                let item = (mm().IoAllocateWorkItem)(device);
                (mm().IoFreeWorkItem)(item);
                (mm().IoFreeWorkItem)(item);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            FREE_LOCKED_MDL => {
                let output = (*irp).UserBuffer;
                let length = u32::try_from(output_length).unwrap();
                let own = (mm().IoAllocateMdl)(output, length, 0, 0, core::ptr::null_mut());
                (mm().MmProbeAndLockPages)(own, 1, 0);
                (mm().IoFreeMdl)(own);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            _ => complete(irp, ddi::STATUS_INVALID_DEVICE_REQUEST, 0),
        }
    }
}

/// Drivers and their names are process-wide: tests that count work-item runs or pool keep
/// to their own names, and the ones that wait on the process-wide state run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start(name: &str) -> Driver {
    let path = format!("\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{name}");
    // SAFETY: a Microsoft x64 DriverEntry of this file.
    unsafe { Driver::start(name, &path, driver_entry as *const () as usize) }
        .unwrap_or_else(|status| panic!("{name}: {status:?}"))
}

fn seen_of(driver: &Driver) -> &'static Seen {
    seen(driver.devices()[0] as *mut DEVICE_OBJECT)
}

fn expected_read(offset: u64, length: usize) -> Vec<u8> {
    #[allow(clippy::cast_possible_truncation)]
    (0..length).map(|i| (offset as usize + i) as u8).collect()
}

#[test]
fn reads_and_writes_of_a_buffered_device_use_a_system_buffer() {
    let driver = start("XferBuffered");
    let handle = driver.open("\\\\.\\XferBuffered").unwrap();
    let seen = seen_of(&driver);
    let mut buffer = [0u8; 37];
    assert_eq!(
        driver.read(&handle, &mut buffer, 1000),
        (NtStatus::SUCCESS, 37)
    );
    assert_eq!(buffer.to_vec(), expected_read(1000, 37));
    assert_eq!(seen.major.load(Ordering::SeqCst), 3);
    // IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | IRP_INPUT_OPERATION | IRP_READ_OPERATION.
    assert_eq!(seen.irp_flags.load(Ordering::SeqCst), 0x170);
    assert_ne!(seen.system_buffer.load(Ordering::SeqCst), 0);
    assert_eq!(seen.mdl.load(Ordering::SeqCst), 0);
    assert_eq!(seen.user_buffer.load(Ordering::SeqCst), 0);
    assert_eq!(
        (
            seen.length.load(Ordering::SeqCst),
            seen.offset.load(Ordering::SeqCst)
        ),
        (37, 1000)
    );
    assert_eq!(
        driver.write(&handle, b"buffered bytes", 7),
        (NtStatus::SUCCESS, 14)
    );
    assert_eq!(&*seen.last_write.lock().unwrap(), b"buffered bytes");
    // IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | IRP_WRITE_OPERATION.
    assert_eq!(seen.irp_flags.load(Ordering::SeqCst), 0x230);
    assert_eq!(seen.offset.load(Ordering::SeqCst), 7);
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn reads_and_writes_of_a_direct_device_carry_a_locked_mdl_of_the_callers_buffer() {
    let driver = start("XferDirect");
    let handle = driver.open("\\\\.\\XferDirect").unwrap();
    let seen = seen_of(&driver);
    // Across pages: the MDL describes the whole buffer.
    let mut buffer = vec![0u8; 10_000];
    assert_eq!(
        driver.read(&handle, &mut buffer, 3),
        (NtStatus::SUCCESS, 10_000)
    );
    assert_eq!(buffer, expected_read(3, 10_000));
    assert_eq!(seen.system_buffer.load(Ordering::SeqCst), 0);
    assert_ne!(seen.mdl.load(Ordering::SeqCst), 0);
    assert_eq!(seen.mdl_byte_count.load(Ordering::SeqCst), 10_000);
    // Locked for write access (the driver fills the buffer); not mapped when the dispatch
    // routine got it.
    assert_eq!(
        seen.mdl_flags.load(Ordering::SeqCst),
        u32::from((MDL_PAGES_LOCKED | MDL_WRITE_OPERATION).cast_unsigned())
    );
    assert_eq!(seen.irp_flags.load(Ordering::SeqCst), 0x100);
    assert_eq!(driver.write(&handle, b"direct", 0), (NtStatus::SUCCESS, 6));
    assert_eq!(&*seen.last_write.lock().unwrap(), b"direct");
    assert_eq!(
        seen.mdl_flags.load(Ordering::SeqCst),
        u32::from(MDL_PAGES_LOCKED.cast_unsigned()),
        "a write's buffer is locked for read access"
    );
    // Zero bytes: no MDL at all.
    assert_eq!(driver.read(&handle, &mut [], 0), (NtStatus::SUCCESS, 0));
    assert_eq!(seen.mdl.load(Ordering::SeqCst), 0);
    // The mapping fails (a fault of this thread, where the dispatch routine runs): the driver
    // sees a null system address and refuses.
    fail_mdl_mapping(1);
    assert_eq!(
        driver.read(&handle, &mut [0; 4], 0),
        (NtStatus::INSUFFICIENT_RESOURCES, 0)
    );
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn reads_and_writes_of_a_neither_device_pass_the_callers_address() {
    let driver = start("XferNeither");
    let handle = driver.open("\\\\.\\XferNeither").unwrap();
    let seen = seen_of(&driver);
    let mut buffer = [0u8; 16];
    assert_eq!(
        driver.read(&handle, &mut buffer, 250),
        (NtStatus::SUCCESS, 16)
    );
    assert_eq!(buffer.to_vec(), expected_read(250, 16));
    assert_ne!(seen.user_buffer.load(Ordering::SeqCst), 0);
    assert_eq!(seen.system_buffer.load(Ordering::SeqCst), 0);
    assert_eq!(seen.mdl.load(Ordering::SeqCst), 0);
    assert_eq!(driver.write(&handle, b"neither", 1), (NtStatus::SUCCESS, 7));
    assert_eq!(&*seen.last_write.lock().unwrap(), b"neither");
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn device_controls_of_every_transfer_type_are_built_as_windows_builds_them() {
    let driver = start("XferControls");
    let handle = driver.open("\\\\.\\XferControls").unwrap();
    let seen = seen_of(&driver);
    let check = |method: u32, input: &[u8], output: &mut [u8]| {
        let (status, _) = driver.device_control(&handle, params(method), input, output);
        assert_eq!(status, NtStatus::SUCCESS);
        (
            seen.system_buffer.load(Ordering::SeqCst) != 0,
            seen.mdl.load(Ordering::SeqCst) != 0,
            seen.user_buffer.load(Ordering::SeqCst) != 0,
            seen.type3_input.load(Ordering::SeqCst) != 0,
            seen.irp_flags.load(Ordering::SeqCst),
        )
    };
    // (system buffer, MDL, UserBuffer, Type3InputBuffer, IRP flags)
    assert_eq!(
        check(METHOD_BUFFERED, b"in", &mut [0; 4]),
        (true, false, false, false, 0x70)
    );
    assert_eq!(
        check(METHOD_IN_DIRECT, b"in", &mut [0; 4]),
        (true, true, false, false, 0x30)
    );
    assert_eq!(
        seen.mdl_flags.load(Ordering::SeqCst),
        u32::from(MDL_PAGES_LOCKED.cast_unsigned()),
        "IN_DIRECT: locked for read access"
    );
    assert_eq!(
        check(METHOD_OUT_DIRECT, b"in", &mut [0; 4]),
        (true, true, false, false, 0x30)
    );
    assert_eq!(
        seen.mdl_flags.load(Ordering::SeqCst),
        u32::from((MDL_PAGES_LOCKED | MDL_WRITE_OPERATION).cast_unsigned()),
        "OUT_DIRECT: locked for write access"
    );
    assert_eq!(
        check(METHOD_OUT_DIRECT, &[], &mut [0; 4]),
        (false, true, false, false, 0),
        "no input: no system buffer"
    );
    assert_eq!(
        check(METHOD_OUT_DIRECT, b"in", &mut []),
        (true, false, false, false, 0x30),
        "no output: no MDL"
    );
    assert_eq!(
        check(METHOD_NEITHER, b"in", &mut [0; 4]),
        (false, false, true, true, 0)
    );
    assert_eq!(
        check(METHOD_NEITHER, &[], &mut []),
        (false, false, false, false, 0)
    );

    // What the driver does with them.
    let mut data = [1u8, 2, 3, 4, 5];
    assert_eq!(
        driver.device_control(&handle, SUM_IN_DIRECT, &[100], &mut data),
        (NtStatus::SUCCESS, 5)
    );
    assert_eq!(seen.sum.load(Ordering::SeqCst), 115);
    assert_eq!(data, [1, 2, 3, 4, 5], "read access: unchanged");
    let mut filled = [0u8; 7];
    assert_eq!(
        driver.device_control(&handle, FILL_OUT_DIRECT, b"ab", &mut filled),
        (NtStatus::SUCCESS, 7)
    );
    assert_eq!(&filled, b"abababa");
    let mut reversed = [0u8; 3];
    assert_eq!(
        driver.device_control(&handle, REVERSE_NEITHER, b"xyz!", &mut reversed),
        (NtStatus::SUCCESS, 3)
    );
    assert_eq!(&reversed, b"!zy");
    // A code no dispatch routine knows reaches the driver, whatever its type.
    for method in [
        METHOD_BUFFERED,
        METHOD_IN_DIRECT,
        METHOD_OUT_DIRECT,
        METHOD_NEITHER,
    ] {
        let (status, _) = driver.device_control(&handle, ctl(99, method), &[], &mut []);
        assert_eq!(status, NtStatus::INVALID_DEVICE_REQUEST);
    }
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn mdls_of_the_drivers_own_are_built_locked_mapped_and_freed() {
    let driver = start("XferOwnMdls");
    let handle = driver.open("\\\\.\\XferOwnMdls").unwrap();
    assert_eq!(
        driver.device_control(&handle, NON_PAGED, &[], &mut [0; 1]),
        (NtStatus::SUCCESS, 1)
    );
    let mut output = [0u8; 300];
    assert_eq!(
        driver.device_control(&handle, LOCK_USER_BUFFER, &[], &mut output),
        (NtStatus::SUCCESS, 1)
    );
    assert!(output.iter().all(|&b| b == 0x5A));
    drop(handle);
    driver
        .unload()
        .expect("no MDL left: the driver freed its own, the I/O manager the attached one");
}

#[test]
fn a_work_item_runs_for_the_driver_and_unload_waits_for_it() {
    let _serial = serial();
    let driver = start("XferWork");
    let handle = driver.open("\\\\.\\XferWork").unwrap();
    let seen = seen_of(&driver);
    assert_eq!(
        driver.device_control(&handle, QUEUE_WORK, &[], &mut []),
        (NtStatus::SUCCESS, 0)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.work_runs.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the work item ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        driver
            .dbg_print()
            .iter()
            .any(|line| line == "Xfer: work item ran"),
        "{:?}",
        driver.dbg_print()
    );
    // A slow one: the unload waits for it (DriverUnload would otherwise delete the device
    // under it).
    assert_eq!(
        driver.device_control(&handle, QUEUE_SLOW_WORK, &[], &mut []),
        (NtStatus::SUCCESS, 0)
    );
    drop(handle);
    driver.unload().expect("nothing left behind");
    assert_eq!(seen.work_runs.load(Ordering::SeqCst), 2);
}

#[test]
fn unload_reports_mdls_work_items_and_handles_left_behind() {
    let driver = start("XferLeaks");
    let handle = driver.open("\\\\.\\XferLeaks").unwrap();
    assert_eq!(
        driver.device_control(&handle, LEAK, &[0; 4], &mut []),
        (NtStatus::SUCCESS, 0)
    );
    drop(handle);
    match driver.unload() {
        Err(UnloadError::Leaked(leaks)) => {
            assert_eq!(
                (leaks.mdls, leaks.work_items, leaks.handles, leaks.threads),
                (1, 1, 1, 0),
                "{leaks}"
            );
            assert!(leaks.devices.is_empty() && leaks.links.is_empty() && leaks.pool.is_empty());
            let text = leaks.to_string();
            for needle in [
                "1 kernel handle(s) not closed",
                "1 MDL(s) not freed",
                "1 work item(s) not freed",
            ] {
                assert!(text.contains(needle), "{text}");
            }
        }
        other => panic!("{other:?}"),
    }
}

/// Rule violations: each scenario in a fresh child process.
#[test]
fn mdl_probe_and_work_item_rule_violations_bugcheck() {
    if let Some(scenario) = child_scenario() {
        let name = format!("XferChild{scenario}");
        let driver = start(&name);
        let handle = driver.open(&format!("\\\\.\\{name}")).unwrap();
        let code = match scenario.as_str() {
            "free-irp-mdl" => FREE_IRP_MDL,
            "unmap" => UNMAP_UNMAPPED,
            "probe" => PROBE_KERNEL_ADDRESS,
            "free-twice" => FREE_WORK_ITEM_TWICE,
            "free-locked" => FREE_LOCKED_MDL,
            other => panic!("{other}"),
        };
        let _ = driver.device_control(&handle, code, &[], &mut [0; 8]);
        // Unreachable: the process was stopped.
        std::process::exit(0);
    }
    for (scenario, needle) in [
        ("free-irp-mdl", "is the I/O manager's MDL of a request"),
        ("unmap", "MmUnmapLockedPages"),
        (
            "probe",
            "0x1E KMODE_EXCEPTION_NOT_HANDLED in ProbeForRead: STATUS_ACCESS_VIOLATION",
        ),
        ("free-twice", "IoFreeWorkItem"),
        ("free-locked", "still has its pages locked"),
    ] {
        let output = run_child("mdl_probe_and_work_item_rule_violations_bugcheck", scenario);
        assert_bugcheck(&output, needle);
    }
}
