//! The real sample images (`cargo xtask build-driver`), loaded with the PE loader and bound to
//! the Microsoft x64 export table: `DriverEntry`, a request, the swap-mode entry of v2 on the
//! same driver object, a request again, unload. Skipped (passes with a note) when the images are not built.

use std::path::PathBuf;

use driver_proxy::NtStatus;
use driver_proxy_host::image::LoadedImage;
use driver_proxy_host::wdm::{Driver, dbg_print_log, win64_routine};

fn image(name: &str) -> Option<LoadedImage> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/drivers/amd64")
        .join(name);
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "skipped: {} not built (cargo xtask build-driver)",
            path.display()
        );
        return None;
    };
    Some(
        LoadedImage::load(&bytes, name, |import| {
            win64_routine(import.dll, import.name)
        })
        .unwrap_or_else(|error| panic!("{name}: {error}")),
    )
}

#[test]
fn the_sample_image_loads_serves_swaps_and_unloads() {
    let (Some(v1), Some(v2)) = (
        image("hotswap_sample_v1.sys"),
        image("hotswap_sample_v2.sys"),
    ) else {
        return;
    };
    // SAFETY: the image's entry point is its DriverEntry (Microsoft x64).
    let driver = unsafe {
        Driver::start_image(
            "HotSwapSample",
            "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\HotSwapSample",
            v1.entry_point(),
            v1.base(),
            u32::try_from(v1.size()).unwrap(),
        )
    }
    .expect("DriverEntry of v1");
    assert!(
        dbg_print_log()
            .iter()
            .any(|m| m.starts_with("HotSwapSample v1"))
    );
    let handle = driver.open("\\\\.\\HotSwapSample").expect("open");
    // VERSION without its request header: the image's dispatch routine (not the I/O
    // manager's default, STATUS_INVALID_DEVICE_REQUEST) rejects it by the protocol.
    let version = |driver: &Driver| {
        let mut output = [0u8; 256];
        driver.device_control(&handle, 0x8D57_2400, &[], &mut output)
    };
    assert_eq!(
        version(&driver),
        (NtStatus::BUFFER_TOO_SMALL, 0),
        "v1 serves"
    );
    // SAFETY: v2's entry point, its DriverEntry in swap mode on the same driver object.
    let status = unsafe { driver.call_entry_again(v2.entry_point()) };
    assert_eq!(status, NtStatus::SUCCESS, "swap to v2");
    assert!(
        dbg_print_log()
            .iter()
            .any(|m| m.contains("took over from v1")),
        "{:?}",
        dbg_print_log()
    );
    assert_eq!(
        version(&driver),
        (NtStatus::BUFFER_TOO_SMALL, 0),
        "v2 serves"
    );
    drop(handle);
    driver.unload().expect("a clean unload");
    drop((v1, v2));
}
