//! The IRQL the model tracks: spin locks raise a thread to `DISPATCH_LEVEL`, routines check
//! their IRQL limit against it, and a driver routine must return at the IRQL it was called
//! at. Driven by a small driver written in Rust with the Microsoft x64 convention; the
//! violations run in child processes (the harness's `isolated_each`).

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod wdm_common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use driver_proxy::NtStatus;
use driver_proxy_host::ddi;
use driver_proxy_host::harness::isolated_each;
use driver_proxy_host::wdm::types::{
    DEVICE_OBJECT, DRIVER_OBJECT, IO_STACK_LOCATION, IRP, IRP_MJ_CLOSE, IRP_MJ_CREATE,
    IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED,
};
use driver_proxy_host::wdm::{Driver, win64_routine};

use wdm_common::{complete, create_device, ctl, delete_devices, name_of, nt};

/// The spin-lock routines, as the test driver calls them.
#[allow(non_snake_case)]
struct Locks {
    KeAcquireSpinLockRaiseToDpc: unsafe extern "win64" fn(*mut usize) -> u8,
    KeReleaseSpinLock: unsafe extern "win64" fn(*mut usize, u8),
    KeAcquireSpinLockAtDpcLevel: unsafe extern "win64" fn(*mut usize),
    KeReleaseSpinLockFromDpcLevel: unsafe extern "win64" fn(*mut usize),
}

fn locks() -> &'static Locks {
    fn routine<F: Copy>(name: &str) -> F {
        let address = win64_routine("ntoskrnl.exe", name).unwrap_or_else(|| panic!("{name}"));
        // SAFETY: F is the routine's function-pointer type (each field of Locks).
        unsafe { core::mem::transmute_copy::<usize, F>(&address) }
    }
    static LOCKS: std::sync::OnceLock<Locks> = std::sync::OnceLock::new();
    LOCKS.get_or_init(|| Locks {
        KeAcquireSpinLockRaiseToDpc: routine("KeAcquireSpinLockRaiseToDpc"),
        KeReleaseSpinLock: routine("KeReleaseSpinLock"),
        KeAcquireSpinLockAtDpcLevel: routine("KeAcquireSpinLockAtDpcLevel"),
        KeReleaseSpinLockFromDpcLevel: routine("KeReleaseSpinLockFromDpcLevel"),
    })
}

/// Adds 1 to an unprotected counter under the lock (read, yield, write).
const COUNT: u32 = ctl(1, METHOD_BUFFERED);
/// Under the lock: a second lock at `DISPATCH_LEVEL`, non-paged pool, the completion.
const ALLOWED_UNDER_LOCK: u32 = ctl(2, METHOD_BUFFERED);
const CREATE_DEVICE_UNDER_LOCK: u32 = ctl(10, METHOD_BUFFERED);
const PAGED_POOL_UNDER_LOCK: u32 = ctl(11, METHOD_BUFFERED);
const RETURN_WITH_LOCK_HELD: u32 = ctl(12, METHOD_BUFFERED);
const RELEASE_NOT_HELD: u32 = ctl(13, METHOD_BUFFERED);
const ACQUIRE_TWICE: u32 = ctl(14, METHOD_BUFFERED);
const AT_DPC_LEVEL_AT_PASSIVE: u32 = ctl(15, METHOD_BUFFERED);

/// The device extension.
#[repr(C)]
struct Extension {
    lock: usize,
    second: usize,
    counter: AtomicU64,
    previous_irql: AtomicU32,
}

const POOL_TAG: u32 = u32::from_le_bytes(*b"IrqT");

fn extension(device: *mut DEVICE_OBJECT) -> *mut Extension {
    // SAFETY: every device of this driver has an Extension.
    unsafe { (*device).DeviceExtension.cast::<Extension>() }
}

/// # Safety
/// Called by the I/O manager with a new driver object and a valid registry path.
unsafe extern "win64" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *mut ddi::UNICODE_STRING,
) -> ddi::NTSTATUS {
    let name = name_of(registry_path);
    let size = u32::try_from(size_of::<Extension>()).unwrap();
    // SAFETY: our driver object, in its DriverEntry; the extension is zeroed (an initialised
    // spin lock is 0); the dispatch slots are ours to set before the device is started.
    unsafe {
        create_device(driver, &name, size, 0x22, 0, false).expect("IoCreateDevice");
        (*driver).MajorFunction[IRP_MJ_CREATE] = complete_success as *const () as usize;
        (*driver).MajorFunction[IRP_MJ_CLOSE] = complete_success as *const () as usize;
        (*driver).MajorFunction[IRP_MJ_DEVICE_CONTROL] =
            dispatch_device_control as *const () as usize;
        (*driver).DriverUnload = driver_unload as *const () as usize;
    }
    ddi::STATUS_SUCCESS
}

/// # Safety
/// Called by the I/O manager with this driver's object.
unsafe extern "win64" fn driver_unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: our driver object, no request in flight.
    unsafe { delete_devices(driver) };
}

/// # Safety
/// Called by the I/O manager.
unsafe extern "win64" fn complete_success(_device: *mut DEVICE_OBJECT, irp: *mut IRP) -> i32 {
    // SAFETY: the I/O manager's IRP.
    unsafe { complete(irp, ddi::STATUS_SUCCESS, 0) }
}

/// # Safety
/// Called by the I/O manager with a device of this driver.
unsafe extern "win64" fn dispatch_device_control(
    device: *mut DEVICE_OBJECT,
    irp: *mut IRP,
) -> ddi::NTSTATUS {
    let ext = extension(device);
    let l = locks();
    // SAFETY: the I/O manager's IRP; the extension's locks and counter.
    unsafe {
        let stack: &IO_STACK_LOCATION = &*(*irp).CurrentStackLocation;
        let lock = &raw mut (*ext).lock;
        match u32::try_from(stack.Parameters[2]).unwrap() {
            COUNT => {
                let previous = (l.KeAcquireSpinLockRaiseToDpc)(lock);
                (*ext)
                    .previous_irql
                    .store(u32::from(previous), Ordering::SeqCst);
                let value = (*ext).counter.load(Ordering::Relaxed);
                std::thread::yield_now();
                (*ext).counter.store(value + 1, Ordering::Relaxed);
                (l.KeReleaseSpinLock)(lock, previous);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            ALLOWED_UNDER_LOCK => {
                let previous = (l.KeAcquireSpinLockRaiseToDpc)(lock);
                (l.KeAcquireSpinLockAtDpcLevel)(&raw mut (*ext).second);
                let block = (nt().ExAllocatePool2)(ddi::POOL_FLAG_NON_PAGED, 16, POOL_TAG);
                (nt().ExFreePoolWithTag)(block, POOL_TAG);
                (l.KeReleaseSpinLockFromDpcLevel)(&raw mut (*ext).second);
                // Completing at DISPATCH_LEVEL is allowed.
                let status = complete(irp, ddi::STATUS_SUCCESS, 0);
                (l.KeReleaseSpinLock)(lock, previous);
                status
            }
            CREATE_DEVICE_UNDER_LOCK => {
                let _ = (l.KeAcquireSpinLockRaiseToDpc)(lock);
                let mut other: *mut DEVICE_OBJECT = core::ptr::null_mut();
                let driver = (*device).DriverObject;
                let _ = (nt().IoCreateDevice)(
                    driver,
                    0,
                    core::ptr::null_mut(),
                    0x22,
                    0,
                    0,
                    &raw mut other,
                );
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            PAGED_POOL_UNDER_LOCK => {
                let _ = (l.KeAcquireSpinLockRaiseToDpc)(lock);
                let _ = (nt().ExAllocatePool2)(0x100, 16, POOL_TAG); // POOL_FLAG_PAGED
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            RETURN_WITH_LOCK_HELD => {
                let _ = (l.KeAcquireSpinLockRaiseToDpc)(lock);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            RELEASE_NOT_HELD => {
                (l.KeReleaseSpinLock)(lock, 0);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            ACQUIRE_TWICE => {
                let _ = (l.KeAcquireSpinLockRaiseToDpc)(lock);
                (l.KeAcquireSpinLockAtDpcLevel)(lock);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            AT_DPC_LEVEL_AT_PASSIVE => {
                (l.KeAcquireSpinLockAtDpcLevel)(lock);
                complete(irp, ddi::STATUS_SUCCESS, 0)
            }
            _ => complete(irp, ddi::STATUS_INVALID_DEVICE_REQUEST, 0),
        }
    }
}

fn start(name: &str) -> Driver {
    let path = format!("\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{name}");
    // SAFETY: a Microsoft x64 DriverEntry of this file.
    unsafe { Driver::start(name, &path, driver_entry as *const () as usize) }
        .unwrap_or_else(|status| panic!("{name}: {status:?}"))
}

#[test]
fn a_spin_lock_excludes_other_threads_and_allows_what_dispatch_level_allows() {
    const THREADS: usize = 2;
    const EACH: u64 = 500;
    let driver = start("IrqlLocks");
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let handle = driver.open("\\Device\\IrqlLocks").unwrap();
                for _ in 0..EACH {
                    assert_eq!(
                        driver.device_control(&handle, COUNT, &[], &mut []),
                        (NtStatus::SUCCESS, 0)
                    );
                }
            });
        }
    });
    let device = driver.devices()[0] as *mut DEVICE_OBJECT;
    // SAFETY: the device's extension; no request runs.
    let (count, previous) = unsafe {
        (
            (*extension(device)).counter.load(Ordering::SeqCst),
            (*extension(device)).previous_irql.load(Ordering::SeqCst),
        )
    };
    assert_eq!(
        count,
        THREADS as u64 * EACH,
        "no increment lost under the lock"
    );
    assert_eq!(previous, 0, "acquired from PASSIVE_LEVEL");
    let handle = driver.open("\\Device\\IrqlLocks").unwrap();
    assert_eq!(
        driver.device_control(&handle, ALLOWED_UNDER_LOCK, &[], &mut []),
        (NtStatus::SUCCESS, 0)
    );
    drop(handle);
    driver.unload().unwrap();
}

#[test]
fn irql_violations_bugcheck() {
    let cases = [
        (
            CREATE_DEVICE_UNDER_LOCK,
            "create-device",
            "in IoCreateDevice: called at DISPATCH_LEVEL",
        ),
        (
            PAGED_POOL_UNDER_LOCK,
            "paged-pool",
            "in ExAllocatePool2: called at DISPATCH_LEVEL",
        ),
        (
            RETURN_WITH_LOCK_HELD,
            "return-held",
            "returned to the I/O manager at DISPATCH_LEVEL",
        ),
        (
            RELEASE_NOT_HELD,
            "release-not-held",
            "in KeReleaseSpinLock: called at PASSIVE_LEVEL",
        ),
        (
            ACQUIRE_TWICE,
            "acquire-twice",
            "is held by this thread already",
        ),
        (
            AT_DPC_LEVEL_AT_PASSIVE,
            "at-dpc-level",
            "in KeAcquireSpinLockAtDpcLevel: called at PASSIVE_LEVEL",
        ),
    ];
    let outcomes = isolated_each(
        &cases,
        |case| case.1.to_owned(),
        |&(code, label, _)| {
            let name = format!("IrqlChild{}", label.replace('-', ""));
            let driver = start(&name);
            let handle = driver.open(&format!("\\Device\\{name}")).unwrap();
            let _ = driver.device_control(&handle, code, &[], &mut []);
        },
    );
    for ((_, label, needle), outcome) in cases.iter().zip(outcomes) {
        let bugcheck = outcome
            .bugcheck()
            .unwrap_or_else(|| panic!("{label}: no bugcheck: {}", outcome.stderr));
        assert_eq!(bugcheck.code, 0xC4, "{label}: {bugcheck:?}");
        assert!(
            outcome.stderr.contains(needle),
            "{label}: expected {needle:?} in {}",
            outcome.stderr
        );
    }
}
