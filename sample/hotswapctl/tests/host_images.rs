//! End to end on the real thing: the WDM sample's x64 `.sys` images (built by
//! `cargo xtask build-driver`) mapped into the in-process host kernel, requests sent as IRPs
//! to the dispatch routine the image registered (a DriverProxy wrapper), and hot swaps of
//! v1.sys → v2.sys and back under load, with faults injected.
//!
//! The host kernel is reached only through its public test harness
//! (`driver_proxy_host::harness`), as any driver author's tests reach it: the lab of the
//! client (`hotswapctl::host::HostLab`) loads the images, and the tests look at the driver,
//! swap it and inject faults with the harness.
//!
//! The images must exist: `cargo xtask test` builds them first and sets
//! `DRIVER_PROXY_REQUIRE_IMAGES=1`, which turns a missing image into a failure. A plain
//! `cargo test` without them prints why each test is skipped. Elsewhere than x86-64 Linux
//! the host kernel cannot run x64 images, and the tests say so and pass.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy::{NtStatus, sys};
use driver_proxy_host::harness::faults::hold_next_completion;
use driver_proxy_host::harness::{
    EndpointKey, ExtensionControl, ImageDriverError, Images, Phase, TestDriver, isolated,
};
use hotswap_sample_core::DriverVersion;
use hotswapctl::client::Client;
use hotswapctl::host::{HostBackend, HostLab};
use hotswapctl::lab::Lab;
use hotswapctl::scenarios::{self, Scenario, ScenarioConfig};

/// The host kernel's driver and device names are process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The directory of the x64 images, or `None` (with the reason printed) when they cannot run.
fn images() -> Option<PathBuf> {
    let images = Images::find(env!("CARGO_MANIFEST_DIR"));
    images.require("hotswap_sample_v1.sys")?;
    images.require("hotswap_sample_v2.sys")?;
    Some(images.dir().to_path_buf())
}

/// The lab's driver, through the harness.
fn driver(lab: &HostLab) -> TestDriver {
    TestDriver::attach(lab.driver().expect("a driver is loaded"))
}

/// The lab's driver's DriverProxy extension (hot swap is available on the host kernel).
fn hot_swap(lab: &HostLab) -> ExtensionControl {
    driver(lab).hot_swap().expect("hot swap is available")
}

fn lab(images: &Path) -> HostLab {
    HostLab::new(images, DriverVersion::V1).expect("v1 loads and its DriverEntry succeeds")
}

fn client(lab: &HostLab) -> Client<HostBackend> {
    Client::new(lab.open().expect("the device opens"))
}

fn version(lab: &HostLab) -> DriverVersion {
    client(lab).version().expect("VERSION").driver_version
}

fn served(lab: &HostLab) -> u64 {
    client(lab).stats().expect("STATS").value.served
}

/// The answering builds of a thread, with repeats collapsed: `[V1, V2]` is one switch.
fn runs(answers: &[DriverVersion]) -> Vec<DriverVersion> {
    let mut runs: Vec<DriverVersion> = Vec::new();
    for &answer in answers {
        if runs.last() != Some(&answer) {
            runs.push(answer);
        }
    }
    runs
}

#[test]
fn under_two_threads_v1_hot_swaps_to_v2_each_thread_switches_once_and_no_count_is_lost() {
    const PER_THREAD: u64 = 20_000;
    const SWAP_AFTER: u64 = 5_000;
    let Some(images) = images() else { return };
    let _serial = serial();
    let lab = lab(&images);
    let progress = [AtomicU64::new(0), AtomicU64::new(0)];
    let served_before = served(&lab);
    let (answers, swap) = thread::scope(|scope| {
        let threads: Vec<_> = progress
            .iter()
            .enumerate()
            .map(|(thread, progress)| {
                let mut client = client(&lab);
                scope.spawn(move || {
                    let mut answers = Vec::new();
                    for i in 0..PER_THREAD {
                        let payload = format!("t{thread} r{i}");
                        let reply = client.transform(payload.as_bytes()).expect("no error");
                        let expected: Vec<u8> = payload
                            .bytes()
                            .map(|b| reply.driver_version.transform_byte(b))
                            .collect();
                        assert_eq!(reply.value, expected, "the answering build's transform");
                        answers.push(reply.driver_version);
                        progress.store(i + 1, Ordering::Relaxed);
                    }
                    answers
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress
            .iter()
            .any(|p| p.load(Ordering::Relaxed) < SWAP_AFTER)
        {
            assert!(Instant::now() < deadline, "the threads made no progress");
            thread::yield_now();
        }
        let swap = lab
            .swap_image(DriverVersion::V2)
            .expect("v1 -> v2")
            .expect("a swap");
        let answers: Vec<Vec<DriverVersion>> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        (answers, swap)
    });
    for answers in &answers {
        assert_eq!(
            runs(answers),
            [DriverVersion::V1, DriverVersion::V2],
            "each thread: v1, then v2, exactly one switch"
        );
    }
    assert_eq!(swap.from, "hotswap_sample_v1.sys");
    assert_eq!(swap.to, "hotswap_sample_v2.sys");
    assert!(
        swap.stall >= swap.drain && swap.stall > Duration::ZERO,
        "{swap:?}"
    );
    assert_eq!(
        served(&lab),
        served_before + 2 * PER_THREAD + 1,
        "v2 carried v1's count over: every request counted once (+ this STATS, which counts itself)"
    );

    // And back: v2 -> v1, counters carried again.
    let before = served(&lab);
    lab.swap_to(DriverVersion::V1).expect("v2 -> v1");
    assert_eq!(version(&lab), DriverVersion::V1);
    assert_eq!(served(&lab), before + 2);
    assert_eq!(
        driver(&lab).retired_images(),
        ["hotswap_sample_v1.sys", "hotswap_sample_v2.sys"]
    );
    lab.unload()
        .expect("DriverUnload ran through its wrapper and left nothing behind (devices, links, pool, threads)");
}

#[test]
fn a_request_held_inside_v1_keeps_the_image_swap_waiting_until_it_returns() {
    let Some(images) = images() else { return };
    let _serial = serial();
    let lab = lab(&images);
    let mut held_client = client(&lab);
    let held = hold_next_completion();
    thread::scope(|scope| {
        let request = scope.spawn(move || held_client.version().expect("answered").driver_version);
        assert!(
            held.wait_until_held(Duration::from_secs(5)),
            "the request reached the gate"
        );
        let swap = scope.spawn(|| lab.swap_image(DriverVersion::V2));
        thread::sleep(Duration::from_millis(200));
        assert!(!swap.is_finished(), "the swap waits for the call in v1");
        held.release();
        assert_eq!(
            request.join().unwrap(),
            DriverVersion::V1,
            "the held call ran in v1"
        );
        let swap = swap
            .join()
            .unwrap()
            .expect("then the swap completes")
            .expect("a swap");
        assert!(swap.drain >= Duration::from_millis(150), "{swap:?}");
    });
    assert_eq!(version(&lab), DriverVersion::V2);
    lab.unload().expect("clean unload");
}

#[test]
fn a_drain_timeout_refuses_the_image_swap_and_v1_keeps_serving_with_its_counts() {
    let Some(images) = images() else { return };
    let _serial = serial();
    let lab = lab(&images);
    let extension = hot_swap(&lab);
    extension.set_drain_timeout(Duration::from_millis(100));
    let mut held_client = client(&lab);
    let held = hold_next_completion();
    thread::scope(|scope| {
        let request = scope.spawn(move || held_client.version().expect("answered").driver_version);
        assert!(held.wait_until_held(Duration::from_secs(5)));
        let error = lab.swap_image(DriverVersion::V2).unwrap_err().unwrap();
        match error {
            ImageDriverError::SwapRefused { status, .. } => {
                assert_eq!(status, NtStatus(sys::STATUS_UNSUCCESSFUL));
            }
            other => panic!("expected a refused swap, got {other}"),
        }
        held.release();
        assert_eq!(request.join().unwrap(), DriverVersion::V1);
    });
    let served_after_refusal = served(&lab);
    assert_eq!(version(&lab), DriverVersion::V1, "v1 keeps serving");
    assert_eq!(served(&lab), served_after_refusal + 2, "and counting");
    assert!(driver(&lab).retired_images().is_empty());
    extension.set_drain_timeout(Duration::from_secs(5));
    lab.swap_to(DriverVersion::V2)
        .expect("a later swap succeeds");
    assert_eq!(version(&lab), DriverVersion::V2);
    lab.unload().expect("clean unload");
}

#[test]
fn a_post_process_failure_rolls_the_image_swap_back_and_v1_keeps_serving() {
    let Some(images) = images() else { return };
    let _serial = serial();
    let lab = lab(&images);
    let before = served(&lab);
    let extension = hot_swap(&lab);
    let failure = NtStatus::INSUFFICIENT_RESOURCES.0;
    extension.fail_next_swap_in(Phase::PostProcess, failure);
    let error = lab.swap_image(DriverVersion::V2).unwrap_err().unwrap();
    assert!(
        matches!(error, ImageDriverError::SwapRefused { status, .. } if status.0 == failure),
        "{error}"
    );
    assert_eq!(extension.swaps_failed(), 1);
    assert_eq!(version(&lab), DriverVersion::V1, "rolled back to v1");
    assert_eq!(served(&lab), before + 2, "v1's counts are intact");
    lab.swap_to(DriverVersion::V2)
        .expect("a later swap succeeds");
    assert_eq!(version(&lab), DriverVersion::V2);
    lab.unload().expect("clean unload");
}

#[test]
fn a_v2_that_does_not_re_register_every_endpoint_is_an_incomplete_swap_and_keeps_both_images() {
    let Some(images) = images() else { return };
    let Some(partial) = Images::at(&images).require("hotswap_sample_v2_missing_unload.sys") else {
        return;
    };
    let _serial = serial();
    let lab = lab(&images);
    let driver = driver(&lab);
    let error = driver.swap_to(&partial).unwrap_err();
    let ImageDriverError::IncompleteSwap { endpoints, .. } = &error else {
        panic!("expected an incomplete swap, got {error}");
    };
    assert_eq!(endpoints.len(), 1, "{error}");
    assert!(matches!(endpoints[0], EndpointKey::Id(_)), "{error}");
    assert_eq!(
        driver.serving_image(),
        "hotswap_sample_v1.sys",
        "v1 stays mapped"
    );
    assert!(driver.retired_images().is_empty(), "nothing was unmapped");
    assert_eq!(
        version(&lab),
        DriverVersion::V2,
        "the endpoints it did re-register moved"
    );
    // Its DriverEntry committed the swap, then could not look up DriverUnload's wrapper: the
    // library's endpoint record still gives id 4 to v1 (RegisteredByAnotherImage), not
    // "not found".
    let log = driver.dbg_print();
    let refused = format!(
        "HotSwapSample v2: wrapper lookup after the swap: 0x{:08X}",
        NtStatus::OBJECT_TYPE_MISMATCH.raw().cast_unsigned()
    );
    assert!(log.iter().any(|line| line.trim_end() == refused), "{log:?}");
    assert!(
        log.iter()
            .any(|line| line.trim_end() == "HotSwapSample v2: took over from v1 (swap 1)"),
        "{log:?}"
    );
    drop(driver);
    lab.unload()
        .expect("v1's DriverUnload, still serving that endpoint, unloads the mixed driver cleanly");
}

#[test]
fn a_call_into_the_retired_v1_image_aborts_the_process_naming_it() {
    let Some(images) = images() else { return };
    let _serial = serial();
    let outcome = isolated(|| {
        let lab = lab(&images);
        let driver = driver(&lab);
        let v1_entry = driver.image_driver().serving_entry_point();
        lab.swap_to(DriverVersion::V2).unwrap();
        assert!(
            driver
                .retired_images()
                .contains(&"hotswap_sample_v1.sys".to_owned())
        );
        // SAFETY: deliberately wrong: v1's DriverEntry after v1 was retired. The host kernel
        // must stop the process here.
        let entry = unsafe {
            std::mem::transmute::<usize, unsafe extern "win64" fn(usize, usize) -> i32>(v1_entry)
        };
        // SAFETY: as above.
        let _ = unsafe { entry(0, 0) };
        unreachable!("the call into the retired image returned");
    });
    assert!(
        !outcome.completed(),
        "the child survived:\n{}",
        outcome.stderr
    );
    assert!(
        outcome
            .stderr
            .contains("host kernel: call into unmapped image hotswap_sample_v1.sys at RVA"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn every_scenario_passes_against_the_real_images() {
    let Some(images) = images() else { return };
    let _serial = serial();
    let lab: Arc<dyn Lab> = Arc::new(lab(&images));
    let reports = scenarios::run(&lab, &Scenario::ALL, &ScenarioConfig::quick(), &mut |_| {});
    for report in &reports {
        assert!(report.skipped.is_none(), "{report:?}");
        assert!(!report.failed(), "{report:?}");
    }
    assert_eq!(reports.len(), Scenario::ALL.len());
    lab.unload().expect("clean unload after every scenario");
}
