//! The driver (Windows targets only): `DriverEntry`, first load and swap mode (crate docs).
//! The C run-time symbols it needs (`memcpy`, `memset`, `__chkstk`, …) and its panic
//! handler's bug check are the repository's crate `driver-proxy-rt`.

pub mod endpoints;
pub mod pad;
pub mod wdm;

use core::ffi::CStr;
use core::sync::atomic::Ordering;

use driver_proxy::{DriverObject, HotSwap, NtStatus, Phase};
use scratchpad::VERSION;

use endpoints::Wrappers;
use pad::Pad;
use wdm::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING};

/// Bug check code of a Rust panic (`"SPAD"`); none is reachable by design.
pub const PANIC_BUGCHECK_CODE: u32 = u32::from_be_bytes(*b"SPAD");

/// The entry point (`/ENTRY:DriverEntry`): a first load, or swap mode when the driver object
/// has this driver's device already.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called by the I/O manager (or a loader in swap mode) with the driver's own object.
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

/// # Safety
/// As [`DriverEntry`].
unsafe fn entry(driver: PDRIVER_OBJECT) -> Result<(), NtStatus> {
    // SAFETY: the driver's own object, valid until unload.
    let proxy_driver = unsafe { DriverObject::from_raw(driver.cast()) }?;
    // SAFETY: as above; no unload runs during DriverEntry.
    match unsafe { Pad::existing(driver) }? {
        // SAFETY: as above.
        None => unsafe { first_load(driver, proxy_driver) },
        // SAFETY: as above.
        Some(pad) => unsafe { take_over(driver, proxy_driver, pad) },
    }
}

/// The first load: the endpoints registered and their wrappers installed, then the device.
///
/// # Safety
/// As [`DriverEntry`]; the driver has no device yet.
unsafe fn first_load(driver: PDRIVER_OBJECT, proxy_driver: DriverObject) -> Result<(), NtStatus> {
    let hotswap = HotSwap::new(proxy_driver)?;
    log(if hotswap.is_hot_swappable() {
        c"loaded, hot swap available"
    } else {
        c"loaded, hot swap unavailable: running without it"
    });
    let table = endpoints::table()?;
    hotswap.register(&table, None)?;
    let wrappers = Wrappers::look_up(&hotswap, &table)?;
    #[cfg(feature = "test-leak-pool")]
    leak_pool();
    // SAFETY: our driver object; no device yet, so nothing reads the slots.
    unsafe { wrappers.install(driver) };
    // SAFETY: our driver object in DriverEntry, without a device.
    unsafe { pad::create(driver, wrappers.flush.address()) }
}

/// TEST ONLY (feature `test-leak-pool`): a pool block nobody frees, for the leak report.
#[cfg(feature = "test-leak-pool")]
fn leak_pool() {
    // SAFETY: a plain allocation, deliberately never freed.
    let block = unsafe {
        wdm::ExAllocatePoolWithTag(
            wdm::NON_PAGED_POOL_NX,
            scratchpad::LEAK_SIZE,
            scratchpad::LEAK_TAG,
        )
    };
    if block.is_null() {
        log(c"test-leak-pool: allocation failed");
    }
}

/// Swap mode: the same ids re-registered with this image's routines; in `ProxyStalled` (no
/// endpoint runs) the swap is counted and this version recorded as serving.
///
/// # Errors
/// `STATUS_NOT_SUPPORTED` without hot swap; the registration's status (rolled back).
///
/// # Safety
/// As [`DriverEntry`]; `pad` is the extension of the driver's device.
unsafe fn take_over(
    driver: PDRIVER_OBJECT,
    proxy_driver: DriverObject,
    pad: &Pad,
) -> Result<(), NtStatus> {
    let hotswap = HotSwap::from_driver_object(proxy_driver)?;
    if !hotswap.is_hot_swappable() {
        log(c"swap refused: hot swap is unavailable");
        return Err(NtStatus::NOT_SUPPORTED);
    }
    let from = pad.serving_version.load(Ordering::Acquire);
    let table = endpoints::table()?;
    let mut on_phase = |phase: Phase| {
        if phase == Phase::ProxyStalled {
            pad.swaps.fetch_add(1, Ordering::AcqRel);
            pad.serving_version.store(VERSION, Ordering::Release);
        }
        Ok(())
    };
    if let Err(error) = hotswap.register(&table, Some(&mut on_phase)) {
        log_status(c"swap failed, rolled back", error.into());
        return Err(error.into());
    }
    // Committed. V1 re-registration keeps the wrappers; store them anyway.
    match Wrappers::look_up(&hotswap, &table) {
        Ok(wrappers) => {
            pad.flush_routine
                .store(wrappers.flush.address(), Ordering::Release);
            // SAFETY: our driver object.
            unsafe { wrappers.install(driver) };
        }
        Err(error) => log_status(c"wrapper lookup after the swap", error.into()),
    }
    // SAFETY: a NUL-terminated format with three %u for three u32.
    unsafe {
        wdm::DbgPrint(
            c"Scratchpad v%u: took over from v%u (swap %u)\n".as_ptr(),
            VERSION,
            from,
            pad.swaps.load(Ordering::Acquire),
        );
    }
    Ok(())
}

/// `DbgPrint("Scratchpad v<version>: <message>")`.
pub fn log(message: &CStr) {
    // SAFETY: a NUL-terminated format whose conversions match the arguments.
    unsafe { wdm::DbgPrint(c"Scratchpad v%u: %s\n".as_ptr(), VERSION, message.as_ptr()) };
}

/// `DbgPrint("Scratchpad v<version>: <message>: 0x<status>")`.
pub fn log_status(message: &CStr, status: NtStatus) {
    // SAFETY: as in `log`; %08X takes the status as a u32.
    unsafe {
        wdm::DbgPrint(
            c"Scratchpad v%u: %s: 0x%08X\n".as_ptr(),
            VERSION,
            message.as_ptr(),
            status.raw().cast_unsigned(),
        );
    }
}

/// Bug check [`PANIC_BUGCHECK_CODE`], parameters: line, column, version.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    driver_proxy_rt::panic_bug_check(PANIC_BUGCHECK_CODE, info, VERSION as usize)
}
