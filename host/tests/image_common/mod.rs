//! Shared helpers of the `image_*` tests (`mod image_common;`): a small PE32+ writer, the
//! synthetic sample image (hand-assembled x86-64 code, imports from ntoskrnl.exe, DIR64
//! relocations, a `.data` without raw data), `/proc/self/maps`. Child processes: `common`.

#![allow(dead_code)] // each test binary uses part of it
#![allow(clippy::missing_panics_doc)] // test support: a panic is a test failure

/// `ImageBase` of the synthetic image (the usual one of a `[[bin]]` driver).
pub const IMAGE_BASE: u64 = 0x1_4000_0000;
/// `SizeOfHeaders` and the first raw data offset.
pub const HEADERS_SIZE: u32 = 0x400;
/// `FileAlignment`.
pub const FILE_ALIGNMENT: u32 = 0x200;
/// `SectionAlignment`.
pub const SECTION_ALIGNMENT: u32 = 0x1000;

/// File offsets of header fields (the NT headers start at 0x40).
pub mod offset {
    /// `e_lfanew` in the DOS header.
    pub const E_LFANEW: usize = 0x3C;
    /// `IMAGE_FILE_HEADER::Machine`.
    pub const MACHINE: usize = 0x44;
    /// `IMAGE_FILE_HEADER::Characteristics`.
    pub const CHARACTERISTICS: usize = 0x56;
    /// `IMAGE_OPTIONAL_HEADER64::Magic`.
    pub const MAGIC: usize = 0x58;
    /// `AddressOfEntryPoint`.
    pub const ENTRY: usize = 0x58 + 16;
    /// `SectionAlignment`.
    pub const SECTION_ALIGNMENT: usize = 0x58 + 32;
    /// `SizeOfImage`.
    pub const SIZE_OF_IMAGE: usize = 0x58 + 56;
    /// `SizeOfHeaders`.
    pub const SIZE_OF_HEADERS: usize = 0x58 + 60;
    /// The data directory `index` (`VirtualAddress`, then `Size`).
    #[must_use]
    pub const fn directory(index: usize) -> usize {
        0x58 + 112 + 8 * index
    }
    /// Section header `index`.
    #[must_use]
    pub const fn section(index: usize) -> usize {
        0x58 + 240 + 40 * index
    }
    /// Field offsets inside a section header.
    pub const VIRTUAL_SIZE: usize = 8;
    /// `VirtualAddress`.
    pub const VIRTUAL_ADDRESS: usize = 12;
    /// `SizeOfRawData`.
    pub const SIZE_OF_RAW_DATA: usize = 16;
    /// `PointerToRawData`.
    pub const POINTER_TO_RAW_DATA: usize = 20;
    /// `Characteristics`.
    pub const SECTION_CHARACTERISTICS: usize = 36;
}

/// One section to write.
pub struct SectionSpec {
    /// Name (≤ 8 bytes).
    pub name: &'static str,
    /// RVA.
    pub rva: u32,
    /// `VirtualSize`.
    pub virtual_size: u32,
    /// Raw data (padded to `FileAlignment` in the file; empty: no raw data).
    pub data: Vec<u8>,
    /// Characteristics.
    pub characteristics: u32,
}

/// A PE32+ image being written.
pub struct PeWriter {
    /// `Machine`.
    pub machine: u16,
    /// `AddressOfEntryPoint`.
    pub entry: u32,
    /// `SizeOfImage`.
    pub size_of_image: u32,
    /// The sections, in file and memory order.
    pub sections: Vec<SectionSpec>,
    /// The 16 data directories (`VirtualAddress`, `Size`).
    pub directories: [(u32, u32); 16],
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

/// Writes `value` at `at`.
pub fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Writes `value` at `at`.
pub fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

impl PeWriter {
    /// The file: headers, then each section's raw data at the next `FileAlignment`
    /// boundary. Returns the bytes and each section's raw data offset (0 when it has none).
    #[must_use]
    pub fn write(&self) -> (Vec<u8>, Vec<u32>) {
        let mut bytes = vec![0u8; HEADERS_SIZE as usize];
        // DOS header: magic and e_lfanew only.
        bytes[..2].copy_from_slice(b"MZ");
        put_u32(&mut bytes, offset::E_LFANEW, 0x40);
        bytes[0x40..0x44].copy_from_slice(b"PE\0\0");
        // File header.
        put_u16(&mut bytes, offset::MACHINE, self.machine);
        put_u16(
            &mut bytes,
            0x46,
            u16::try_from(self.sections.len()).unwrap(),
        );
        put_u16(&mut bytes, 0x54, 240); // SizeOfOptionalHeader
        put_u16(&mut bytes, offset::CHARACTERISTICS, 0x22); // EXECUTABLE | LARGE_ADDRESS_AWARE
        // Optional header.
        let o = offset::MAGIC;
        put_u16(&mut bytes, o, 0x20B);
        put_u32(&mut bytes, offset::ENTRY, self.entry);
        put_u64(&mut bytes, o + 24, IMAGE_BASE);
        put_u32(&mut bytes, offset::SECTION_ALIGNMENT, SECTION_ALIGNMENT);
        put_u32(&mut bytes, o + 36, FILE_ALIGNMENT);
        put_u16(&mut bytes, o + 40, 6); // OS version 6.0
        put_u16(&mut bytes, o + 48, 6); // subsystem version 6.0
        put_u32(&mut bytes, offset::SIZE_OF_IMAGE, self.size_of_image);
        put_u32(&mut bytes, offset::SIZE_OF_HEADERS, HEADERS_SIZE);
        put_u16(&mut bytes, o + 68, 1); // NATIVE
        put_u16(&mut bytes, o + 70, 0x160); // HIGH_ENTROPY_VA | DYNAMIC_BASE | NX_COMPAT
        put_u64(&mut bytes, o + 72, 0x4_0000); // stack reserve
        put_u64(&mut bytes, o + 80, 0x1000); // stack commit
        put_u32(&mut bytes, o + 108, 16); // NumberOfRvaAndSizes
        for (index, &(rva, size)) in self.directories.iter().enumerate() {
            put_u32(&mut bytes, offset::directory(index), rva);
            put_u32(&mut bytes, offset::directory(index) + 4, size);
        }
        // Section table and raw data.
        let mut raw_offsets = Vec::new();
        for (index, section) in self.sections.iter().enumerate() {
            let header = offset::section(index);
            let name = section.name.as_bytes();
            bytes[header..header + name.len()].copy_from_slice(name);
            put_u32(
                &mut bytes,
                header + offset::VIRTUAL_SIZE,
                section.virtual_size,
            );
            put_u32(&mut bytes, header + offset::VIRTUAL_ADDRESS, section.rva);
            put_u32(
                &mut bytes,
                header + offset::SECTION_CHARACTERISTICS,
                section.characteristics,
            );
            if section.data.is_empty() {
                raw_offsets.push(0);
                continue;
            }
            let raw_offset = u32::try_from(bytes.len()).unwrap();
            let raw_size = u32::try_from(section.data.len())
                .unwrap()
                .next_multiple_of(FILE_ALIGNMENT);
            put_u32(&mut bytes, header + offset::SIZE_OF_RAW_DATA, raw_size);
            put_u32(&mut bytes, header + offset::POINTER_TO_RAW_DATA, raw_offset);
            bytes.extend_from_slice(&section.data);
            bytes.resize((raw_offset + raw_size) as usize, 0);
            raw_offsets.push(raw_offset);
        }
        (bytes, raw_offsets)
    }
}

/// Where things are in the synthetic sample image.
pub mod sample {
    /// RVA of `.text`.
    pub const TEXT: u32 = 0x1000;
    /// RVA of `.rdata`.
    pub const RDATA: u32 = 0x2000;
    /// RVA of `.data` (`SizeOfRawData` 0, `VirtualSize` 0x100).
    pub const DATA: u32 = 0x3000;
    /// RVA of `.reloc`.
    pub const RELOC: u32 = 0x4000;
    /// `SizeOfImage`.
    pub const SIZE_OF_IMAGE: u32 = 0x5000;

    /// `extern "win64" fn(u64, u64) -> u64`: `lea rax, [rcx+rdx]; ret`. The entry point.
    pub const ADD: u32 = TEXT;
    /// `extern "win64" fn(u64) -> u64`: calls `ntoskrnl.exe!RtlUlonglongByteSwap` through
    /// its IAT slot.
    pub const BYTE_SWAP: u32 = TEXT + 0x10;
    /// `extern "win64" fn(u64) -> u64`: stores its argument through the relocated pointer
    /// at `POINTERS` (into `.data`) and loads it back.
    pub const STORE_LOAD: u32 = TEXT + 0x30;
    /// `extern "win64" fn() -> u64`: returns the relocated pointer at `POINTERS`.
    pub const GET_POINTER: u32 = TEXT + 0x40;
    /// `extern "win64" fn(u64, u64) -> u64`: jumps to `ADD` through the relocated function
    /// pointer at `POINTERS + 8`.
    pub const ADD_VIA_POINTER: u32 = TEXT + 0x50;
    /// `extern "win64" fn(u64) -> u64`: calls `ntoskrnl.exe!DbgPrint` through its IAT slot.
    pub const DBG_PRINT: u32 = TEXT + 0x60;

    /// Two relocated pointers: `ImageBase + DATA + 0x10`, `ImageBase + ADD`.
    pub const POINTERS: u32 = RDATA;
    /// The pointee of the first pointer.
    pub const DATA_TARGET: u32 = DATA + 0x10;
    /// The import address table: `RtlUlonglongByteSwap`, `DbgPrint`, 0.
    pub const IAT: u32 = RDATA + 0x40;
    /// The import lookup table, same layout.
    pub const ILT: u32 = RDATA + 0x60;
    /// The import descriptors (one, then the null one).
    pub const DESCRIPTORS: u32 = RDATA + 0x80;
    /// "ntoskrnl.exe".
    pub const DLL_NAME: u32 = RDATA + 0xC0;
    /// Hint/name of `RtlUlonglongByteSwap`.
    pub const NAME_0: u32 = RDATA + 0xD0;
    /// Hint/name of `DbgPrint`.
    pub const NAME_1: u32 = RDATA + 0xF0;
    /// Offset in the `.reloc` raw data of the first relocation entry (after the block
    /// header).
    pub const FIRST_RELOC_ENTRY: usize = 8;
}

/// A synthetic image and the file offsets of its sections' raw data.
pub struct Sample {
    /// The file.
    pub bytes: Vec<u8>,
    /// File offset of the `.text` raw data.
    pub text_raw: usize,
    /// File offset of the `.rdata` raw data.
    pub rdata_raw: usize,
    /// File offset of the `.reloc` raw data.
    pub reloc_raw: usize,
}

impl Sample {
    /// The file offset of `rva` inside `.rdata`.
    #[must_use]
    pub fn rdata(&self, rva: u32) -> usize {
        self.rdata_raw + (rva - sample::RDATA) as usize
    }
}

/// Appends the RIP-relative instruction `opcode disp32` whose displacement reaches RVA
/// `target` (`code` starts at RVA `base`; the displacement ends the instruction).
fn rip_relative(code: &mut Vec<u8>, base: u32, opcode: &[u8], target: u32) {
    code.extend_from_slice(opcode);
    let next = base + u32::try_from(code.len()).unwrap() + 4;
    let displacement = i32::try_from(i64::from(target) - i64::from(next)).unwrap();
    code.extend_from_slice(&displacement.to_le_bytes());
}

/// Pads `code` with `int3` up to offset `at`.
fn pad_to(code: &mut Vec<u8>, at: u32) {
    assert!(code.len() <= at as usize, "function overlaps the next one");
    code.resize(at as usize, 0xCC);
}

/// The machine code of `.text` (see the function RVAs in [`sample`]).
#[must_use]
pub fn sample_code() -> Vec<u8> {
    use sample::{
        ADD, ADD_VIA_POINTER, BYTE_SWAP, DBG_PRINT, GET_POINTER, IAT, POINTERS, STORE_LOAD, TEXT,
    };
    let at = |rva: u32| rva - TEXT;
    let mut code = Vec::new();
    // add: lea rax, [rcx+rdx]; ret
    pad_to(&mut code, at(ADD));
    code.extend_from_slice(&[0x48, 0x8D, 0x04, 0x11, 0xC3]);
    // byte_swap: sub rsp, 40; call [rip+IAT]; add rsp, 40; ret
    pad_to(&mut code, at(BYTE_SWAP));
    code.extend_from_slice(&[0x48, 0x83, 0xEC, 0x28]);
    rip_relative(&mut code, TEXT, &[0xFF, 0x15], IAT);
    code.extend_from_slice(&[0x48, 0x83, 0xC4, 0x28, 0xC3]);
    // store_load: mov rax, [rip+POINTERS]; mov [rax], rcx; mov rax, [rax]; ret
    pad_to(&mut code, at(STORE_LOAD));
    rip_relative(&mut code, TEXT, &[0x48, 0x8B, 0x05], POINTERS);
    code.extend_from_slice(&[0x48, 0x89, 0x08, 0x48, 0x8B, 0x00, 0xC3]);
    // get_pointer: mov rax, [rip+POINTERS]; ret
    pad_to(&mut code, at(GET_POINTER));
    rip_relative(&mut code, TEXT, &[0x48, 0x8B, 0x05], POINTERS);
    code.push(0xC3);
    // add_via_pointer: mov rax, [rip+POINTERS+8]; jmp rax
    pad_to(&mut code, at(ADD_VIA_POINTER));
    rip_relative(&mut code, TEXT, &[0x48, 0x8B, 0x05], POINTERS + 8);
    code.extend_from_slice(&[0xFF, 0xE0]);
    // dbg_print: sub rsp, 40; call [rip+IAT+8]; add rsp, 40; ret
    pad_to(&mut code, at(DBG_PRINT));
    code.extend_from_slice(&[0x48, 0x83, 0xEC, 0x28]);
    rip_relative(&mut code, TEXT, &[0xFF, 0x15], IAT + 8);
    code.extend_from_slice(&[0x48, 0x83, 0xC4, 0x28, 0xC3]);
    code
}

/// The bytes of `.rdata`: relocated pointers, IAT, ILT, import descriptor, names.
#[must_use]
pub fn sample_rdata() -> Vec<u8> {
    use sample::{
        ADD, DATA_TARGET, DESCRIPTORS, DLL_NAME, IAT, ILT, NAME_0, NAME_1, POINTERS, RDATA,
    };
    let at = |rva: u32| (rva - RDATA) as usize;
    let mut rdata = vec![0u8; 0x100];
    put_u64(
        &mut rdata,
        at(POINTERS),
        IMAGE_BASE + u64::from(DATA_TARGET),
    );
    put_u64(&mut rdata, at(POINTERS) + 8, IMAGE_BASE + u64::from(ADD));
    for table in [IAT, ILT] {
        put_u64(&mut rdata, at(table), u64::from(NAME_0));
        put_u64(&mut rdata, at(table) + 8, u64::from(NAME_1));
    }
    // IMAGE_IMPORT_DESCRIPTOR: OriginalFirstThunk, TimeDateStamp, ForwarderChain, Name,
    // FirstThunk; then a null descriptor.
    put_u32(&mut rdata, at(DESCRIPTORS), ILT);
    put_u32(&mut rdata, at(DESCRIPTORS) + 12, DLL_NAME);
    put_u32(&mut rdata, at(DESCRIPTORS) + 16, IAT);
    // NUL-terminated strings (the buffer is zeroed); a hint/name is a u16 hint (0), then
    // the name.
    let mut put = |offset: usize, text: &[u8]| {
        rdata[offset..offset + text.len()].copy_from_slice(text);
    };
    put(at(DLL_NAME), b"ntoskrnl.exe");
    put(at(NAME_0) + 2, b"RtlUlonglongByteSwap");
    put(at(NAME_1) + 2, b"DbgPrint");
    rdata
}

/// The writer of the sample image, to change before writing.
#[must_use]
pub fn sample_writer() -> PeWriter {
    use sample::{ADD, DATA, DESCRIPTORS, IAT, POINTERS, RDATA, RELOC, SIZE_OF_IMAGE, TEXT};
    let code = sample_code();
    // One block for the page of POINTERS: two DIR64 entries, then ABSOLUTE padding.
    let page_offset = |rva: u32| u16::try_from(rva - RDATA).unwrap();
    let mut reloc = Vec::new();
    reloc.extend_from_slice(&RDATA.to_le_bytes());
    reloc.extend_from_slice(&16u32.to_le_bytes());
    for entry in [
        0xA000 | page_offset(POINTERS),
        0xA000 | page_offset(POINTERS + 8),
        0,
        0,
    ] {
        reloc.extend_from_slice(&entry.to_le_bytes());
    }
    let mut directories = [(0, 0); 16];
    directories[1] = (DESCRIPTORS, 40); // import
    directories[5] = (RELOC, 16); // base relocations
    directories[12] = (IAT, 24); // IAT
    PeWriter {
        machine: 0x8664,
        entry: ADD,
        size_of_image: SIZE_OF_IMAGE,
        sections: vec![
            SectionSpec {
                name: ".text",
                rva: TEXT,
                virtual_size: u32::try_from(code.len()).unwrap(),
                data: code,
                characteristics: 0x6000_0020,
            },
            SectionSpec {
                name: ".rdata",
                rva: RDATA,
                virtual_size: 0x100,
                data: sample_rdata(),
                characteristics: 0x4000_0040,
            },
            SectionSpec {
                name: ".data",
                rva: DATA,
                virtual_size: 0x100,
                data: Vec::new(),
                characteristics: 0xC000_0040,
            },
            SectionSpec {
                name: ".reloc",
                rva: RELOC,
                virtual_size: 0x10,
                data: reloc,
                characteristics: 0x4200_0040,
            },
        ],
        directories,
    }
}

/// The synthetic sample image.
#[must_use]
pub fn sample_image() -> Sample {
    let (bytes, raw) = sample_writer().write();
    Sample {
        bytes,
        text_raw: raw[0] as usize,
        rdata_raw: raw[1] as usize,
        reloc_raw: raw[3] as usize,
    }
}

/// The permissions (`r-xp` ...) of the mapping holding `address`, from `/proc/self/maps`.
#[must_use]
pub fn permissions_at(address: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines().find_map(|line| {
        let (range, rest) = line.split_once(' ')?;
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (start..end)
            .contains(&address)
            .then(|| rest.split(' ').next().unwrap_or_default().to_owned())
    })
}
