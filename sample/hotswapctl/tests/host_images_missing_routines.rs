//! The x64 image of v1 on kernels that lack one routine the library resolves at run time:
//! for each such routine (every kernel routine `driver-proxy` resolves besides the seven of
//! DriverProxy), and for both pool allocators at once, hidden on the host kernel, the image
//! loads, serves `VERSION`, `TRANSFORM` and `STATS`, and unloads with nothing left behind
//! (no device, link, pool or thread), and its `DbgPrint` log names what is unavailable.
//!
//! What a missing routine costs is the documented behaviour of the library and the sample
//! (`sample/wdm/src/main.rs`, *What `DriverEntry` does* and *Imports*):
//!
//! | hidden | hot swap | worker thread |
//! |---|---|---|
//! | an event routine, `ZwClose`, `ZwWaitForSingleObject`, `ExFreePoolWithTag` | available | none: the driver loads without it, naming the routine |
//! | `KeWaitForMultipleObjects`, `PsCreateSystemThread` (only the fallback thread needs them) | available | runs (hot-swappable) |
//! | `IoAllocateDriverObjectExtension`, `IoGetDriverObjectExtension` (the endpoint record's storage) | unavailable, named (fallback) | runs (the library's fallback thread) |
//! | `ExAllocatePool2` | available | runs, its storage from `ExAllocatePoolWithTag` |
//! | `ExAllocatePoolWithTag` | available | runs |
//! | `ExAllocatePool2` and `ExAllocatePoolWithTag` | available | none, naming `ExAllocatePoolWithTag` |
//!
//! A running worker's storage is the library's pool (tag `DPwk`): one block for a
//! hot-swappable thread, two for the fallback thread (its loop's state), all freed by the
//! unload (which stops and joins the thread).
//!
//! That the image loads at all is the point of resolving those routines at run time: one
//! the image imported statically would make the loader refuse it
//! (`STATUS_DRIVER_ENTRYPOINT_NOT_FOUND` on Windows; the host loader's "unknown import"),
//! which is why the sample imports none of them. The contrast is a configuration of its
//! own: `IoCreateDevice`, a static import, hidden, and the image is refused.
//!
//! Hiding an export is process-wide and must come before the library's first resolution,
//! so each configuration runs in a child process of its own (the test harness's
//! `isolated_each`, all at once). The host kernel is reached only through its public test
//! harness (`driver_proxy_host::harness`).

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy_host::harness::faults::hide_export;
use driver_proxy_host::harness::{
    ImageDriverError, Images, LoadError, TestDriver, dbg_print_log, isolated_each, pool_usage,
};
use hotswap_sample_core::DriverVersion;
use hotswapctl::client::Client;
use hotswapctl::host::{HostBackend, HostLab};
use hotswapctl::lab::Lab;

/// One configuration: the routines hidden (none: the control), the one the log names, and
/// what the driver must then have.
struct Case {
    hidden: &'static [&'static str],
    /// The routine the driver's log names as missing, where something is unavailable.
    named: &'static str,
    /// The loader binds the image (false: the routine is a static import of it).
    loads: bool,
    hot_swap: bool,
    worker: bool,
}

impl Case {
    /// The child's scenario name: the hidden routines, joined by `+` (`none`).
    fn scenario(&self) -> String {
        if self.hidden.is_empty() {
            "none".to_owned()
        } else {
            self.hidden.join("+")
        }
    }
}

const fn case(hidden: &'static [&'static str], hot_swap: bool, worker: bool) -> Case {
    Case {
        hidden,
        named: hidden[0],
        loads: true,
        hot_swap,
        worker,
    }
}

/// The module table, one row per routine; the control; the contrast.
const CASES: [Case; 17] = [
    Case {
        hidden: &[],
        named: "",
        loads: true,
        hot_swap: true,
        worker: true,
    },
    case(&["KeInitializeEvent"], true, false),
    case(&["KeSetEvent"], true, false),
    case(&["KeClearEvent"], true, false),
    case(&["KeResetEvent"], true, false),
    case(&["KeReadStateEvent"], true, false),
    case(&["KeWaitForMultipleObjects"], true, true),
    case(&["PsCreateSystemThread"], true, true),
    case(&["ZwClose"], true, false),
    case(&["ZwWaitForSingleObject"], true, false),
    case(&["IoAllocateDriverObjectExtension"], false, true),
    case(&["IoGetDriverObjectExtension"], false, true),
    case(&["ExAllocatePool2"], true, true),
    case(&["ExAllocatePoolWithTag"], true, true),
    case(&["ExFreePoolWithTag"], true, false),
    Case {
        named: "ExAllocatePoolWithTag",
        ..case(&["ExAllocatePool2", "ExAllocatePoolWithTag"], true, false)
    },
    Case {
        hidden: &["IoCreateDevice"],
        named: "IoCreateDevice",
        loads: false,
        hot_swap: false,
        worker: false,
    },
];

/// The pool tag of the library's worker storage.
const DPWK: u32 = u32::from_le_bytes(*b"DPwk");

/// The directory of the x64 images, or `None` (with the reason printed) when they are not
/// built and not required.
fn images() -> Option<PathBuf> {
    let images = Images::find(env!("CARGO_MANIFEST_DIR"));
    images.require("hotswap_sample_v1.sys")?;
    Some(images.dir().to_path_buf())
}

#[test]
fn v1_loads_serves_and_unloads_with_each_resolved_routine_missing() {
    let Some(images) = images() else { return };
    // One child per configuration, all at once (they mostly wait for the worker's period).
    let outcomes = isolated_each(&CASES, Case::scenario, |case| run(case, &images));
    for (case, outcome) in CASES.iter().zip(outcomes) {
        assert!(
            outcome.completed(),
            "{} hidden: {}\nstdout:\n{}\nstderr:\n{}",
            case.scenario(),
            outcome.status,
            outcome.stdout,
            outcome.stderr
        );
    }
}

/// The child: hides the routine before anything resolves, then loads, serves, checks the
/// log and the worker, and unloads.
fn run(case: &Case, images: &Path) {
    let hidden = if case.hidden.is_empty() {
        "nothing".to_owned()
    } else {
        case.hidden.join(" and ")
    };
    for name in case.hidden {
        hide_export(name);
    }
    if !case.loads {
        match HostLab::new(images, DriverVersion::V1) {
            Err(ImageDriverError::Load {
                source: LoadError::UnknownImport { name, .. },
                ..
            }) if name == case.named => {}
            Err(error) => panic!("expected the loader to refuse the import {hidden}: {error}"),
            Ok(_) => panic!("the image loaded without its static import {hidden}"),
        }
        assert!(dbg_print_log().is_empty(), "no DriverEntry ran");
        return;
    }
    let lab = HostLab::new(images, DriverVersion::V1)
        .unwrap_or_else(|error| panic!("v1 loads with {hidden} missing: {error}"));
    let mut client: Client<HostBackend> = Client::new(lab.open().expect("the device opens"));
    let version = client.version().expect("VERSION");
    assert_eq!(version.driver_version, DriverVersion::V1);
    let transform = client.transform(b"hot swap").expect("TRANSFORM");
    assert_eq!(transform.value, b"HOT SWAP", "v1's transform");
    let stats = client.stats().expect("STATS").value;
    assert_eq!(
        stats.served, 3,
        "VERSION, TRANSFORM and this STATS: {stats:?}"
    );

    let driver = TestDriver::attach(lab.driver().expect("loaded"));
    let extension = driver.hot_swap();
    assert_eq!(
        extension.is_some(),
        case.hot_swap,
        "hot swap with {hidden} missing"
    );
    if let Some(extension) = &extension {
        assert_eq!(
            extension.worker_threads(),
            usize::from(case.worker),
            "hot-swappable worker threads with {hidden} missing"
        );
    }
    // The worker's storage: the library's pool blocks (this child process runs nothing else).
    let blocks = match (case.worker, extension.is_some()) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => 2,
    };
    assert_eq!(
        pool_usage(DPWK).outstanding,
        blocks,
        "DPwk blocks with {hidden} missing"
    );
    // A running worker ticks once per period (500 ms); a driver without one never ticks.
    let period = Duration::from_millis(500);
    if case.worker {
        let deadline = Instant::now() + 10 * period;
        while client.stats().expect("STATS").value.worker_ticks == 0 {
            assert!(Instant::now() < deadline, "the worker never ticked");
            thread::sleep(Duration::from_millis(20));
        }
    } else {
        thread::sleep(period + period / 2);
        assert_eq!(
            client.stats().expect("STATS").value.worker_ticks,
            0,
            "no worker, no tick"
        );
    }

    let log: Vec<String> = driver
        .dbg_print()
        .iter()
        .map(|line| line.trim_end().to_owned())
        .collect();
    let missing = format!("the kernel does not export {}", case.named);
    let expected_hot_swap = if case.hot_swap {
        "HotSwapSample v1: DriverEntry: hot swap available".to_owned()
    } else {
        format!(
            "HotSwapSample v1: DriverEntry: hot swap unavailable, running without it: {missing}"
        )
    };
    assert!(log.contains(&expected_hot_swap), "{log:#?}");
    let no_worker =
        format!("HotSwapSample v1: DriverEntry: no worker thread, running without it: {missing}");
    assert_eq!(log.contains(&no_worker), !case.worker, "{log:#?}");
    assert!(log.iter().all(|line| !line.contains("failed")), "{log:#?}");

    drop((client, extension, driver));
    lab.unload().unwrap_or_else(|error| {
        panic!(
            "a clean unload (no device, link, pool or thread left) with {hidden} missing: {error}"
        )
    });
    assert_eq!(
        pool_usage(DPWK).outstanding,
        0,
        "the worker's storage freed with {hidden} missing"
    );
}
