//! A driver image that misbehaves is reported, never a silent death or a hang: a fault raised
//! by the image's own code (an access violation, a write to its read-only data, an illegal
//! instruction, a division by zero, a breakpoint) is reported as Windows reports an exception
//! no driver handled (`KMODE_EXCEPTION_NOT_HANDLED`), naming the exception, the image, the RVA
//! and the call in progress; so is a fault of a kernel routine the image gave a bad pointer;
//! a `DriverEntry`, dispatch routine or `DriverUnload` that never
//! returns is reported by the watchdog. Each case runs in a child process (the report aborts
//! it) and must be reported within a few seconds.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod image_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use driver_proxy_host::image_driver::ImageDriver;
use image_common::{sample, sample_writer};

/// The child's case, in the environment.
const CASE: &str = "IMAGE_FAULTS_CASE";

/// The cases: `DriverEntry`'s code, and what its report must say.
const CASES: &[(&str, &[u8], &[&str])] = &[
    (
        "null_write",
        // mov byte ptr [0], 0
        &[0xC6, 0x04, 0x25, 0, 0, 0, 0, 0],
        &[
            "BUGCHECK 0x1E KMODE_EXCEPTION_NOT_HANDLED: STATUS_ACCESS_VIOLATION (0xc0000005)",
            "in image image_faults_null_write.sys at RVA 0x1000",
            "accessing 0x0",
            "during DriverEntry",
        ],
    ),
    (
        "write_read_only_data",
        // mov [rip + (RDATA - (TEXT + 6))], cl : a write into the image's own .rdata
        &[0x88, 0x0D, 0xFA, 0x0F, 0, 0, 0xC3],
        &[
            "STATUS_ACCESS_VIOLATION",
            "at RVA 0x1000",
            "(image_faults_write_read_only_data.sys at RVA 0x2000)",
            "during DriverEntry",
        ],
    ),
    (
        "illegal_instruction",
        &[0x0F, 0x0B], // ud2
        &[
            "STATUS_ILLEGAL_INSTRUCTION (0xc000001d)",
            "at RVA 0x1000",
            "during DriverEntry",
        ],
    ),
    (
        "divide_by_zero",
        &[0x31, 0xC9, 0xF7, 0xF1], // xor ecx, ecx; div ecx
        &[
            "STATUS_INTEGER_DIVIDE_BY_ZERO (0xc0000094)",
            "at RVA 0x1002",
            "during DriverEntry",
        ],
    ),
    (
        "breakpoint",
        &[0xCC], // int3 (the report points after it)
        &[
            "STATUS_BREAKPOINT (0x80000003)",
            "at RVA 0x1001",
            "during DriverEntry",
        ],
    ),
    (
        "bad_pointer_to_the_kernel",
        // mov ecx, 0x10; sub rsp, 40; call [rip + (IAT + 8 - next)]; add rsp, 40; ret:
        // DbgPrint (the image's second import) with a format string at address 0x10.
        &[
            0xB9, 0x10, 0, 0, 0, 0x48, 0x83, 0xEC, 0x28, 0xFF, 0x15, 0x39, 0x10, 0, 0, 0x48, 0x83,
            0xC4, 0x28, 0xC3,
        ],
        &[
            "STATUS_ACCESS_VIOLATION",
            "in the kernel's own code",
            "during DriverEntry",
            "a kernel routine the driver called faulted",
        ],
    ),
    (
        "spins",
        &[0xEB, 0xFE], // jmp $
        &[
            "WATCHDOG: DriverEntry of driver ImageFaultsSpins has not returned after 1.",
            "spins or waits forever",
        ],
    ),
];

/// Writes a driver image whose `DriverEntry` is `code`.
fn image(case: &str, code: &[u8]) -> PathBuf {
    let mut writer = sample_writer();
    let mut text = code.to_vec();
    text.resize(0x80, 0xCC);
    writer.sections[0].virtual_size = u32::try_from(text.len()).unwrap();
    writer.sections[0].data = text;
    writer.entry = sample::TEXT;
    if case == "bad_pointer_to_the_kernel" {
        // The synthetic image's first import becomes one the model has (its second is
        // DbgPrint, which the code calls).
        let name = (sample::NAME_0 - sample::RDATA) as usize + 2;
        let rdata = &mut writer.sections[1].data;
        rdata[name..name + 0x1E].fill(0);
        rdata[name..name + 15].copy_from_slice(b"ExAllocatePool2");
    } else {
        writer.directories[1] = (0, 0); // no imports
        writer.directories[12] = (0, 0);
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("image_faults_{case}.sys"));
    std::fs::write(&path, writer.write().0).expect("write the test image");
    path
}

fn service(case: &str) -> String {
    let mut name = String::from("ImageFaults");
    for part in case.split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.extend(chars);
        }
    }
    name
}

/// The child: loads the case's image (its `DriverEntry` faults or spins).
#[test]
#[ignore = "run in a child process by the other test of this file"]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    driver_proxy_host::wdm::set_call_limit(Duration::from_secs(1));
    let (_, code, _) = CASES
        .iter()
        .find(|(name, ..)| *name == case)
        .expect("a case");
    let path = image(&case, code);
    let loaded = ImageDriver::load(&path, &service(&case));
    panic!("the image was expected to be reported, but loading returned: {loaded:?}");
}

#[test]
fn every_fault_of_an_images_own_code_and_a_spinning_driver_entry_are_reported_within_seconds() {
    for (case, _, expected) in CASES {
        let start = Instant::now();
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CASE, case)
            .output()
            .expect("child process");
        let elapsed = start.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{case}: the child survived\n{stderr}"
        );
        for line in *expected {
            assert!(
                stderr.contains(line),
                "{case}: the report lacks {line:?}:\n{stderr}"
            );
        }
        assert!(
            elapsed < Duration::from_secs(10),
            "{case}: reported after {elapsed:?}"
        );
        println!(
            "{case}: reported in {:.2} s: {}",
            elapsed.as_secs_f64(),
            stderr
                .lines()
                .find(|l| l.contains("host kernel"))
                .unwrap_or("")
        );
    }
}
