//! The I/O manager model, driven by a small driver written in Rust with the Microsoft x64
//! convention (as an image's code is): `DriverEntry` creates a device and a link and sets
//! `MajorFunction`; requests go through `Driver::open`, `device_control`, `close`; the
//! driver's routines call the kernel through the Microsoft x64 entry points.
//!
//! The driver takes its name from the last component of its registry path, and its
//! behaviour from words in the name: `Excl` (exclusive device), `LeakLink` (unload keeps the
//! link), `LeakPool` (`DriverEntry` allocates a block it never frees), `NoUnload`.

mod common;
mod wdm_common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use driver_proxy::NtStatus;
use driver_proxy_host::ddi;
use driver_proxy_host::kernel::control::pool_usage;
use driver_proxy_host::wdm::io::hold::hold_next_completion;
use driver_proxy_host::wdm::io::read_unicode;
use driver_proxy_host::wdm::status;
use driver_proxy_host::wdm::types::{
    DEVICE_OBJECT, DO_DEVICE_INITIALIZING, DO_EXCLUSIVE, DRIVER_OBJECT, IO_STACK_LOCATION, IRP,
    IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED,
};
use driver_proxy_host::wdm::{Driver, UnloadError, win64_routine};

use common::{assert_bugcheck, child_scenario, run_child};
use wdm_common::{
    UString, call_with_canaries, complete, create_device, ctl, delete_devices, name_of, nt,
};

const EXTENSION_SIZE: u32 = 0x48;
const POOL_TAG: u32 = u32::from_le_bytes(*b"WdmT");

/// The device extension of the test driver.
#[repr(C)]
struct Extension {
    was_zeroed: AtomicU32,
    creates: AtomicU32,
    cleanups: AtomicU32,
    closes: AtomicU32,
    controls: AtomicU32,
    name_units: [u16; 24],
}

const ECHO_REVERSE: u32 = ctl(1, METHOD_BUFFERED);
const FAIL: u32 = ctl(2, METHOD_BUFFERED);
const PARAMETERS: u32 = ctl(3, METHOD_BUFFERED);
const DOUBLE_COMPLETE: u32 = ctl(4, METHOD_BUFFERED);
const NO_COMPLETE: u32 = ctl(5, METHOD_BUFFERED);
const TOO_MUCH_INFORMATION: u32 = ctl(6, METHOD_BUFFERED);
const DELETE_DEVICE: u32 = ctl(7, METHOD_BUFFERED);
const COMPLETE_WITH_CANARIES: u32 = ctl(8, METHOD_BUFFERED);
const STATUS_MISMATCH: u32 = ctl(9, METHOD_BUFFERED);

fn extension(device: *mut DEVICE_OBJECT) -> &'static Extension {
    // SAFETY: every device of this driver has an Extension.
    unsafe { &*(*device).DeviceExtension.cast::<Extension>() }
}

#[allow(clippy::unnecessary_box_returns)] // the string stays put while the kernel reads it
fn link_of(name: &str) -> Box<UString> {
    UString::new(&format!("\\DosDevices\\{name}"))
}

/// The test driver's `DriverEntry` (behaviour from its name: module docs).
///
/// # Safety
/// Called by the I/O manager with a new driver object and a valid registry path.
unsafe extern "win64" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *mut ddi::UNICODE_STRING,
) -> ddi::NTSTATUS {
    let name = name_of(registry_path);
    let mut device_name = UString::new(&format!("\\Device\\{name}"));
    // SAFETY: our driver object, in its DriverEntry.
    let device = match unsafe {
        create_device(
            driver,
            &name,
            EXTENSION_SIZE,
            0x8D57,
            0x100,
            name.contains("Excl"),
        )
    } {
        Ok(device) => device,
        Err(status) => return status,
    };
    // SAFETY: the new device and its extension of EXTENSION_SIZE bytes.
    unsafe {
        let bytes = std::slice::from_raw_parts(
            (*device).DeviceExtension.cast::<u8>(),
            EXTENSION_SIZE as usize,
        );
        let zeroed = bytes.iter().all(|&b| b == 0);
        extension(device)
            .was_zeroed
            .store(u32::from(zeroed), Ordering::SeqCst);
    }
    let mut link = link_of(&name);
    // SAFETY: valid strings.
    let status = unsafe { (nt().IoCreateSymbolicLink)(link.as_ptr(), device_name.as_ptr()) };
    if status != ddi::STATUS_SUCCESS {
        // SAFETY: the device created above.
        unsafe { (nt().IoDeleteDevice)(device) };
        return status;
    }
    if name.contains("LeakPool") {
        // SAFETY: a plain allocation, deliberately never freed.
        let block = unsafe { (nt().ExAllocatePool2)(ddi::POOL_FLAG_NON_PAGED, 24, POOL_TAG) };
        assert!(!block.is_null());
    }
    // SAFETY: our driver object; no device can receive requests yet.
    unsafe {
        (*driver).MajorFunction[IRP_MJ_CREATE] =
            dispatch_counted::<IRP_MJ_CREATE> as *const () as usize;
        (*driver).MajorFunction[IRP_MJ_CLOSE] =
            dispatch_counted::<IRP_MJ_CLOSE> as *const () as usize;
        (*driver).MajorFunction[IRP_MJ_CLEANUP] =
            dispatch_counted::<IRP_MJ_CLEANUP> as *const () as usize;
        (*driver).MajorFunction[IRP_MJ_DEVICE_CONTROL] =
            dispatch_device_control as *const () as usize;
        if !name.contains("NoUnload") {
            (*driver).DriverUnload = driver_unload as *const () as usize;
        }
    }
    ddi::STATUS_SUCCESS
}

/// The test driver's `DriverUnload`: deletes its link (unless `LeakLink`) and its devices.
///
/// # Safety
/// Called by the I/O manager with this driver's object, no request in flight.
unsafe extern "win64" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: our driver object: its name is `\Driver\<name>`.
    let name = name_of(unsafe { &raw mut (*driver).DriverName });
    if !name.contains("LeakLink") {
        let mut link = link_of(&name);
        // SAFETY: a valid string.
        let _ = unsafe { (nt().IoDeleteSymbolicLink)(link.as_ptr()) };
    }
    // SAFETY: our driver object, no request in flight.
    unsafe { delete_devices(driver) };
}

/// `IRP_MJ_CREATE`, `IRP_MJ_CLEANUP` or `IRP_MJ_CLOSE` (`MAJOR`): counts the request in the
/// device extension and completes it with success. One instance per major function, so each
/// slot holds a routine of its own and a request sent to the wrong slot is counted wrong.
///
/// # Safety
/// Called by the I/O manager with a device of this driver and a live IRP.
unsafe extern "win64" fn dispatch_counted<const MAJOR: usize>(
    device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
) -> ddi::NTSTATUS {
    let extension = extension(device);
    let counter = match MAJOR {
        IRP_MJ_CREATE => &extension.creates,
        IRP_MJ_CLEANUP => &extension.cleanups,
        IRP_MJ_CLOSE => &extension.closes,
        _ => unreachable!("registered for create, cleanup and close only"),
    };
    counter.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the I/O manager's IRP.
    unsafe { complete(irp, ddi::STATUS_SUCCESS, 0) }
}

/// `IRP_MJ_DEVICE_CONTROL`: the behaviour the control code asks for.
///
/// # Safety
/// Called by the I/O manager with a device of this driver and a live `METHOD_BUFFERED` IRP.
unsafe extern "win64" fn dispatch_device_control(
    device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
) -> ddi::NTSTATUS {
    extension(device).controls.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the I/O manager's IRP with its stack location and METHOD_BUFFERED system buffer.
    unsafe {
        let stack: &IO_STACK_LOCATION = &*(*irp).CurrentStackLocation;
        let [output_length, input_length, code, _] = stack.Parameters;
        let buffer = (*irp).SystemBuffer.cast::<u8>();
        match u32::try_from(code).unwrap() {
            ECHO_REVERSE => {
                let input = if input_length == 0 {
                    Vec::new() // no system buffer at all when both lengths are 0
                } else {
                    std::slice::from_raw_parts(buffer, input_length).to_vec()
                };
                let n = input_length.min(output_length);
                for (i, byte) in input.iter().rev().take(n).enumerate() {
                    buffer.add(i).write(*byte);
                }
                complete(irp, ddi::STATUS_SUCCESS, n)
            }
            FAIL => {
                buffer.write_bytes(0xEE, output_length);
                complete(irp, ddi::STATUS_INVALID_PARAMETER, output_length)
            }
            PARAMETERS => {
                let words = [
                    u64::from(stack.MajorFunction),
                    output_length as u64,
                    input_length as u64,
                    code as u64,
                    u64::from((*irp).Flags),
                    u64::from(stack.DeviceObject == device),
                    u64::from(
                        !stack.FileObject.is_null()
                            && stack.FileObject == (*irp).OriginalFileObject,
                    ),
                    u64::from((*(*irp).CurrentStackLocation).MajorFunction == 0x0E),
                ];
                let n = (words.len() * 8).min(output_length);
                core::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), buffer, n);
                complete(irp, ddi::STATUS_SUCCESS, n)
            }
            DOUBLE_COMPLETE => {
                complete(irp, ddi::STATUS_SUCCESS, 0);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            NO_COMPLETE => ddi::STATUS_SUCCESS,
            TOO_MUCH_INFORMATION => complete(irp, ddi::STATUS_SUCCESS, output_length + 1),
            DELETE_DEVICE => {
                let name = String::from_utf16(
                    &extension(device)
                        .name_units
                        .iter()
                        .copied()
                        .take_while(|&u| u != 0)
                        .collect::<Vec<_>>(),
                )
                .unwrap();
                let mut link = link_of(&name);
                let _ = (nt().IoDeleteSymbolicLink)(link.as_ptr());
                (nt().IoDeleteDevice)(device);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            COMPLETE_WITH_CANARIES => {
                (*irp).IoStatus.Status = ddi::STATUS_SUCCESS;
                (*irp).IoStatus.Information = 1;
                let target = win64_routine("ntoskrnl.exe", "IofCompleteRequest").unwrap();
                let (_, clobbered) = call_with_canaries(target, [irp as u64, 0, 0, 0]);
                // The IRP is completed: only the system buffer (owned until we return) is
                // written, and it is what the I/O manager copies.
                #[allow(clippy::cast_possible_truncation)]
                buffer.write(clobbered.len() as u8);
                ddi::STATUS_SUCCESS
            }
            STATUS_MISMATCH => {
                complete(irp, ddi::STATUS_SUCCESS, 0);
                ddi::STATUS_UNSUCCESSFUL
            }
            _ => complete(irp, ddi::STATUS_INVALID_DEVICE_REQUEST, 0),
        }
    }
}

fn start(name: &str) -> Driver {
    let path = format!("\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{name}");
    // SAFETY: a Microsoft x64 DriverEntry of this file.
    let driver = unsafe { Driver::start(name, &path, driver_entry as *const () as usize) }
        .unwrap_or_else(|status| panic!("{name}: {status:?}"));
    // Remember the name in the extension (for DELETE_DEVICE).
    let device = driver.devices()[0] as *mut DEVICE_OBJECT;
    // SAFETY: the device's extension; no request runs yet.
    unsafe {
        let units = &raw mut (*(*device).DeviceExtension.cast::<Extension>()).name_units;
        for (i, unit) in name.encode_utf16().take(23).enumerate() {
            (*units)[i] = unit;
        }
    }
    driver
}

fn ext_of(driver: &Driver) -> &'static Extension {
    extension(driver.devices()[0] as *mut DEVICE_OBJECT)
}

#[test]
fn driver_entry_sees_a_real_driver_object_and_creates_a_ready_device() {
    let driver = start("WdmIoLayout");
    let raw = driver.as_raw();
    // SAFETY: the live driver object and its device.
    unsafe {
        assert_eq!((*raw).Type, 4);
        assert_eq!((*raw).Size, 0x150);
        assert_eq!(
            read_unicode(&raw mut (*raw).DriverName).unwrap(),
            "\\Driver\\WdmIoLayout"
        );
        assert!(!(*raw).DriverExtension.is_null());
        assert_eq!((*(*raw).DriverExtension).DriverObject, raw);
        let device = (*raw).DeviceObject;
        assert_eq!((*device).Type, 3);
        assert_eq!(usize::from((*device).Size), 0x150 + EXTENSION_SIZE as usize);
        assert_eq!((*device).DriverObject, raw);
        assert!((*device).NextDevice.is_null());
        assert_eq!((*device).DeviceType, 0x8D57);
        assert_eq!((*device).Characteristics, 0x100);
        assert_eq!((*device).StackSize, 1);
        assert_eq!((*device).DeviceExtension as usize % 16, 0);
        assert_eq!(
            (*device).Flags & DO_DEVICE_INITIALIZING,
            0,
            "readied after DriverEntry"
        );
        assert_eq!((*device).Flags & DO_EXCLUSIVE, 0);
    }
    assert_eq!(ext_of(&driver).was_zeroed.load(Ordering::SeqCst), 1);
    driver.unload().unwrap();
}

#[test]
fn open_control_close_and_unload() {
    let driver = start("WdmIoBasic");
    let ext = ext_of(&driver);
    let handle = driver.open("\\\\.\\WdmIoBasic").unwrap();
    assert_eq!(ext.creates.load(Ordering::SeqCst), 1);
    let mut output = [0u8; 8];
    let (status, information) = driver.device_control(&handle, ECHO_REVERSE, b"abc", &mut output);
    assert_eq!((status, information), (NtStatus::SUCCESS, 3));
    assert_eq!(&output, b"cba\0\0\0\0\0");
    // Other spellings of the same name.
    for path in [
        "\\??\\WdmIoBasic",
        "\\DosDevices\\wdmiobasic",
        "\\Device\\WdmIoBasic",
    ] {
        let other = driver.open(path).unwrap();
        assert_eq!(driver.close(other), NtStatus::SUCCESS);
    }
    assert_eq!(driver.close(handle), NtStatus::SUCCESS);
    assert_eq!(ext.creates.load(Ordering::SeqCst), 4);
    assert_eq!(ext.cleanups.load(Ordering::SeqCst), 4);
    assert_eq!(ext.closes.load(Ordering::SeqCst), 4);
    driver.unload().unwrap();
    // Everything is gone with the driver.
    let again = start("WdmIoBasic");
    again.unload().unwrap();
}

#[test]
fn method_buffered_parameters_are_at_the_real_offsets() {
    let driver = start("WdmIoParams");
    let handle = driver.open("\\\\.\\WdmIoParams").unwrap();
    let mut output = [0u8; 64];
    let (status, information) = driver.device_control(&handle, PARAMETERS, &[1; 5], &mut output);
    assert_eq!((status, information), (NtStatus::SUCCESS, 64));
    let words: Vec<u64> = output
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // Major, OutputBufferLength, InputBufferLength, IoControlCode, IRP flags (buffered |
    // deallocate | input operation), device, file object, stack location.
    assert_eq!(words, [0x0E, 64, 5, u64::from(PARAMETERS), 0x70, 1, 1, 1]);
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn method_buffered_copies_information_bytes_and_nothing_on_error() {
    let driver = start("WdmIoCopy");
    let handle = driver.open("\\\\.\\WdmIoCopy").unwrap();
    // Input longer than output: the system buffer holds the input; only the output's length
    // comes back.
    let mut short = [0u8; 2];
    let (status, information) = driver.device_control(&handle, ECHO_REVERSE, b"123456", &mut short);
    assert_eq!((status, information), (NtStatus::SUCCESS, 2));
    assert_eq!(&short, b"65");
    // Output longer than input: only Information bytes are copied.
    let mut long = [0x55u8; 6];
    let (_, information) = driver.device_control(&handle, ECHO_REVERSE, b"xy", &mut long);
    assert_eq!(information, 2);
    assert_eq!(&long, b"yx\x55\x55\x55\x55");
    // No buffers at all.
    let (status, information) = driver.device_control(&handle, ECHO_REVERSE, &[], &mut []);
    assert_eq!((status, information), (NtStatus::SUCCESS, 0));
    // An error status: nothing is copied, Information is reported as completed.
    let mut untouched = [7u8; 4];
    let (status, information) = driver.device_control(&handle, FAIL, b"in", &mut untouched);
    assert_eq!(status, NtStatus(ddi::STATUS_INVALID_PARAMETER));
    assert_eq!(information, 4);
    assert_eq!(untouched, [7; 4]);
    // An unknown code, and a code of another transfer type: both reach the driver, which
    // refuses them (every code reaches the driver, as on Windows).
    let before = ext_of(&driver).controls.load(Ordering::SeqCst);
    let (status, _) = driver.device_control(&handle, ctl(100, METHOD_BUFFERED), &[], &mut []);
    assert_eq!(status, NtStatus(ddi::STATUS_INVALID_DEVICE_REQUEST));
    let (status, _) = driver.device_control(&handle, ctl(100, METHOD_BUFFERED) | 3, &[], &mut []);
    assert_eq!(status, NtStatus(ddi::STATUS_INVALID_DEVICE_REQUEST));
    assert_eq!(ext_of(&driver).controls.load(Ordering::SeqCst), before + 2);
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn requests_from_several_threads_at_once() {
    let driver = start("WdmIoThreads");
    let handle = driver.open("\\\\.\\WdmIoThreads").unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let (driver, handle) = (&driver, &handle);
            scope.spawn(move || {
                for i in 0..200u8 {
                    let input = [t, i, 0xAA];
                    let mut output = [0u8; 3];
                    let result = driver.device_control(handle, ECHO_REVERSE, &input, &mut output);
                    assert_eq!(result, (NtStatus::SUCCESS, 3));
                    assert_eq!(output, [0xAA, i, t]);
                }
            });
        }
    });
    assert_eq!(ext_of(&driver).controls.load(Ordering::SeqCst), 800);
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn names_collide_and_unknown_names_are_not_found() {
    let driver = start("WdmIoNames");
    // A second device and link of the same names.
    let mut device_name = UString::new("\\Device\\WdmIoNames");
    let mut link = link_of("WDMIONAMES");
    let mut device: *mut DEVICE_OBJECT = core::ptr::null_mut();
    // SAFETY: the live driver object, valid strings and out-pointer.
    unsafe {
        let status = (nt().IoCreateDevice)(
            driver.as_raw(),
            0,
            device_name.as_ptr(),
            0,
            0,
            0,
            &raw mut device,
        );
        assert_eq!(status, status::OBJECT_NAME_COLLISION);
        assert!(device.is_null());
        assert_eq!(
            (nt().IoCreateSymbolicLink)(link.as_ptr(), device_name.as_ptr()),
            status::OBJECT_NAME_COLLISION
        );
        let mut unknown = link_of("WdmIoNoSuchLink");
        assert_eq!(
            (nt().IoDeleteSymbolicLink)(unknown.as_ptr()),
            status::OBJECT_NAME_NOT_FOUND
        );
        assert_eq!(
            (nt().IoDeleteSymbolicLink)(device_name.as_ptr()),
            status::OBJECT_TYPE_MISMATCH
        );
        let mut relative = UString::new("Device\\X");
        assert_eq!(
            (nt().IoCreateSymbolicLink)(relative.as_ptr(), device_name.as_ptr()),
            status::OBJECT_NAME_INVALID
        );
        // An unnamed device with an empty extension.
        let status = (nt().IoCreateDevice)(
            driver.as_raw(),
            0,
            core::ptr::null_mut(),
            0,
            0,
            0,
            &raw mut device,
        );
        assert_eq!(status, ddi::STATUS_SUCCESS);
        assert!((*device).DeviceExtension.is_null());
        assert_eq!(
            (*driver.as_raw()).DeviceObject,
            device,
            "pushed at the head"
        );
        assert_eq!(driver.devices().len(), 2);
        (nt().IoDeleteDevice)(device);
    }
    for missing in [
        "\\\\.\\WdmIoNoSuch",
        "\\Device\\Nope",
        "\\Driver\\WdmIoNames",
    ] {
        assert!(driver.open(missing).is_err(), "{missing}");
    }
    assert_eq!(
        driver.open("\\\\.\\WdmIoNoSuch").unwrap_err(),
        NtStatus(status::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        driver.open("\\Driver\\WdmIoNames").unwrap_err(),
        NtStatus(status::OBJECT_TYPE_MISMATCH)
    );
    // A second driver of the same name.
    // SAFETY: a Microsoft x64 DriverEntry of this file.
    let second = unsafe {
        Driver::start(
            "WdmIoNames",
            "\\R\\WdmIoNames2",
            driver_entry as *const () as usize,
        )
    };
    assert_eq!(second.unwrap_err(), NtStatus(status::OBJECT_NAME_COLLISION));
    driver.unload().unwrap();
}

#[test]
fn an_exclusive_device_takes_one_handle_at_a_time() {
    let driver = start("WdmIoExcl");
    let first = driver.open("\\\\.\\WdmIoExcl").unwrap();
    assert_eq!(
        driver.open("\\\\.\\WdmIoExcl").unwrap_err(),
        NtStatus(status::ACCESS_DENIED)
    );
    drop(first);
    let second = driver.open("\\\\.\\WdmIoExcl").unwrap();
    drop(second);
    driver.unload().unwrap();
}

#[test]
fn a_deleted_device_refuses_requests_and_still_gets_close() {
    let driver = start("WdmIoDelete");
    let handle = driver.open("\\\\.\\WdmIoDelete").unwrap();
    let ext = ext_of(&driver);
    let (status, _) = driver.device_control(&handle, DELETE_DEVICE, &[], &mut []);
    assert_eq!(status, NtStatus::SUCCESS);
    assert!(driver.devices().is_empty());
    let (status, _) = driver.device_control(&handle, ECHO_REVERSE, b"a", &mut [0]);
    assert_eq!(status, NtStatus(status::DELETE_PENDING));
    assert_eq!(
        driver.open("\\\\.\\WdmIoDelete").unwrap_err(),
        NtStatus(status::OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(ext.closes.load(Ordering::SeqCst), 0);
    // The device object (and `ext` with it) lives until its last handle is closed: the close
    // still reaches the driver, then the memory is freed (`ext` is not used again).
    assert_eq!(driver.close(handle), NtStatus::SUCCESS);
    driver.unload().unwrap();
}

#[test]
fn iof_complete_request_preserves_the_win64_callee_saved_registers() {
    let driver = start("WdmIoCanary");
    let handle = driver.open("\\\\.\\WdmIoCanary").unwrap();
    let mut output = [0xFFu8; 1];
    let (status, information) =
        driver.device_control(&handle, COMPLETE_WITH_CANARIES, &[], &mut output);
    assert_eq!((status, information), (NtStatus::SUCCESS, 1));
    assert_eq!(output[0], 0, "registers clobbered by IofCompleteRequest");
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn unload_reports_leaks_and_refuses_without_an_unload_routine() {
    let driver = start("WdmIoLeakLinkLeakPool");
    let before = pool_usage(POOL_TAG).outstanding;
    assert!(before >= 1);
    match driver.unload() {
        Err(UnloadError::Leaked(leaks)) => {
            assert!(leaks.devices.is_empty());
            assert_eq!(leaks.links, ["\\??\\WDMIOLEAKLINKLEAKPOOL"]);
            assert_eq!(leaks.pool.len(), 1);
            assert_eq!(
                (leaks.pool[0].tag, leaks.pool[0].blocks, leaks.pool[0].bytes),
                (POOL_TAG, 1, 24)
            );
            assert_eq!(leaks.threads, 0);
            assert!(leaks.to_string().contains("'WdmT'"), "{leaks}");
        }
        other => panic!("{other:?}"),
    }
    let driver = start("WdmIoNoUnload");
    match driver.unload() {
        Err(UnloadError::NoUnloadRoutine(driver)) => {
            assert_eq!(driver.name(), "WdmIoNoUnload");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_driver_entry_is_reported_and_leaves_nothing() {
    /// A `DriverEntry` that fails without touching anything.
    ///
    /// # Safety
    /// None: it reads no argument.
    unsafe extern "win64" fn failing_entry(
        _driver: *mut DRIVER_OBJECT,
        _path: *mut ddi::UNICODE_STRING,
    ) -> ddi::NTSTATUS {
        ddi::STATUS_INSUFFICIENT_RESOURCES
    }
    // SAFETY: a Microsoft x64 DriverEntry.
    let result = unsafe {
        Driver::start(
            "WdmIoFails",
            "\\R\\WdmIoFails",
            failing_entry as *const () as usize,
        )
    };
    assert_eq!(
        result.unwrap_err(),
        NtStatus(ddi::STATUS_INSUFFICIENT_RESOURCES)
    );
    // The name is free again: the entry runs and fails the same way (no name collision).
    // SAFETY: as above.
    let result = unsafe {
        Driver::start(
            "WdmIoFails",
            "\\R\\WdmIoFails",
            failing_entry as *const () as usize,
        )
    };
    assert_eq!(
        result.unwrap_err(),
        NtStatus(ddi::STATUS_INSUFFICIENT_RESOURCES)
    );
}

/// The test fault of `wdm::io::hold`, in a child process: the gate is process-wide, and no
/// other test may send requests meanwhile.
#[test]
fn a_held_completion_keeps_its_request_in_flight_until_released() {
    const NAME: &str = "a_held_completion_keeps_its_request_in_flight_until_released";
    const PASSED: &str = "hold scenario passed";
    if child_scenario().as_deref() == Some("hold") {
        let driver = start("WdmIoHold");
        let handle = driver.open("\\\\.\\WdmIoHold").unwrap();
        // A gate dropped before any completion took it is disarmed: this request passes.
        drop(hold_next_completion());
        let mut output = [0u8; 1];
        assert_eq!(
            driver.device_control(&handle, ECHO_REVERSE, b"a", &mut output),
            (NtStatus::SUCCESS, 1)
        );
        let held = hold_next_completion();
        std::thread::scope(|scope| {
            let request = scope.spawn(|| {
                let mut output = [0u8; 2];
                let result = driver.device_control(&handle, ECHO_REVERSE, b"xy", &mut output);
                (result, output)
            });
            assert!(
                held.wait_until_held(Duration::from_secs(5)),
                "the request reached the gate"
            );
            // One completion is held, not the ones after it.
            let mut output = [0u8; 1];
            assert_eq!(
                driver.device_control(&handle, ECHO_REVERSE, b"b", &mut output),
                (NtStatus::SUCCESS, 1)
            );
            std::thread::sleep(Duration::from_millis(50));
            assert!(!request.is_finished(), "held until released");
            held.release();
            assert_eq!(request.join().unwrap(), ((NtStatus::SUCCESS, 2), *b"yx"));
        });
        drop(handle);
        driver.unload().unwrap();
        println!("{PASSED}");
        return;
    }
    let output = run_child(NAME, "hold");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(PASSED),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Child-process bugchecks: each scenario runs in a fresh process.
#[test]
fn irp_rule_violations_bugcheck() {
    if let Some(scenario) = child_scenario() {
        let driver = start(&format!("WdmIoChild{scenario}"));
        let handle = driver
            .open(&format!("\\\\.\\WdmIoChild{scenario}"))
            .unwrap();
        let code = match scenario.as_str() {
            "double" => DOUBLE_COMPLETE,
            "never" => NO_COMPLETE,
            "overrun" => TOO_MUCH_INFORMATION,
            "mismatch" => STATUS_MISMATCH,
            other => panic!("{other}"),
        };
        let _ = driver.device_control(&handle, code, &[], &mut [0; 4]);
        // Unreachable: the process was stopped.
        std::process::exit(0);
    }
    for (scenario, needle) in [
        ("double", "0x44 MULTIPLE_IRP_COMPLETE_REQUESTS"),
        ("never", "without completing"),
        ("overrun", "Information 5 > OutputBufferLength 4"),
        ("mismatch", "but returned 0xC0000001"),
    ] {
        let output = run_child("irp_rule_violations_bugcheck", scenario);
        assert_bugcheck(&output, needle);
    }
}
