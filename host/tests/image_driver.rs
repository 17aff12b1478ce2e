//! `ImageDriver` on synthetic images (hand-assembled `DriverEntry` and `DriverUnload`): the
//! error of each documented path (unreadable file, refused image, failing entry, no unload
//! routine, refused swap, unload with leaks), which image stays mapped after each, and an
//! image swap of a driver without DriverProxy. The real sample images, with DriverProxy swaps
//! under load, are `sample/hotswapctl/tests/host_images.rs`.
//!
//! Each test driver's `DriverEntry` stores its own address in a static of the test, so the
//! test can look its image up in `/proc/self/maps` (`r-x` while mapped, `---p` once retired).

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod image_common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use driver_proxy::NtStatus;
use driver_proxy_host::ddi;
use driver_proxy_host::image::LoadError;
use driver_proxy_host::image_driver::{ImageDriver, ImageDriverError};
use image_common::{permissions_at, sample, sample_image, sample_writer};

/// The tag of the pool block a leaking test driver never frees.
const LEAK_TAG: u32 = u32::from_le_bytes(*b"ImDL");
/// Offset in `.text` of the `DriverUnload` routine (`ret`).
const UNLOAD: usize = 0x80;

/// What a test driver does.
struct Behaviour {
    /// Its `DriverEntry` returns this.
    status: ddi::NTSTATUS,
    /// Its `DriverEntry` sets `DriverUnload` (a `ret` in the same image).
    unload: bool,
    /// Its `DriverEntry` allocates a pool block tagged [`LEAK_TAG`] it never frees.
    leak_pool: bool,
}

/// Appends `opcode disp32` reaching `.text` offset `target` (the displacement ends the
/// instruction).
fn rip_relative(code: &mut Vec<u8>, opcode: &[u8], target: usize) {
    code.extend_from_slice(opcode);
    let next = code.len() + 4;
    let displacement =
        i32::try_from(i64::try_from(target).unwrap() - i64::try_from(next).unwrap()).unwrap();
    code.extend_from_slice(&displacement.to_le_bytes());
}

/// `.text`: `DriverEntry` at offset 0 (stores its address in `seen`, then as `behaviour`
/// says), `DriverUnload` at [`UNLOAD`].
fn text(seen: &AtomicUsize, behaviour: &Behaviour) -> Vec<u8> {
    let mut code = Vec::new();
    rip_relative(&mut code, &[0x48, 0x8D, 0x05], 0); // lea rax, [DriverEntry]
    code.extend_from_slice(&[0x48, 0xA3]); // mov [seen], rax
    code.extend_from_slice(&(seen.as_ptr() as u64).to_le_bytes());
    if behaviour.unload {
        rip_relative(&mut code, &[0x48, 0x8D, 0x05], UNLOAD); // lea rax, [DriverUnload]
        code.extend_from_slice(&[0x48, 0x89, 0x41, 0x68]); // mov [rcx+0x68], rax
    }
    if behaviour.leak_pool {
        code.extend_from_slice(&[0x48, 0x83, 0xEC, 0x28]); // sub rsp, 40
        code.push(0xB9); // mov ecx, POOL_FLAG_NON_PAGED
        code.extend_from_slice(
            &u32::try_from(ddi::POOL_FLAG_NON_PAGED)
                .unwrap()
                .to_le_bytes(),
        );
        code.extend_from_slice(&[0xBA, 24, 0, 0, 0]); // mov edx, 24
        code.extend_from_slice(&[0x41, 0xB8]); // mov r8d, LEAK_TAG
        code.extend_from_slice(&LEAK_TAG.to_le_bytes());
        // call [IAT slot 0] (ExAllocatePool2)
        rip_relative(
            &mut code,
            &[0xFF, 0x15],
            (sample::IAT - sample::TEXT) as usize,
        );
        code.extend_from_slice(&[0x48, 0x83, 0xC4, 0x28]); // add rsp, 40
    }
    code.push(0xB8); // mov eax, status
    code.extend_from_slice(&behaviour.status.to_le_bytes());
    code.push(0xC3); // ret
    assert!(code.len() <= UNLOAD);
    code.resize(UNLOAD, 0xCC);
    code.push(0xC3); // DriverUnload: ret
    code
}

/// Writes the test driver `file` (in this test's scratch directory) and returns its path.
fn driver_image(file: &str, seen: &AtomicUsize, behaviour: &Behaviour) -> PathBuf {
    let mut writer = sample_writer();
    let code = text(seen, behaviour);
    writer.sections[0].virtual_size = u32::try_from(code.len()).unwrap();
    writer.sections[0].data = code;
    writer.entry = sample::TEXT;
    if behaviour.leak_pool {
        // The synthetic image's first import becomes ExAllocatePool2 (its second, DbgPrint,
        // the model has too).
        let name = (sample::NAME_0 - sample::RDATA) as usize + 2;
        let rdata = &mut writer.sections[1].data;
        rdata[name..name + 0x1E].fill(0);
        rdata[name..name + 15].copy_from_slice(b"ExAllocatePool2");
    } else {
        writer.directories[1] = (0, 0);
        writer.directories[12] = (0, 0);
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(file);
    std::fs::write(&path, writer.write().0).expect("write the test image");
    path
}

/// The permissions of the page holding the `DriverEntry` a test driver reported.
fn entry_permissions(seen: &AtomicUsize) -> String {
    let address = seen.load(Ordering::SeqCst);
    assert_ne!(address, 0, "the DriverEntry ran");
    permissions_at(address).expect("the range stays reserved")
}

const SUCCEEDS: Behaviour = Behaviour {
    status: ddi::STATUS_SUCCESS,
    unload: true,
    leak_pool: false,
};

#[test]
fn an_unreadable_file_and_a_refused_image_are_errors_naming_them() {
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image_driver_missing.sys");
    let error = ImageDriver::load(&missing, "ImgDrvMissing").unwrap_err();
    assert!(
        matches!(&error, ImageDriverError::Read { path, .. } if *path == missing),
        "{error}"
    );
    assert!(error.to_string().starts_with("cannot read "), "{error}");

    // The synthetic sample imports RtlUlonglongByteSwap, which the model does not provide.
    let refused = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image_driver_refused.sys");
    std::fs::write(&refused, sample_image().bytes).unwrap();
    let error = ImageDriver::load(&refused, "ImgDrvRefused").unwrap_err();
    assert!(
        matches!(
            &error,
            ImageDriverError::Load { image, source: LoadError::UnknownImport { .. } }
                if image == "image_driver_refused.sys"
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("unknown import ntoskrnl.exe!RtlUlonglongByteSwap"),
        "{error}"
    );
}

#[test]
fn a_failing_driver_entry_is_reported_and_its_image_unmapped() {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let failing = Behaviour {
        status: ddi::STATUS_UNSUCCESSFUL,
        unload: false,
        leak_pool: false,
    };
    let path = driver_image("image_driver_entry_fails.sys", &SEEN, &failing);
    let error = ImageDriver::load(&path, "ImgDrvEntryFails").unwrap_err();
    assert!(
        matches!(
            &error,
            ImageDriverError::Entry { image, status }
                if image == "image_driver_entry_fails.sys"
                    && *status == NtStatus(ddi::STATUS_UNSUCCESSFUL)
        ),
        "{error}"
    );
    assert_eq!(entry_permissions(&SEEN), "---p", "retired");
}

#[test]
fn a_driver_without_an_unload_routine_cannot_be_unloaded_and_stays_mapped() {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let no_unload = Behaviour {
        unload: false,
        ..SUCCEEDS
    };
    let path = driver_image("image_driver_no_unload.sys", &SEEN, &no_unload);
    let driver = ImageDriver::load(&path, "ImgDrvNoUnload").expect("load");
    assert_eq!(driver.serving_image(), "image_driver_no_unload.sys");
    assert_eq!(driver.serving_entry_point(), SEEN.load(Ordering::SeqCst));
    assert!(driver.serving_contains(SEEN.load(Ordering::SeqCst)));
    assert!(driver.extension().is_none(), "it created no extension");
    let error = driver.unload().unwrap_err();
    assert!(
        matches!(&error, ImageDriverError::NoUnloadRoutine { image } if image == "image_driver_no_unload.sys"),
        "{error}"
    );
    assert!(entry_permissions(&SEEN).starts_with("r-x"), "still mapped");
}

#[test]
fn an_unload_that_leaves_pool_behind_is_an_error_and_the_image_stays_mapped() {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let leaks = Behaviour {
        leak_pool: true,
        ..SUCCEEDS
    };
    let path = driver_image("image_driver_leaks.sys", &SEEN, &leaks);
    let driver = ImageDriver::load(&path, "ImgDrvLeaks").expect("load");
    let error = driver.unload().unwrap_err();
    let ImageDriverError::Unload { image, leaks } = &error else {
        panic!("expected leaks, got {error}");
    };
    assert_eq!(image, "image_driver_leaks.sys");
    assert_eq!(leaks.pool.len(), 1, "{leaks}");
    assert_eq!(
        (leaks.pool[0].tag, leaks.pool[0].blocks, leaks.pool[0].bytes),
        (LEAK_TAG, 1, 24)
    );
    assert!(entry_permissions(&SEEN).starts_with("r-x"), "still mapped");
}

#[test]
fn a_refused_swap_keeps_the_outgoing_image_serving_and_unmaps_the_incoming_one() {
    static SEEN_SERVING: AtomicUsize = AtomicUsize::new(0);
    static SEEN_REFUSED: AtomicUsize = AtomicUsize::new(0);
    let serving = driver_image("image_driver_refusal_v1.sys", &SEEN_SERVING, &SUCCEEDS);
    // It leaves the driver object alone: a DriverUnload it stored would point into the
    // unmapped image (module docs of `image_driver`).
    let refusing = Behaviour {
        status: ddi::STATUS_INSUFFICIENT_RESOURCES,
        unload: false,
        leak_pool: false,
    };
    let incoming = driver_image("image_driver_refusal_v2.sys", &SEEN_REFUSED, &refusing);
    let driver = ImageDriver::load(&serving, "ImgDrvRefusal").expect("load");
    let error = driver.swap_to(&incoming).unwrap_err();
    assert!(
        matches!(
            &error,
            ImageDriverError::SwapRefused { serving, incoming, status }
                if serving == "image_driver_refusal_v1.sys"
                    && incoming == "image_driver_refusal_v2.sys"
                    && *status == NtStatus(ddi::STATUS_INSUFFICIENT_RESOURCES)
        ),
        "{error}"
    );
    assert_eq!(driver.serving_image(), "image_driver_refusal_v1.sys");
    assert!(driver.retired_images().is_empty());
    assert_eq!(
        entry_permissions(&SEEN_REFUSED),
        "---p",
        "the incoming image is unmapped"
    );
    assert!(entry_permissions(&SEEN_SERVING).starts_with("r-x"));
    driver.unload().expect("a clean unload");
    assert_eq!(
        entry_permissions(&SEEN_SERVING),
        "---p",
        "unmapped by unload"
    );
}

#[test]
fn a_swap_retires_the_outgoing_image_and_unload_runs_the_incoming_one() {
    static SEEN_V1: AtomicUsize = AtomicUsize::new(0);
    static SEEN_V2: AtomicUsize = AtomicUsize::new(0);
    let v1 = driver_image("image_driver_swap_v1.sys", &SEEN_V1, &SUCCEEDS);
    let v2 = driver_image("image_driver_swap_v2.sys", &SEEN_V2, &SUCCEEDS);
    let driver = ImageDriver::load(&v1, "ImgDrvSwap").expect("load");
    let swap = driver.swap_to(&v2).expect("swap");
    assert_eq!(
        (swap.from.as_str(), swap.to.as_str()),
        ("image_driver_swap_v1.sys", "image_driver_swap_v2.sys")
    );
    assert_eq!(
        (swap.drain, swap.stall),
        (Duration::ZERO, Duration::ZERO),
        "no DriverProxy swap: nothing drained, nothing held"
    );
    assert_eq!(driver.serving_image(), "image_driver_swap_v2.sys");
    assert_eq!(driver.serving_entry_point(), SEEN_V2.load(Ordering::SeqCst));
    assert_eq!(driver.retired_images(), ["image_driver_swap_v1.sys"]);
    assert_eq!(entry_permissions(&SEEN_V1), "---p", "v1 retired");
    // v2's entry re-set DriverUnload into v2: unloading runs it (v1's would abort).
    driver.unload().expect("a clean unload");
    assert_eq!(entry_permissions(&SEEN_V2), "---p");
}
