//! Helpers shared by the behaviour tests (each test file includes this module).

#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::pin::Pin;
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy::{DriverObject, Event, EventKind, EventRef, HotSwap, sys};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{self, ExtensionControl};

/// The driver object of `storage`, for the library.
pub fn driver(storage: &mut HostDriverObject) -> DriverObject {
    // SAFETY: the host driver object outlives every use in the test.
    unsafe { DriverObject::from_raw(storage.as_raw()) }.expect("non-null")
}

/// A `HotSwap` with an extension (hot-swap available) for `storage`.
pub fn hotswap(storage: &mut HostDriverObject) -> HotSwap {
    let hotswap = HotSwap::new(driver(storage)).expect("create");
    assert_eq!(
        hotswap.unavailable(),
        None,
        "hot-swap is available on the host"
    );
    assert!(hotswap.is_hot_swappable());
    hotswap
}

/// A `HotSwap` with an extension for `storage`, whose image declares `endpoints` (its
/// `.shsept` list, found by the V2 lookup) before the extension is created.
pub fn image_hotswap(storage: &mut HostDriverObject, endpoints: &[usize]) -> HotSwap {
    storage
        .control()
        .declare_image_endpoints(endpoints)
        .expect("declare the image's endpoints");
    hotswap(storage)
}

/// The raw `PDRIVER_PROXY_EXTENSION` of `hotswap`.
pub fn raw_extension(hotswap: &HotSwap) -> sys::PDRIVER_PROXY_EXTENSION {
    hotswap.raw_extension().expect("an extension")
}

/// The control of `hotswap`'s extension.
pub fn extension(hotswap: &HotSwap) -> ExtensionControl {
    ExtensionControl::from_raw(raw_extension(hotswap)).expect("a live extension")
}

/// Waits until `condition` holds, at most 5 s.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting until {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// An initialised event in leaked (`'static`) storage.
pub fn event(kind: EventKind, signalled: bool) -> EventRef<'static> {
    let event: &'static Event = Box::leak(Box::new(Event::new()));
    Pin::static_ref(event)
        .initialize(kind, signalled)
        .expect("initialize")
}

/// A routine of the running kernel as the library reads it: found the way the library finds
/// it (its `MmGetSystemRoutineAddress`, with the export name of `sys::names` or
/// `sys::kernel_names`), typed with its `sys::PFN_` type `F`. For the few calls a library test
/// makes below the safe API (an extension or a record made without the library).
///
/// # Safety
/// `F` must be the routine's `PFN_` type.
pub unsafe fn routine<F: Copy>(name: sys::RoutineName) -> F {
    assert_eq!(size_of::<F>(), size_of::<usize>());
    let mut units = name.utf16.to_vec();
    let bytes = u16::try_from(units.len() * 2).unwrap();
    let mut string = sys::UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: units.as_mut_ptr(),
    };
    // SAFETY: a valid counted string, alive for the call.
    let address = unsafe { sys::MmGetSystemRoutineAddress(&raw mut string) };
    assert!(!address.is_null(), "{} is exported", name.ascii);
    // SAFETY: caller contract: `F` is the routine's function-pointer type.
    unsafe { core::mem::transmute_copy::<*mut core::ffi::c_void, F>(&address) }
}

/// `KeSetEvent` on a raw event (through the library's reading of the routine); the previous
/// state.
pub fn set(event: sys::PKEVENT) -> i32 {
    // SAFETY: the routine's own type.
    let set_event: sys::PFN_KeSetEvent = unsafe { routine(sys::kernel_names::KE_SET_EVENT) };
    // SAFETY: an initialised event.
    unsafe { set_event(event, sys::IO_NO_INCREMENT, sys::FALSE) }
}

/// The thread behind an open thread handle (it outlives the handle).
pub fn thread_of(handle: sys::HANDLE) -> control::ThreadControl {
    control::thread(handle).expect("an open thread handle")
}

/// Waits (at most 5 s) for the thread behind `handle` to end.
pub fn join(handle: sys::HANDLE) {
    assert!(
        thread_of(handle).wait(Duration::from_secs(5)),
        "the thread did not end"
    );
}

/// A value leaked for the rest of the process.
pub fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}
