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

/// Raw `KEVENT` storage initialised by the kernel, for start contexts built by hand for the
/// raw worker-thread routine.
pub fn raw_event(kind: sys::EVENT_TYPE, signalled: bool) -> sys::PKEVENT {
    let storage: &'static mut sys::KEVENT = Box::leak(Box::new(sys::KEVENT::zeroed()));
    let raw: sys::PKEVENT = storage;
    // SAFETY: fresh, leaked (never moving) KEVENT storage.
    unsafe { driver_proxy_host::kernel::KeInitializeEvent(raw, kind, u8::from(signalled)) };
    raw
}

/// `KeSetEvent` on a raw event; the previous state.
pub fn set(event: sys::PKEVENT) -> i32 {
    // SAFETY: an initialised event.
    unsafe { driver_proxy_host::kernel::KeSetEvent(event, sys::IO_NO_INCREMENT, sys::FALSE) }
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
