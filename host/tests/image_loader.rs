//! The PE image loader: synthetic images (load, run, relocations, imports, protections),
//! every refusal (truncation at every length, each corrupted field), the real sample driver
//! images when built, and the loud failure of a call into an unmapped image.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod common;
mod image_common;

use std::cell::RefCell;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use common::{child_scenario, run_child};
use driver_proxy_host::image::{ImportRef, LoadError, LoadedImage, Protection};
use image_common::{
    Sample, offset, permissions_at, put_u32, put_u64, sample, sample_image, sample_writer,
};

type Binary = extern "win64" fn(u64, u64) -> u64;
type Unary = extern "win64" fn(u64) -> u64;
type Nullary = extern "win64" fn() -> u64;

extern "win64" fn byte_swap(value: u64) -> u64 {
    value.swap_bytes()
}

extern "win64" fn dbg_print(value: u64) -> u64 {
    value ^ 0xDB6
}

/// The host side of the synthetic image's two imports.
fn resolve(import: &ImportRef<'_>) -> Option<usize> {
    match (import.dll, import.name) {
        ("ntoskrnl.exe", "RtlUlonglongByteSwap") => Some(byte_swap as Unary as usize),
        ("ntoskrnl.exe", "DbgPrint") => Some(dbg_print as Unary as usize),
        _ => None,
    }
}

fn load(bytes: &[u8]) -> Result<LoadedImage, LoadError> {
    LoadedImage::load(bytes, "synthetic.sys", resolve)
}

/// The function at `rva` of `image`, as a function pointer of type `F`.
///
/// # Safety
/// `rva` must be the start of a function of type `F` in `image`, which must outlive every
/// call.
unsafe fn function<F: Copy>(image: &LoadedImage, rva: u32) -> F {
    assert_eq!(size_of::<F>(), size_of::<usize>());
    let address = image.address_of(rva).expect("rva inside the image");
    // SAFETY: `F` is a function pointer type (size checked) and the caller guarantees the
    // address is such a function.
    unsafe { core::mem::transmute_copy(&address) }
}

/// The 8 bytes at `rva` of `image`.
fn read_u64(image: &LoadedImage, rva: u32) -> u64 {
    let address = image.address_of(rva).expect("rva inside the image");
    assert!(image.contains(address + 7));
    let permissions = permissions_at(address).expect("mapped");
    assert!(permissions.starts_with('r'), "{permissions}");
    // SAFETY: the 8 bytes are inside the image's mapping, which is readable there (checked
    // above) and lives as long as `image`.
    unsafe { core::ptr::read_unaligned(address as *const u64) }
}

fn expect_error(bytes: &[u8]) -> String {
    match load(bytes) {
        Ok(image) => panic!("loaded at {:#x}, expected an error", image.base()),
        Err(error) => error.to_string(),
    }
}

#[track_caller]
fn assert_error(bytes: &[u8], expected: &[&str]) {
    let text = expect_error(bytes);
    for part in expected {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}

// --- synthetic images: load and run ---------------------------------------------------------

#[test]
fn a_synthetic_image_loads_and_its_code_runs_as_win64() {
    let image = load(&sample_image().bytes).expect("load");
    assert_eq!(image.name(), "synthetic.sys");
    assert_eq!(image.size(), sample::SIZE_OF_IMAGE as usize);
    assert_eq!(image.entry_point(), image.base() + sample::ADD as usize);
    // SAFETY: ADD is `lea rax, [rcx+rdx]; ret`.
    let add: Binary = unsafe { function(&image, sample::ADD) };
    assert_eq!(add(40, 2), 42);
    assert_eq!(add(u64::MAX, 2), 1);
    // SAFETY: the entry point is ADD.
    let entry: Binary = unsafe { core::mem::transmute(image.entry_point()) };
    assert_eq!(entry(7, 8), 15);
}

#[test]
fn the_image_is_moved_from_its_image_base_and_mapped_near_the_host_code() {
    let image = load(&sample_image().bytes).expect("load");
    assert_eq!(image.preferred_base(), image_common::IMAGE_BASE);
    assert_ne!(image.base() as u64, image.preferred_base());
    assert_eq!(image.base() % 0x1_0000, 0, "64 KiB aligned");
    let host = resolve as fn(&ImportRef<'_>) -> Option<usize> as usize;
    assert!(
        image.base().abs_diff(host) < 1 << 31,
        "image at {:#x}, host code at {host:#x}",
        image.base()
    );
}

#[test]
fn dir64_relocations_point_into_the_mapping() {
    let image = load(&sample_image().bytes).expect("load");
    assert_eq!(image.relocation_count(), 2);
    let data = read_u64(&image, sample::POINTERS);
    assert_eq!(data, (image.base() + sample::DATA_TARGET as usize) as u64);
    let add = read_u64(&image, sample::POINTERS + 8);
    assert_eq!(add, image.entry_point() as u64);
    // SAFETY: GET_POINTER returns the relocated pointer; ADD_VIA_POINTER jumps to ADD
    // through the other one.
    let (get_pointer, add_via_pointer): (Nullary, Binary) = unsafe {
        (
            function(&image, sample::GET_POINTER),
            function(&image, sample::ADD_VIA_POINTER),
        )
    };
    assert_eq!(get_pointer(), data);
    assert_eq!(add_via_pointer(20, 22), 42);
}

#[test]
fn data_without_raw_bytes_is_zero_filled_and_writable() {
    let image = load(&sample_image().bytes).expect("load");
    let data = image.section(".data").expect(".data");
    assert_eq!((data.rva, data.size), (sample::DATA, 0x100));
    for rva in (sample::DATA..sample::DATA + 0x100).step_by(8) {
        assert_eq!(read_u64(&image, rva), 0, "RVA {rva:#x}");
    }
    // SAFETY: STORE_LOAD stores its argument at DATA_TARGET through the relocated pointer.
    let store_load: Unary = unsafe { function(&image, sample::STORE_LOAD) };
    assert_eq!(store_load(0x1234_5678_9ABC), 0x1234_5678_9ABC);
    assert_eq!(read_u64(&image, sample::DATA_TARGET), 0x1234_5678_9ABC);
}

#[test]
fn imports_are_bound_by_name_through_the_callback() {
    let seen = RefCell::new(Vec::new());
    let image = LoadedImage::load(&sample_image().bytes, "synthetic.sys", |import| {
        seen.borrow_mut()
            .push(format!("{}!{}", import.dll, import.name));
        resolve(import)
    })
    .expect("load");
    assert_eq!(
        *seen.borrow(),
        ["ntoskrnl.exe!RtlUlonglongByteSwap", "ntoskrnl.exe!DbgPrint"]
    );
    let imports = image.imports();
    assert_eq!(imports.len(), 2);
    assert_eq!(
        (
            imports[0].name.as_str(),
            imports[0].iat_rva,
            imports[0].address
        ),
        (
            "RtlUlonglongByteSwap",
            sample::IAT,
            byte_swap as Unary as usize
        )
    );
    assert_eq!(
        (imports[1].name.as_str(), imports[1].iat_rva),
        ("DbgPrint", sample::IAT + 8)
    );
    assert_eq!(
        read_u64(&image, sample::IAT),
        byte_swap as Unary as usize as u64
    );
    assert_eq!(
        read_u64(&image, sample::IAT + 8),
        dbg_print as Unary as usize as u64
    );
    assert_eq!(read_u64(&image, sample::IAT + 16), 0);
    // The image calls the host through the IAT.
    // SAFETY: BYTE_SWAP and DBG_PRINT call the first and second IAT slot with their argument.
    let (swap, print): (Unary, Unary) = unsafe {
        (
            function(&image, sample::BYTE_SWAP),
            function(&image, sample::DBG_PRINT),
        )
    };
    assert_eq!(swap(0x0102_0304_0506_0708), 0x0807_0605_0403_0201);
    assert_eq!(print(0xDB6), 0);
}

#[test]
fn sections_get_their_protections_headers_read_only_gaps_no_access() {
    let image = load(&sample_image().bytes).expect("load");
    let expected = [
        (".text", Protection::ReadExecute, "r-x"),
        (".rdata", Protection::ReadOnly, "r--"),
        (".data", Protection::ReadWrite, "rw-"),
        (".reloc", Protection::ReadOnly, "r--"),
    ];
    for (name, protection, letters) in expected {
        let section = image.section(name).expect(name);
        assert_eq!(section.protection, protection, "{name}");
        assert_eq!(protection.maps_letters(), letters);
        let address = image.address_of(section.rva).unwrap();
        let permissions = permissions_at(address).expect("mapped");
        assert!(permissions.starts_with(letters), "{name}: {permissions}");
        assert_eq!(
            image.section_of(address + 1).map(|s| s.name.as_str()),
            Some(name)
        );
    }
    let headers = permissions_at(image.base()).expect("mapped");
    assert!(headers.starts_with("r--"), "headers: {headers}");
    assert_eq!(image.section_of(image.base()), None);
    // The IAT is read-only after binding.
    let iat = permissions_at(image.address_of(sample::IAT).unwrap()).unwrap();
    assert!(iat.starts_with("r--"), "IAT: {iat}");
}

#[test]
fn addresses_and_rvas_convert_inside_the_image_only() {
    let image = load(&sample_image().bytes).expect("load");
    let base = image.base();
    assert!(image.contains(base));
    assert!(image.contains(base + image.size() - 1));
    assert!(!image.contains(base + image.size()));
    assert!(!image.contains(base - 1));
    assert_eq!(image.rva_of(base + 0x1234), Some(0x1234));
    assert_eq!(image.rva_of(base + image.size()), None);
    assert_eq!(image.address_of(0x4FFF), Some(base + 0x4FFF));
    assert_eq!(image.address_of(0x5000), None);
    assert_eq!(
        image
            .sections()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        [".text", ".rdata", ".data", ".reloc"]
    );
    assert!(image.section(".bss").is_none());
}

#[test]
fn two_loads_of_one_image_are_independent() {
    let bytes = sample_image().bytes;
    let first = load(&bytes).expect("load");
    let second = load(&bytes).expect("load");
    assert!(!first.contains(second.base()) && !second.contains(first.base()));
    // SAFETY: STORE_LOAD as above, in each image.
    let (one, two): (Unary, Unary) = unsafe {
        (
            function(&first, sample::STORE_LOAD),
            function(&second, sample::STORE_LOAD),
        )
    };
    one(1);
    two(2);
    assert_eq!(read_u64(&first, sample::DATA_TARGET), 1);
    assert_eq!(read_u64(&second, sample::DATA_TARGET), 2);
}

// --- refusals ---------------------------------------------------------------------------------

#[test]
fn every_truncation_of_the_image_is_an_error_never_a_panic() {
    let bytes = sample_image().bytes;
    for len in 0..bytes.len() {
        let called = std::cell::Cell::new(false);
        let result = LoadedImage::load(&bytes[..len], "truncated.sys", |import| {
            called.set(true);
            resolve(import)
        });
        match result {
            Ok(_) => panic!("truncated to {len} bytes and loaded"),
            Err(error) => {
                let text = error.to_string();
                assert!(
                    text.contains("malformed PE image")
                        || text.contains("beyond the end of the file"),
                    "{len}: {text}"
                );
            }
        }
        assert!(
            !called.get(),
            "{len}: imports resolved for a truncated file"
        );
    }
}

#[test]
fn a_section_cut_by_truncation_is_named_with_its_offset() {
    let bytes = sample_image().bytes;
    assert_error(
        &bytes[..0x900],
        &[
            "section .reloc",
            "file offset 0x800",
            "+0x200",
            "0x900 bytes",
        ],
    );
}

#[test]
fn corrupted_bytes_never_crash_the_loader() {
    let sample = sample_image();
    let regions = [
        0..0x200,
        sample.rdata_raw..sample.rdata_raw + 0x100,
        sample.reloc_raw..sample.reloc_raw + 0x10,
    ];
    let mut loaded = 0;
    for position in regions.into_iter().flatten() {
        for flip in [0xFF, 0x80] {
            let mut bytes = sample.bytes.clone();
            bytes[position] ^= flip;
            // Any result is fine; a panic or a crash is not. The image is not run.
            if load(&bytes).is_ok() {
                loaded += 1;
            }
        }
    }
    assert!(
        loaded > 0,
        "some bytes (padding, version fields) do not matter"
    );
}

#[test]
fn an_arm64_machine_is_refused_by_name() {
    let mut bytes = sample_image().bytes;
    bytes[offset::MACHINE..offset::MACHINE + 2].copy_from_slice(&0xAA64u16.to_le_bytes());
    assert_error(
        &bytes,
        &["machine ARM64 cannot run on this x86-64 host", "0xAA64"],
    );
    bytes[offset::MACHINE..offset::MACHINE + 2].copy_from_slice(&0x014Cu16.to_le_bytes());
    assert_error(&bytes, &["machine I386 cannot run on this x86-64 host"]);
}

#[test]
fn a_pe32_magic_is_refused() {
    let mut bytes = sample_image().bytes;
    bytes[offset::MAGIC..offset::MAGIC + 2].copy_from_slice(&0x10Bu16.to_le_bytes());
    assert_error(&bytes, &["magic 0x010B is not PE32+"]);
}

#[test]
fn bad_dos_and_nt_header_offsets_are_named() {
    let mut bytes = sample_image().bytes;
    bytes[0] = b'X';
    assert_error(
        &bytes,
        &["malformed PE image (2560 bytes)", "DOS or NT headers"],
    );
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::E_LFANEW, 0xFFFF_0000);
    assert_error(&bytes, &["DOS or NT headers", "NT headers offset"]);
}

#[test]
fn a_section_alignment_below_the_page_size_is_refused() {
    for alignment in [0, 0x200, 0x800, 0x1800] {
        let mut bytes = sample_image().bytes;
        put_u32(&mut bytes, offset::SECTION_ALIGNMENT, alignment);
        assert_error(
            &bytes,
            &[
                &format!("SectionAlignment {alignment:#x}"),
                "page size 0x1000",
            ],
        );
    }
}

#[test]
fn a_misaligned_section_is_named() {
    let mut bytes = sample_image().bytes;
    put_u32(
        &mut bytes,
        offset::section(1) + offset::VIRTUAL_ADDRESS,
        0x2800,
    );
    assert_error(&bytes, &["section .rdata at RVA 0x2800 is not aligned"]);
}

#[test]
fn a_section_outside_the_image_is_named() {
    let mut bytes = sample_image().bytes;
    put_u32(
        &mut bytes,
        offset::section(2) + offset::VIRTUAL_SIZE,
        0x10000,
    );
    assert_error(
        &bytes,
        &[
            "section .data (RVA 0x3000..0x13000) lies outside the image",
            "0x5000",
        ],
    );
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::SIZE_OF_IMAGE, 0x4000);
    assert_error(&bytes, &["section .reloc", "outside the image"]);
}

#[test]
fn an_absurd_size_of_image_is_refused_before_mapping() {
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::SIZE_OF_IMAGE, 0xFFFF_F000);
    assert_error(&bytes, &["SizeOfImage 0xfffff000"]);
    put_u32(&mut bytes, offset::SIZE_OF_IMAGE, 0);
    assert_error(&bytes, &["SizeOfImage 0x0"]);
}

#[test]
fn bad_size_of_headers_is_refused() {
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::SIZE_OF_HEADERS, 0x10_0000);
    assert_error(&bytes, &["SizeOfHeaders 0x100000"]);
}

#[test]
fn overlapping_sections_are_named() {
    let mut bytes = sample_image().bytes;
    put_u32(
        &mut bytes,
        offset::section(1) + offset::VIRTUAL_ADDRESS,
        0x1000,
    );
    assert_error(&bytes, &["section .rdata at RVA 0x1000 overlaps .text"]);
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::section(0) + offset::VIRTUAL_ADDRESS, 0);
    assert_error(&bytes, &["section .text at RVA 0x0 overlaps headers"]);
}

#[test]
fn raw_data_outside_the_file_is_named() {
    let mut bytes = sample_image().bytes;
    put_u32(
        &mut bytes,
        offset::section(1) + offset::POINTER_TO_RAW_DATA,
        0x10_0000,
    );
    assert_error(
        &bytes,
        &[
            "section .rdata: raw data at file offset 0x100000",
            "beyond the end of the file",
        ],
    );
}

#[test]
fn a_writable_executable_section_is_refused() {
    let mut bytes = sample_image().bytes;
    put_u32(
        &mut bytes,
        offset::section(0) + offset::SECTION_CHARACTERISTICS,
        0xE000_0020,
    );
    assert_error(
        &bytes,
        &["section .text is both writable and executable", "W^X"],
    );
}

#[test]
fn an_entry_point_outside_code_is_refused() {
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::ENTRY, sample::DATA);
    assert_error(
        &bytes,
        &["AddressOfEntryPoint 0x3000 is not inside an executable section"],
    );
}

#[test]
fn a_relocation_type_other_than_dir64_is_named() {
    let sample = sample_image();
    let mut bytes = sample.bytes.clone();
    let entry = sample.reloc_raw + sample::FIRST_RELOC_ENTRY + 2;
    bytes[entry..entry + 2].copy_from_slice(&0x3008u16.to_le_bytes());
    assert_error(
        &bytes,
        &[
            "base relocation at RVA 0x2008 has type 3 (HIGHLOW)",
            "only DIR64",
        ],
    );
}

#[test]
fn a_relocation_outside_the_image_is_named() {
    let sample = sample_image();
    let mut bytes = sample.bytes.clone();
    // The block's page RVA moved to the last page: offset 0x008 + 8 bytes stays inside, a
    // page beyond does not.
    put_u32(&mut bytes, sample.reloc_raw, 0x4FF8);
    assert_error(
        &bytes,
        &["base relocation at RVA 0x5000", "outside the image"],
    );
}

#[test]
fn a_relocation_block_whose_page_wraps_past_4_gib_is_refused_not_applied_to_the_headers() {
    let sample = sample_image();
    let mut bytes = sample.bytes.clone();
    // Page 0xFFFFFFF8: with the second entry's offset 0x008 the 32-bit sum wraps to RVA 0,
    // the header page, which a check of the sum alone lets through. The first entry (offset
    // 0) becomes padding, so the wrapping one is the first looked at.
    put_u32(&mut bytes, sample.reloc_raw, 0xFFFF_FFF8);
    let first = sample.reloc_raw + sample::FIRST_RELOC_ENTRY;
    bytes[first..first + 2].copy_from_slice(&[0, 0]);
    assert_error(
        &bytes,
        &[
            "base relocation block for page RVA 0xfffffff8",
            "outside the image",
        ],
    );
    put_u32(&mut bytes, sample.reloc_raw, 0x5000); // SizeOfImage itself
    assert_error(&bytes, &["page RVA 0x5000", "outside the image"]);
}

#[test]
fn a_corrupt_relocation_block_is_named() {
    let sample = sample_image();
    let mut bytes = sample.bytes.clone();
    put_u32(&mut bytes, sample.reloc_raw + 4, 7); // SizeOfBlock
    assert_error(&bytes, &["base relocation directory", "reloc block size"]);
}

#[test]
fn stripped_relocations_are_refused_when_the_image_must_move() {
    let mut bytes = sample_image().bytes;
    bytes[offset::CHARACTERISTICS] |= 1; // IMAGE_FILE_RELOCS_STRIPPED
    assert_error(&bytes, &["relocations stripped", "0x140000000"]);
}

#[test]
fn a_tls_directory_is_refused() {
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::directory(9), sample::RDATA + 0x80);
    put_u32(&mut bytes, offset::directory(9) + 4, 0x28);
    assert_error(&bytes, &["TLS directory (RVA 0x2080, size 0x28)"]);
}

#[test]
fn a_delay_load_import_directory_is_refused() {
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::directory(13), sample::RDATA + 0x80);
    put_u32(&mut bytes, offset::directory(13) + 4, 0x20);
    assert_error(
        &bytes,
        &["delay-load import directory (RVA 0x2080, size 0x20)"],
    );
}

#[test]
fn an_ordinal_import_is_named() {
    let sample = sample_image();
    let mut bytes = sample.bytes.clone();
    put_u64(
        &mut bytes,
        sample.rdata(sample::ILT + 8),
        0x8000_0000_0000_0011,
    );
    assert_error(&bytes, &["import #1 of ntoskrnl.exe is by ordinal (17)"]);
}

#[test]
fn an_unknown_import_is_named() {
    let error = LoadedImage::load(&sample_image().bytes, "synthetic.sys", |import| {
        (import.name != "DbgPrint").then_some(byte_swap as Unary as usize)
    })
    .expect_err("DbgPrint is unknown");
    assert!(matches!(error, LoadError::UnknownImport { .. }));
    assert_eq!(
        error.to_string(),
        "unknown import ntoskrnl.exe!DbgPrint: the host kernel does not provide it"
    );
}

#[test]
fn a_non_ascii_import_name_is_named() {
    let sample = sample_image();
    let mut bytes = sample.bytes.clone();
    bytes[sample.rdata(sample::NAME_1) + 2] = 0xFF;
    assert_error(
        &bytes,
        &["import #1 of ntoskrnl.exe", "not printable ASCII"],
    );
}

#[test]
fn an_import_directory_outside_any_section_is_named() {
    let mut bytes = sample_image().bytes;
    put_u32(&mut bytes, offset::directory(1), 0x4F00);
    assert_error(
        &bytes,
        &["import directory", "import data dir virtual address"],
    );
}

#[test]
fn an_iat_outside_the_image_is_named() {
    let sample = sample_image();
    let mut bytes = sample.bytes.clone();
    put_u32(
        &mut bytes,
        sample.rdata(sample::DESCRIPTORS) + 16,
        0x7FFF_0000,
    );
    assert_error(
        &bytes,
        &[
            "import address table slot of ntoskrnl.exe!RtlUlonglongByteSwap",
            "0x7fff0000",
        ],
    );
}

#[test]
fn an_image_without_imports_or_relocations_loads() {
    let mut writer = sample_writer();
    writer.directories[1] = (0, 0);
    writer.directories[5] = (0, 0);
    writer.directories[12] = (0, 0);
    let (bytes, _) = writer.write();
    let image = LoadedImage::load(&bytes, "bare.sys", |_| panic!("no imports")).expect("load");
    assert_eq!(image.relocation_count(), 0);
    assert!(image.imports().is_empty());
    // Not relocated: the pointer keeps its link-time value.
    assert_eq!(
        read_u64(&image, sample::POINTERS),
        image_common::IMAGE_BASE + u64::from(sample::DATA_TARGET)
    );
    // SAFETY: ADD is position-independent.
    let add: Binary = unsafe { function(&image, sample::ADD) };
    assert_eq!(add(1, 2), 3);
}

// --- the real sample driver images -------------------------------------------------------------

/// `target/drivers/<arch>/<file>` of the workspace, if `cargo xtask build-driver` wrote it.
fn driver_image(arch: &str, file: &str) -> Option<Vec<u8>> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "target",
        "drivers",
        arch,
        file,
    ]
    .iter()
    .collect();
    let bytes = std::fs::read(&path).ok();
    if bytes.is_none() {
        println!(
            "skipped: image not built, run cargo xtask build-driver ({} absent)",
            path.display()
        );
    }
    bytes
}

/// Stands for every kernel routine: the driver's code is not run by these tests.
extern "win64" fn not_called() -> u64 {
    std::process::abort()
}

/// The x64 sample's static imports: nothing the library resolves at run time (the worker's
/// wait and handle are the library's), so a kernel without one of those still loads it.
/// `KeBugCheckEx` (the panic handler) is there only when some panic is reachable in the
/// optimised image.
const SAMPLE_IMPORTS: [&str; 8] = [
    "DbgPrint",
    "IoCreateDevice",
    "IoCreateSymbolicLink",
    "IoDeleteDevice",
    "IoDeleteSymbolicLink",
    "IofCompleteRequest",
    "KeBugCheckEx",
    "MmGetSystemRoutineAddress",
];

/// What the library resolves at run time: never a static import of the sample.
const RESOLVED_AT_RUN_TIME: [&str; 20] = [
    "IoGetDriverProxyFeatures",
    "IoCreateDriverProxyExtension",
    "IoGetDriverProxyExtensionFromDriverObject",
    "IoRegisterDriverProxyEndpoints",
    "IoGetDriverProxyEndpointWrapper",
    "IofGetDriverProxyWrapperFromEndpoint",
    "IoDriverProxyCreateHotSwappableWorkerThread",
    "KeInitializeEvent",
    "KeSetEvent",
    "KeClearEvent",
    "KeResetEvent",
    "KeReadStateEvent",
    "KeWaitForMultipleObjects",
    "PsCreateSystemThread",
    "ZwClose",
    "ZwWaitForSingleObject",
    "IoAllocateDriverObjectExtension",
    "IoGetDriverObjectExtension",
    "ExAllocatePool2",
    "ExFreePoolWithTag",
];

/// The file's DIR64 targets and their link-time values, read independently of the loader.
fn file_relocations(bytes: &[u8]) -> Vec<(u32, u64)> {
    use object::read::pe::PeFile64;
    let file = PeFile64::parse(bytes).expect("PE32+");
    let sections = file.section_table();
    let mut blocks = file
        .data_directories()
        .relocation_blocks(bytes, &sections)
        .expect("relocations")
        .expect("a relocation directory");
    let mut targets = Vec::new();
    while let Some(block) = blocks.next().expect("block") {
        for relocation in block {
            if relocation.typ == object::pe::IMAGE_REL_BASED_DIR64 {
                let rva = relocation.virtual_address;
                let data = sections.pe_data_at(bytes, rva).expect("file data");
                targets.push((rva, u64::from_le_bytes(data[..8].try_into().unwrap())));
            }
        }
    }
    targets
}

#[test]
fn the_sample_driver_images_load_with_exactly_their_kernel_imports() {
    for file in ["hotswap_sample_v1.sys", "hotswap_sample_v2.sys"] {
        let Some(bytes) = driver_image("amd64", file) else {
            return;
        };
        let mut names = Vec::new();
        let image = LoadedImage::load(&bytes, file, |import| {
            assert_eq!(import.dll, "ntoskrnl.exe", "{file}");
            names.push(import.name.to_owned());
            Some(not_called as extern "win64" fn() -> u64 as usize)
        })
        .unwrap_or_else(|error| panic!("{file}: {error}"));
        let expected: Vec<&str> = SAMPLE_IMPORTS
            .into_iter()
            .filter(|name| *name != "KeBugCheckEx" || names.iter().any(|n| n == name))
            .collect();
        assert_eq!(names, expected, "{file}");
        for name in RESOLVED_AT_RUN_TIME {
            assert!(!names.iter().any(|n| n == name), "{file} imports {name}");
        }
        assert_eq!(image.name(), file);

        // Imports: every IAT slot holds what the callback returned.
        for import in image.imports() {
            assert_eq!(
                read_u64(&image, import.iat_rva),
                not_called as extern "win64" fn() -> u64 as usize as u64,
                "{file}: {}",
                import.name
            );
        }

        // Relocations: moved by the same delta as the image, pointing into it.
        assert_ne!(image.base() as u64, image.preferred_base());
        let delta = (image.base() as u64).wrapping_sub(image.preferred_base());
        let relocations = file_relocations(&bytes);
        assert!(!relocations.is_empty(), "{file}");
        assert_eq!(image.relocation_count(), relocations.len(), "{file}");
        for (rva, linked) in relocations {
            let value = read_u64(&image, rva);
            assert_eq!(value, linked.wrapping_add(delta), "{file}: RVA {rva:#x}");
            assert!(
                image.contains(usize::try_from(value).unwrap()),
                "{file}: RVA {rva:#x} → {value:#x}"
            );
        }

        // Entry point in .text; protections as the characteristics say.
        let text = image.section(".text").expect(".text");
        assert!(text.contains(image.rva_of(image.entry_point()).unwrap()));
        for (name, letters) in [
            (".text", "r-x"),
            (".rdata", "r--"),
            (".data", "rw-"),
            (".pdata", "r--"),
            (".reloc", "r--"),
        ] {
            let section = image
                .section(name)
                .unwrap_or_else(|| panic!("{file}: {name}"));
            let permissions =
                permissions_at(image.address_of(section.rva).unwrap()).expect("mapped");
            assert!(
                permissions.starts_with(letters),
                "{file} {name}: {permissions}"
            );
        }
        // .data has no raw data: zero-filled.
        let data = image.section(".data").unwrap();
        for rva in (data.rva..data.rva + data.size - 7).step_by(8) {
            assert_eq!(read_u64(&image, rva), 0, "{file}: .data RVA {rva:#x}");
        }
    }
}

#[test]
fn the_arm64_sample_driver_images_are_refused_by_machine() {
    for file in ["hotswap_sample_v1.sys", "hotswap_sample_v2.sys"] {
        let Some(bytes) = driver_image("arm64", file) else {
            return;
        };
        let error = LoadedImage::load(&bytes, file, |_| panic!("no import may be resolved"))
            .expect_err("an ARM64 image");
        assert!(
            error
                .to_string()
                .contains("machine ARM64 cannot run on this x86-64 host"),
            "{file}: {error}"
        );
    }
}

// --- retired images fail loudly ----------------------------------------------------------------

/// Runs `scenario` of the test `name` in a child process and asserts that `signal` killed
/// it; returns its stderr and, for messages, its whole output.
#[track_caller]
fn child_killed_by(name: &str, scenario: &str, signal: libc::c_int) -> (String, String) {
    let output = run_child(name, scenario);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let text = format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
    );
    assert_eq!(output.status.signal(), Some(signal), "{text}");
    (stderr, text)
}

#[test]
fn a_call_into_an_unmapped_image_aborts_naming_the_image_and_rva() {
    const NAME: &str = "a_call_into_an_unmapped_image_aborts_naming_the_image_and_rva";
    if child_scenario().as_deref() == Some("call") {
        let image = load(&sample_image().bytes).expect("load");
        // SAFETY: STORE_LOAD is a function of this type, until the image is unmapped...
        let store_load: Unary = unsafe { function(&image, sample::STORE_LOAD) };
        assert_eq!(store_load(5), 5);
        image.unmap();
        // ...which it now is: this call must abort the process with the message.
        store_load(6);
        println!("the call into the unmapped image returned");
        return;
    }
    let (stderr, text) = child_killed_by(NAME, "call", libc::SIGABRT);
    assert!(
        stderr.contains("host kernel: call into unmapped image synthetic.sys at RVA 0x1030\n"),
        "{text}"
    );
}

#[test]
fn a_read_of_an_unmapped_image_aborts_naming_the_access() {
    const NAME: &str = "a_read_of_an_unmapped_image_aborts_naming_the_access";
    if child_scenario().as_deref() == Some("read") {
        let image = load(&sample_image().bytes).expect("load");
        let address = image.address_of(sample::DATA_TARGET).unwrap();
        drop(image);
        // SAFETY: none: the read must fault and abort (that is the test).
        let value = unsafe { core::ptr::read_volatile(address as *const u64) };
        println!("the read of the unmapped image returned {value}");
        return;
    }
    let (stderr, text) = child_killed_by(NAME, "read", libc::SIGABRT);
    assert!(
        stderr.contains("host kernel: access to unmapped image synthetic.sys at RVA 0x3010 by"),
        "{text}"
    );
}

#[test]
fn other_faults_keep_their_usual_outcome() {
    const NAME: &str = "other_faults_keep_their_usual_outcome";
    if child_scenario().as_deref() == Some("other") {
        // Retire an image so the handler is installed, then fault elsewhere.
        load(&sample_image().bytes).expect("load").unmap();
        // SAFETY: none: the read must fault (that is the test).
        let value = unsafe { core::ptr::read_volatile(16 as *const u64) };
        println!("the read of address 16 returned {value}");
        return;
    }
    let (stderr, text) = child_killed_by(NAME, "other", libc::SIGSEGV);
    assert!(!stderr.contains("host kernel"), "{text}");
}

#[test]
fn a_retired_range_is_not_reused_by_later_loads() {
    let bytes = sample_image().bytes;
    let first = load(&bytes).expect("load");
    let (base, size) = (first.base(), first.size());
    first.unmap();
    assert_eq!(permissions_at(base).as_deref(), Some("---p"));
    for _ in 0..4 {
        let image = load(&bytes).expect("load");
        assert!(image.base() + image.size() <= base || image.base() >= base + size);
    }
}

/// `Sample::text_raw` is where the writer put `.text`: the file holds `ADD`'s first
/// instruction (`lea rax, [rcx+rdx]`) there.
#[test]
fn the_sample_offsets_match_the_writer() {
    let Sample {
        text_raw, bytes, ..
    } = sample_image();
    assert_eq!(&bytes[text_raw..text_raw + 4], &[0x48, 0x8D, 0x04, 0x11]);
}

#[test]
fn the_sample_image_is_well_formed_pe32_plus() {
    let sample = sample_image();
    assert_eq!(sample.bytes.len(), 0xA00);
    assert_eq!(&sample.bytes[..2], b"MZ");
    assert_eq!(sample.text_raw, 0x400);
    assert_eq!(sample.rdata_raw, 0x600);
    assert_eq!(sample.reloc_raw, 0x800);
}
