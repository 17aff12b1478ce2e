//! Helpers shared by the behaviour tests (each test file includes this module).

#![allow(dead_code, unreachable_pub, clippy::missing_panics_doc)]

use std::pin::Pin;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy::{DriverObject, Event, EventKind, HotSwap, sys};
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
    hotswap
}

/// The control of `hotswap`'s extension.
pub fn extension(hotswap: &HotSwap) -> ExtensionControl {
    ExtensionControl::from_raw(hotswap.extension().expect("extension").as_raw())
        .expect("a live extension")
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
pub fn event(kind: EventKind, signalled: bool) -> &'static Event {
    let event: &'static Event = Box::leak(Box::new(Event::new()));
    Pin::static_ref(event)
        .initialize(kind, signalled)
        .expect("initialize");
    event
}

/// Raw `KEVENT` storage initialised by the kernel, for tests of the wait itself (the safe
/// API has no wait: only the kernel's worker loops wait).
pub fn raw_event(kind: sys::EVENT_TYPE, signalled: bool) -> sys::PKEVENT {
    let storage: &'static mut sys::KEVENT = Box::leak(Box::new(sys::KEVENT::zeroed()));
    let raw: sys::PKEVENT = storage;
    // SAFETY: fresh, leaked (never moving) KEVENT storage.
    unsafe { driver_proxy_host::kernel::KeInitializeEvent(raw, kind, u8::from(signalled)) };
    raw
}

/// `KeWaitForMultipleObjects` on raw events.
pub fn wait(events: &[sys::PKEVENT], wait_all: bool, timeout: Option<i64>) -> sys::NTSTATUS {
    let mut objects: Vec<sys::PVOID> = events.iter().map(|&e| e.cast()).collect();
    let mut blocks = vec![0u64; sys::KWAIT_BLOCK_SIZE / 8 * objects.len()];
    let mut timeout = timeout.map(|t| sys::LARGE_INTEGER { QuadPart: t });
    // SAFETY: initialised events, alive for the test; a wait-block array large enough.
    unsafe {
        driver_proxy_host::kernel::KeWaitForMultipleObjects(
            u32::try_from(objects.len()).unwrap(),
            objects.as_mut_ptr(),
            if wait_all { sys::WaitAll } else { sys::WaitAny },
            sys::Executive,
            sys::KernelMode,
            sys::FALSE,
            timeout
                .as_mut()
                .map_or(std::ptr::null_mut(), std::ptr::from_mut),
            blocks.as_mut_ptr().cast(),
        )
    }
}

/// `KeSetEvent` on a raw event; the previous state.
pub fn set(event: sys::PKEVENT) -> i32 {
    // SAFETY: an initialised event.
    unsafe { driver_proxy_host::kernel::KeSetEvent(event, sys::IO_NO_INCREMENT, sys::FALSE) }
}

/// `KeReadStateEvent` on a raw event.
pub fn is_set(event: sys::PKEVENT) -> bool {
    // SAFETY: an initialised event.
    unsafe { driver_proxy_host::kernel::KeReadStateEvent(event) != 0 }
}

/// Waits (at most 5 s) for the thread behind `handle` to end.
pub fn join(handle: sys::HANDLE) {
    let thread = control::thread(handle).expect("an open thread handle");
    assert!(
        thread.wait(Duration::from_secs(5)),
        "the thread did not end"
    );
}

/// A value leaked for the rest of the process (worker contexts must outlive their threads).
pub fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// Runs the test `entry` of this binary in a child process with `CHILD_SCENARIO` set.
pub fn run_child(entry: &str) -> Output {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env("CHILD_SCENARIO", entry)
        .output()
        .expect("child process")
}

/// Whether this process is the child running `entry`.
pub fn is_child(entry: &str) -> bool {
    std::env::var("CHILD_SCENARIO").is_ok_and(|s| s == entry)
}

/// Asserts that the child running `entry` was stopped by the bugcheck `expected`.
pub fn assert_bugcheck(entry: &str, expected: &str) {
    let output = run_child(entry);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the child survived; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in the child's stderr:\n{stderr}"
    );
}
