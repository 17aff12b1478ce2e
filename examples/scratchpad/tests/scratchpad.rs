//! The scratch pad's images in the host kernel, through the test harness only
//! (`driver_proxy_host::harness`): load, every kind of request, the flush work item, a hot
//! swap under load with no request lost, a request held in flight across a swap, faults, and
//! the leak report.
//!
//! Build the images first (`cargo xtask test` does):
//!
//! ```text
//! cargo xtask build-driver --manifest-path examples/scratchpad/Cargo.toml --arch amd64 --name scratchpad_v1
//! cargo xtask build-driver --manifest-path examples/scratchpad/Cargo.toml --arch amd64 --name scratchpad_v2 --features v2
//! cargo xtask build-driver --manifest-path examples/scratchpad/Cargo.toml --arch amd64 --name scratchpad_leak --features test-leak-pool
//! ```
//!
//! Without them each test says it is skipped and passes, unless `DRIVER_PROXY_REQUIRE_IMAGES`
//! is set.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]
#![allow(
    clippy::cast_possible_truncation,
    reason = "offsets and patterns of a 4 KiB pad, truncated on purpose"
)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy::NtStatus;
use driver_proxy_host::harness::{
    DriverFeatures, Handle, ImageDriverError, Images, LoadOptions, PoolLeak, Stress, TestDriver,
    ctl_code, faults, isolated,
};
use scratchpad::{
    CAPACITY, CHECKSUM_SIZE, Checksum, INFO_SIZE, IOCTL_CHECKSUM, IOCTL_DUMP, IOCTL_FLUSH,
    IOCTL_INFO, IOCTL_LOAD, Info, LEAK_SIZE, LEAK_TAG, MAGIC, METHOD_BUFFERED, METHOD_IN_DIRECT,
    METHOD_NEITHER, METHOD_OUT_DIRECT, SERVICE, STATUS_DISK_FULL, STATUS_END_OF_FILE, STORE_TAG,
    WIN32_PATH, checksum,
};

/// One scratch pad at a time: its driver and device names are the host kernel's, process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The image `name`, or `None` (the test is skipped, with a note).
fn image(name: &str) -> Option<PathBuf> {
    Images::find(env!("CARGO_MANIFEST_DIR")).require(name)
}

fn info(handle: &Handle) -> Info {
    let mut output = [0u8; INFO_SIZE];
    let answer = handle.device_control(IOCTL_INFO, &[], &mut output);
    assert_eq!(answer.status, NtStatus::SUCCESS, "INFO");
    Info::from_bytes(&output[..answer.information]).expect("an INFO answer")
}

/// Waits until `done(info)` (10 s at most).
fn wait_for(handle: &Handle, what: &str, done: impl Fn(&Info) -> bool) -> Info {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = info(handle);
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {now:?}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn loads_prints_holds_its_store_in_pool_and_unloads_cleanly() {
    let Some(v1) = image("scratchpad_v1.sys") else {
        return;
    };
    let _serial = serial();
    let driver = TestDriver::load(&v1, SERVICE).expect("DriverEntry succeeds");
    assert_eq!(driver.entry_status(), NtStatus::SUCCESS);
    assert_eq!(
        driver.dbg_print(),
        ["Scratchpad v1: loaded, hot swap available\n"]
    );
    assert_eq!(
        driver.pool(),
        [PoolLeak {
            tag: STORE_TAG,
            blocks: 1,
            bytes: CAPACITY
        }],
        "the store, and nothing else"
    );
    assert!(driver.hot_swap().is_some(), "it runs with hot swap");
    // By its link and by its device name.
    let handle = driver.open(WIN32_PATH).expect("open by link");
    let by_name = driver
        .open("\\Device\\Scratchpad")
        .expect("open by NT name");
    let now = info(&handle);
    assert_eq!((now.magic, now.version, now.swaps), (MAGIC, 1, 0));
    let closed = by_name.close();
    assert_eq!(
        (closed.cleanup, closed.close),
        (NtStatus::SUCCESS, NtStatus::SUCCESS)
    );
    drop(handle);
    driver.unload().expect("nothing left behind");
}

#[test]
fn reads_and_writes_go_through_direct_io() {
    let Some(v1) = image("scratchpad_v1.sys") else {
        return;
    };
    let _serial = serial();
    let driver = TestDriver::load(&v1, SERVICE).unwrap();
    let handle = driver.open(WIN32_PATH).unwrap();
    // Across a page of the caller's buffer and the pad.
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let written = handle.write(&data, 1000);
    assert_eq!(
        (written.status, written.information),
        (NtStatus::SUCCESS, 3000)
    );
    let mut back = vec![0u8; 3000];
    assert_eq!(handle.read(&mut back, 1000).information, 3000);
    assert_eq!(back, data);
    // A read that runs past the end returns what there is.
    let mut tail = vec![0u8; 200];
    let read = handle.read(&mut tail, (CAPACITY - 50) as u64);
    assert_eq!((read.status, read.information), (NtStatus::SUCCESS, 50));
    // At the end: end of file; a write that does not fit: disk full, nothing stored.
    assert_eq!(
        handle.read(&mut tail, CAPACITY as u64).status,
        NtStatus(STATUS_END_OF_FILE)
    );
    assert_eq!(
        handle.write(&[1; 10], (CAPACITY - 5) as u64).status,
        NtStatus(STATUS_DISK_FULL)
    );
    // Nothing: success, no MDL needed.
    assert_eq!(handle.write(&[], 0).information, 0);
    // A negative ByteOffset.
    assert_eq!(
        handle.read(&mut tail, u64::MAX).status,
        NtStatus::INVALID_PARAMETER
    );
    let now = info(&handle);
    assert_eq!((now.reads, now.writes), (2, 1));
    // Every request counted (this INFO included).
    assert_eq!(now.requests, 8);
    // An MDL mapping failure (a fault of this thread, where the dispatch routine runs): the
    // driver refuses instead of touching a null mapping.
    faults::fail_mdl_mapping(1);
    assert_eq!(
        handle.read(&mut tail, 0).status,
        NtStatus::INSUFFICIENT_RESOURCES
    );
    drop(handle);
    driver.unload().expect("nothing left behind");
}

#[test]
fn device_controls_of_every_transfer_type() {
    let Some(v1) = image("scratchpad_v1.sys") else {
        return;
    };
    let _serial = serial();
    let driver = TestDriver::load(&v1, SERVICE).unwrap();
    let handle = driver.open(WIN32_PATH).unwrap();
    // METHOD_IN_DIRECT: the "output" buffer is the data the driver reads.
    let mut data = *b"in-direct data";
    let load = handle.device_control(IOCTL_LOAD, &100u32.to_le_bytes(), &mut data);
    assert_eq!((load.status, load.information), (NtStatus::SUCCESS, 14));
    assert_eq!(&data, b"in-direct data", "read access: left as it was");
    // METHOD_OUT_DIRECT: the driver fills the buffer through its MDL.
    let mut dumped = [0u8; 20];
    let dump = handle.device_control(IOCTL_DUMP, &100u32.to_le_bytes(), &mut dumped);
    assert_eq!((dump.status, dump.information), (NtStatus::SUCCESS, 20));
    assert_eq!(&dumped[..14], b"in-direct data");
    assert_eq!(&dumped[14..], [0; 6]);
    // METHOD_NEITHER: the caller's own addresses, probed by the driver.
    let mut answer = [0u8; CHECKSUM_SIZE];
    let sum = handle.device_control(IOCTL_CHECKSUM, b"neither", &mut answer);
    assert_eq!(
        (sum.status, sum.information),
        (NtStatus::SUCCESS, CHECKSUM_SIZE)
    );
    assert_eq!(
        Checksum::from_bytes(&answer),
        Checksum {
            value: checksum(*b"neither"),
            version: 1,
            length: 7
        }
    );
    let mut store = vec![0u8; CAPACITY];
    assert_eq!(handle.read(&mut store, 0).information, CAPACITY);
    let sum = handle.device_control(IOCTL_CHECKSUM, &[], &mut answer);
    assert!(sum.is_success());
    assert_eq!(Checksum::from_bytes(&answer).value, checksum(store));
    assert_eq!(
        handle
            .device_control(IOCTL_CHECKSUM, &[], &mut [0; 8])
            .status,
        NtStatus::BUFFER_TOO_SMALL
    );
    // METHOD_BUFFERED: too small an output buffer.
    assert_eq!(
        handle.device_control(IOCTL_INFO, &[], &mut [0; 8]).status,
        NtStatus::BUFFER_TOO_SMALL
    );
    // Bad input; past the end.
    assert_eq!(
        handle.device_control(IOCTL_LOAD, &[1], &mut [0; 4]).status,
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        handle
            .device_control(
                IOCTL_LOAD,
                &(CAPACITY as u32 - 2).to_le_bytes(),
                &mut [0; 4]
            )
            .status,
        NtStatus(STATUS_DISK_FULL)
    );
    assert_eq!(
        handle
            .device_control(IOCTL_DUMP, &(CAPACITY as u32).to_le_bytes(), &mut [0; 4])
            .status,
        NtStatus(STATUS_END_OF_FILE)
    );
    // A code the driver does not know reaches it, whatever its transfer type, and it refuses.
    for method in [
        METHOD_BUFFERED,
        METHOD_IN_DIRECT,
        METHOD_OUT_DIRECT,
        METHOD_NEITHER,
    ] {
        let code = ctl_code(scratchpad::DEVICE_TYPE, 0x900, method, 0);
        assert_eq!(
            handle.device_control(code, &[1, 2], &mut [0; 4]).status,
            NtStatus::INVALID_DEVICE_REQUEST
        );
    }
    drop(handle);
    driver.unload().expect("nothing left behind");
}

#[test]
fn the_flush_work_item_runs_and_its_routine_is_swapped_with_the_driver() {
    let (Some(v1), Some(v2)) = (image("scratchpad_v1.sys"), image("scratchpad_v2.sys")) else {
        return;
    };
    let _serial = serial();
    let driver = TestDriver::load(&v1, SERVICE).unwrap();
    let handle = driver.open(WIN32_PATH).unwrap();
    assert!(handle.write(b"flush me", 0).is_success());
    let flushed = wait_for(&handle, "the first flush", |i| i.flushes >= 1);
    assert_eq!(flushed.last_flush_version, 1, "the routine of v1 ran");
    let swap = driver.swap_to(&v2).expect("v1 -> v2");
    assert_eq!(
        (swap.from.as_str(), swap.to.as_str()),
        ("scratchpad_v1.sys", "scratchpad_v2.sys")
    );
    let before = info(&handle).flushes;
    let queued = handle.device_control(IOCTL_FLUSH, &[], &mut []);
    assert!(queued.is_success());
    let after = wait_for(&handle, "a flush after the swap", |i| i.flushes > before);
    assert_eq!(
        after.last_flush_version, 2,
        "the work item's routine is a DriverProxy wrapper: after the swap it runs v2's code"
    );
    let mut store = vec![0u8; CAPACITY];
    assert_eq!(handle.read(&mut store, 0).information, CAPACITY);
    assert_eq!(after.flushed_checksum, checksum(store));
    assert_eq!((after.version, after.swaps), (2, 1));
    assert!(
        driver
            .dbg_print()
            .contains(&"Scratchpad v2: took over from v1 (swap 1)\n".to_owned()),
        "{:?}",
        driver.dbg_print()
    );
    drop(handle);
    driver
        .unload()
        .expect("v2's DriverUnload leaves nothing behind");
}

/// The pattern thread `thread` writes in request `index` (its own 256 bytes of the pad).
fn pattern(thread: usize, index: u64) -> [u8; 256] {
    let mut bytes = [0u8; 256];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (thread as u64 * 31 + index * 7 + i as u64) as u8;
    }
    bytes
}

#[test]
fn a_hot_swap_under_load_loses_no_request() {
    const THREADS: usize = 2;
    const PER_THREAD: u64 = 4_000;
    let (Some(v1), Some(v2)) = (image("scratchpad_v1.sys"), image("scratchpad_v2.sys")) else {
        return;
    };
    let _serial = serial();
    let driver = TestDriver::load(&v1, SERVICE).unwrap();
    // Each thread writes its own region, reads it back (direct I/O both ways) and checks a
    // checksum over METHOD_NEITHER, in turn, while v1 is swapped for v2 halfway.
    let stress =
        Stress::new(WIN32_PATH, THREADS, PER_THREAD).swap_to(&v2, THREADS as u64 * PER_THREAD / 2);
    let report = driver.stress(&stress, |handle, thread, index| {
        let offset = thread as u64 * 256;
        match index % 3 {
            0 => {
                let answer = handle.write(&pattern(thread, index), offset);
                (answer.status == NtStatus::SUCCESS && answer.information == 256)
                    .then_some(())
                    .ok_or_else(|| format!("write: {answer}"))
            }
            1 => {
                let mut back = [0u8; 256];
                let answer = handle.read(&mut back, offset);
                if answer.information != 256 || back != pattern(thread, index - 1) {
                    return Err(format!("read back: {answer}"));
                }
                Ok(())
            }
            _ => {
                let mut answer = [0u8; CHECKSUM_SIZE];
                let sent = pattern(thread, index);
                let completion = handle.device_control(IOCTL_CHECKSUM, &sent, &mut answer);
                let answer = Checksum::from_bytes(&answer);
                if !completion.is_success() || answer.value != checksum(sent) {
                    return Err(format!("checksum: {completion}, {answer:?}"));
                }
                Ok(())
            }
        }
    });
    assert!(report.passed(), "{report}");
    assert_eq!(report.sent, THREADS as u64 * PER_THREAD);
    let swap = report.swap.as_ref().unwrap().as_ref().unwrap();
    assert!(swap.stall >= swap.drain, "{report}");
    let handle = driver.open(WIN32_PATH).unwrap();
    let now = info(&handle);
    assert_eq!((now.version, now.swaps), (2, 1), "{now:?}");
    assert_eq!(
        now.requests,
        report.sent + 1,
        "the driver counted every request the harness sent (and this INFO): none lost, none twice"
    );
    let transfers = (0..PER_THREAD).filter(|i| i % 3 != 2).count() as u64 * THREADS as u64;
    assert_eq!(now.writes + now.reads, transfers, "{now:?}");
    assert_eq!(driver.retired_images(), ["scratchpad_v1.sys"]);
    drop(handle);
    driver.unload().expect("nothing left behind");
}

#[test]
fn a_request_in_flight_in_v1_holds_the_swap_until_it_returns() {
    let (Some(v1), Some(v2)) = (image("scratchpad_v1.sys"), image("scratchpad_v2.sys")) else {
        return;
    };
    let _serial = serial();
    let driver = TestDriver::load(&v1, SERVICE).unwrap();
    let handle = driver.open(WIN32_PATH).unwrap();
    // The next completion (of any request in the process: the tests of this file run one at
    // a time) waits at a gate: its dispatch routine, in v1, stays in flight.
    let held = faults::hold_next_completion();
    thread::scope(|scope| {
        let request = scope.spawn(|| info(&handle));
        assert!(
            held.wait_until_held(Duration::from_secs(5)),
            "the INFO reached the gate"
        );
        let swap = scope.spawn(|| driver.swap_to(&v2));
        thread::sleep(Duration::from_millis(200));
        assert!(!swap.is_finished(), "the swap waits for the call in v1");
        held.release();
        assert_eq!(
            request.join().unwrap().version,
            1,
            "the held call ran in v1"
        );
        let swap = swap.join().unwrap().expect("then the swap completes");
        assert!(swap.drain >= Duration::from_millis(150), "{swap:?}");
    });
    assert_eq!(info(&handle).version, 2);
    drop(handle);
    driver.unload().expect("nothing left behind");
}

#[test]
fn without_hot_swap_the_driver_serves_and_refuses_a_swap() {
    let (Some(v1), Some(v2)) = (image("scratchpad_v1.sys"), image("scratchpad_v2.sys")) else {
        return;
    };
    let _serial = serial();
    let options = LoadOptions::new(SERVICE).features(DriverFeatures::Disabled);
    let driver = TestDriver::load_with(&v1, &options).unwrap();
    assert_eq!(
        driver.dbg_print(),
        ["Scratchpad v1: loaded, hot swap unavailable: running without it\n"]
    );
    assert!(driver.hot_swap().is_none());
    let handle = driver.open(WIN32_PATH).unwrap();
    assert!(handle.write(b"still", 0).is_success());
    let refused = driver.swap_to(&v2).unwrap_err();
    assert_eq!(
        refused.entry_status(),
        Some(NtStatus::NOT_SUPPORTED),
        "{refused}"
    );
    assert_eq!(info(&handle).version, 1, "v1 keeps serving");
    drop(handle);
    driver.unload().expect("nothing left behind");
}

#[test]
fn the_leak_report_catches_the_test_images_leaked_allocation() {
    let Some(leaky) = image("scratchpad_leak.sys") else {
        return;
    };
    let _serial = serial();
    let driver = TestDriver::load(&leaky, SERVICE).unwrap();
    let handle = driver.open(WIN32_PATH).unwrap();
    assert!(handle.write(b"x", 0).is_success());
    drop(handle);
    let error = driver.unload().unwrap_err();
    let report = error
        .leaks()
        .unwrap_or_else(|| panic!("a leak report, not {error}"));
    assert_eq!(
        report.pool,
        [PoolLeak {
            tag: LEAK_TAG,
            blocks: 1,
            bytes: LEAK_SIZE
        }],
        "{error}"
    );
    assert!(
        report.devices.is_empty()
            && report.links.is_empty()
            && report.threads == 0
            && report.handles == 0
            && report.mdls == 0
            && report.work_items == 0,
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("pool tag 'Leak': 1 block(s), 32 byte(s)"),
        "{error}"
    );
    assert!(matches!(error, ImageDriverError::Unload { .. }));
}

#[test]
fn a_kernel_without_a_routine_it_imports_refuses_the_image() {
    let Some(v1) = image("scratchpad_v1.sys") else {
        return;
    };
    // Hiding an export is process-wide: in a child process of its own.
    let outcome = isolated(|| {
        faults::hide_export("IoAllocateWorkItem");
        let error = TestDriver::load(&v1, SERVICE).unwrap_err();
        assert!(
            error.to_string().contains("IoAllocateWorkItem"),
            "the loader names the import: {error}"
        );
    });
    assert!(outcome.completed(), "{}", outcome.stderr);
    assert!(outcome.bugcheck().is_none());
}
