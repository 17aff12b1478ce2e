//! The real sample images (`cargo xtask build-driver`) through the test harness, as any
//! driver author's images are tested: `DriverEntry`, a request, a control code of another
//! transfer type (it reaches the driver, which refuses it by its protocol), the swap-mode
//! entry of v2 on the same driver object, a request again, unload. Skipped (passes with a
//! note) when the images are not built, unless `DRIVER_PROXY_REQUIRE_IMAGES` is set.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use driver_proxy::NtStatus;
use driver_proxy_host::harness::{Images, METHOD_NEITHER, TestDriver};

/// The protocol's `VERSION` control code (`METHOD_BUFFERED`).
const VERSION: u32 = 0x8D57_2400;

#[test]
fn the_sample_image_loads_serves_swaps_and_unloads() {
    let images = Images::find(env!("CARGO_MANIFEST_DIR"));
    let (Some(v1), Some(v2)) = (
        images.require("hotswap_sample_v1.sys"),
        images.require("hotswap_sample_v2.sys"),
    ) else {
        return;
    };
    let driver = TestDriver::load(&v1, "HotSwapSampleHarness").expect("DriverEntry of v1");
    assert_eq!(driver.entry_status(), NtStatus::SUCCESS);
    assert!(
        driver
            .dbg_print()
            .iter()
            .any(|m| m.starts_with("HotSwapSample v1")),
        "{:?}",
        driver.dbg_print()
    );
    let handle = driver.open("\\\\.\\HotSwapSample").expect("open");
    // VERSION without its request header: the image's dispatch routine (not the I/O
    // manager's default, STATUS_INVALID_DEVICE_REQUEST) rejects it by the protocol.
    let version = || handle.device_control(VERSION, &[], &mut [0u8; 256]);
    assert_eq!(
        (version().status, version().information),
        (NtStatus::BUFFER_TOO_SMALL, 0),
        "v1 serves"
    );
    // The same code as METHOD_NEITHER reaches the driver too, which refuses it as its
    // protocol table says (row 1).
    let neither = handle.device_control(VERSION | METHOD_NEITHER, &[], &mut [0u8; 16]);
    assert_eq!(neither.status, NtStatus::INVALID_DEVICE_REQUEST);
    let swap = driver.swap_to(&v2).expect("swap to v2");
    assert_eq!(
        (swap.from.as_str(), swap.to.as_str()),
        ("hotswap_sample_v1.sys", "hotswap_sample_v2.sys")
    );
    assert!(
        driver
            .dbg_print()
            .iter()
            .any(|m| m.contains("took over from v1")),
        "{:?}",
        driver.dbg_print()
    );
    assert_eq!(version().status, NtStatus::BUFFER_TOO_SMALL, "v2 serves");
    assert_eq!(driver.retired_images(), ["hotswap_sample_v1.sys"]);
    let closed = handle.close();
    assert_eq!(
        (closed.cleanup, closed.close),
        (NtStatus::INVALID_DEVICE_REQUEST, NtStatus::SUCCESS),
        "the sample sets no IRP_MJ_CLEANUP routine: the I/O manager's default answers it"
    );
    driver.unload().expect("a clean unload");
}
