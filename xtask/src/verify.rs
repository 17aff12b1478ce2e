//! `cargo xtask verify <image>`: checks that a file is a kernel driver image this project
//! can ship, with the `object` crate and nothing from Windows.
//!
//! | check | passes when |
//! |---|---|
//! | `PE format` | the file parses as a PE image (DOS header, `PE\0\0`, headers, sections), every section's raw data lies inside the file, every import thunk can be read |
//! | `PE32+` | the optional header's magic is `0x20B` |
//! | `machine` | `IMAGE_FILE_MACHINE_AMD64` or `_ARM64`, and the one asked for (`--machine`) |
//! | `subsystem` | `IMAGE_SUBSYSTEM_NATIVE` (1) |
//! | `entry point` | `AddressOfEntryPoint` lies in an executable section, is the start of a function in the exception directory (`.pdata`), and equals the RVA of `DriverEntry` in the linker map written with the image (see below) |
//! | `imports` | every imported DLL (plain and delay-load) is `ntoskrnl.exe` or `hal.dll`; any other is named |
//! | `minimum Windows` | every imported routine exists on the oldest Windows the INF declares (Windows 10 1709, build 16299): it is in [`KERNEL_ROUTINES`] with a first build at most [`MINIMUM_WINDOWS_BUILD`]; a routine not in the table, or newer, is named (a newer routine must be resolved at run time, as the library does, never imported) |
//! | `exports` | no export is a C or Rust run-time helper (`memcpy`, `__chkstk`, `_fltused`, …), as a `cdylib` link would export them |
//! | `relocations` | a `.reloc` section and a base relocation directory with at least one relocation, all of them `DIR64` (or `ABSOLUTE` padding) |
//! | `checksum` | the header's `CheckSum` is non-zero and equals the standard PE checksum of the file |
//! | `TLS` | no TLS directory (kernel images cannot have one) |
//!
//! # How the entry point is tied to `DriverEntry`
//!
//! A `[[bin]]` driver image has no symbols and no export table, so the image alone cannot
//! say which function its entry point is. The linker can: `cargo xtask build-driver` links
//! each image with `/MAP:<image>.map`, an MSVC-style map listing every public symbol with its
//! address (`Rva+Base`) and the image's link timestamp. `verify` reads the map next to the
//! image (or `--map FILE`), requires its timestamp to equal the image's `TimeDateStamp` (a
//! stale map is refused, not trusted), and compares `DriverEntry`'s RVA with
//! `AddressOfEntryPoint`. `--no-map` skips this part and keeps the structural checks (an
//! executable section, a function start in `.pdata`).
//!
//! # Checksum
//!
//! The standard algorithm (`CheckSumMappedFile`): the file as little-endian 16-bit words
//! (an odd last byte zero-extended), the 4-byte `CheckSum` field counted as zero, summed
//! with the carry folded back into the low 16 bits after every addition, plus the file's
//! length.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageThunkData, Import, PeFile64};

/// `--machine` of `cargo xtask verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MachineArg {
    /// x64 (`IMAGE_FILE_MACHINE_AMD64`).
    Amd64,
    /// ARM64 (`IMAGE_FILE_MACHINE_ARM64`).
    Arm64,
}

impl MachineArg {
    /// The `IMAGE_FILE_MACHINE_*` value.
    #[must_use]
    pub const fn machine(self) -> u16 {
        match self {
            Self::Amd64 => pe::IMAGE_FILE_MACHINE_AMD64,
            Self::Arm64 => pe::IMAGE_FILE_MACHINE_ARM64,
        }
    }
}

/// DLLs a kernel driver may import from.
const ALLOWED_DLLS: [&str; 2] = ["ntoskrnl.exe", "hal.dll"];

/// The oldest Windows the sample's INF declares (`NT$ARCH$.10.0...16299`: Windows 10 1709);
/// a test of this module keeps the two in step.
pub const MINIMUM_WINDOWS_BUILD: u32 = 16_299;

/// Kernel routines an image may import, with the first Windows 10 build that exports them
/// (`0`: every Windows 10, i.e. the routine predates it). Sources: the "Requirements" table of
/// each routine's page on Microsoft Learn (`learn.microsoft.com/windows-hardware/drivers/ddi/`):
/// "Minimum supported client: Windows 2000" or "available starting with Windows 2000" for the
/// routines below marked 0, and "Windows 10, version 2004" (build 19041) for
/// `ExAllocatePool2`. The C run-time routines are ntoskrnl exports since the first NT.
pub const KERNEL_ROUTINES: &[(&str, u32)] = &[
    ("DbgPrint", 0),
    ("IoCreateDevice", 0),
    ("IoCreateSymbolicLink", 0),
    ("IoDeleteDevice", 0),
    ("IoDeleteSymbolicLink", 0),
    ("IofCompleteRequest", 0),
    ("KeBugCheckEx", 0),
    ("MmGetSystemRoutineAddress", 0),
    ("ZwClose", 0),
    ("ZwWaitForSingleObject", 0),
    ("memcpy", 0),
    ("memmove", 0),
    ("memset", 0),
    ("memcmp", 0),
    // Pool, MDLs, probes and work items: what drivers with direct and neither I/O and work
    // items import (the example driver, `examples/scratchpad`); all predate Windows 10.
    ("ExAllocatePoolWithTag", 0),
    ("ExFreePoolWithTag", 0),
    ("IoAllocateMdl", 0),
    ("IoFreeMdl", 0),
    ("MmBuildMdlForNonPagedPool", 0),
    ("MmProbeAndLockPages", 0),
    ("MmUnlockPages", 0),
    ("MmMapLockedPagesSpecifyCache", 0),
    ("MmUnmapLockedPages", 0),
    ("ProbeForRead", 0),
    ("ProbeForWrite", 0),
    ("IoAllocateWorkItem", 0),
    ("IoQueueWorkItem", 0),
    ("IoFreeWorkItem", 0),
    ("KeAcquireSpinLockRaiseToDpc", 0),
    ("KeReleaseSpinLock", 0),
    ("KeAcquireSpinLockAtDpcLevel", 0),
    ("KeReleaseSpinLockFromDpcLevel", 0),
    ("ExAllocatePool2", 19_041),
];

/// The first build that exports `routine`, if the table knows it.
fn first_build(routine: &str) -> Option<u32> {
    KERNEL_ROUTINES
        .iter()
        .find(|(name, _)| *name == routine)
        .map(|&(_, build)| build)
}

/// Run-time helpers no driver image may export (a `cdylib` link exports every
/// `#[no_mangle]` symbol, these included).
const RUNTIME_HELPERS: [&str; 17] = [
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "memchr",
    "bcmp",
    "strlen",
    "__chkstk",
    "__chkstk_ms",
    "_fltused",
    "__CxxFrameHandler3",
    "__CxxFrameHandler4",
    "__C_specific_handler",
    "__GSHandlerCheck",
    "__GSHandlerCheck_EH4",
    "__security_check_cookie",
    "rust_eh_personality",
];

/// Prefixes of Rust run-time symbols (allocator shims, panic entry points).
const RUNTIME_PREFIXES: [&str; 2] = ["__rust_", "rust_begin_unwind"];

/// One failed check: its name (the table in the module docs) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The check's name.
    pub check: &'static str,
    /// What is wrong, naming the offending value.
    pub message: String,
}

impl Failure {
    fn new(check: &'static str, message: impl Into<String>) -> Self {
        Self {
            check,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.check, self.message)
    }
}

/// A section header, as the report shows it.
#[derive(Clone, Debug)]
pub struct Section {
    /// Name (up to 8 bytes).
    pub name: String,
    /// RVA.
    pub address: u32,
    /// `VirtualSize`.
    pub size: u32,
    /// `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

impl Section {
    fn contains(&self, rva: u32) -> bool {
        rva >= self.address && rva - self.address < self.size
    }

    fn is_executable(&self) -> bool {
        self.characteristics & pe::IMAGE_SCN_MEM_EXECUTE != 0
    }
}

/// Everything the checks look at, read from the image.
#[derive(Clone, Debug)]
pub struct Facts {
    /// File size in bytes.
    pub size: usize,
    /// `IMAGE_FILE_MACHINE_*`.
    pub machine: u16,
    /// `TimeDateStamp` of the file header.
    pub timestamp: u32,
    /// File header `Characteristics`.
    pub characteristics: u16,
    /// `Subsystem`.
    pub subsystem: u16,
    /// `MajorSubsystemVersion`, `MinorSubsystemVersion`.
    pub subsystem_version: (u16, u16),
    /// `DllCharacteristics`.
    pub dll_characteristics: u16,
    /// `ImageBase`.
    pub image_base: u64,
    /// `AddressOfEntryPoint`.
    pub entry: u32,
    /// The section headers.
    pub sections: Vec<Section>,
    /// Imported DLLs with the names (or `#ordinal`s) imported from each.
    pub imports: Vec<(String, Vec<String>)>,
    /// Delay-load imported DLLs.
    pub delay_imports: Vec<String>,
    /// Exported names (`#ordinal` for unnamed exports).
    pub exports: Vec<String>,
    /// Whether the base relocation directory is present (non-zero address).
    pub relocation_directory: bool,
    /// Base relocation types, one entry per relocation.
    pub relocation_types: Vec<u16>,
    /// Function start RVAs from the exception directory, if there is one.
    pub function_starts: Option<Vec<u32>>,
    /// Whether a TLS directory is present.
    pub tls: bool,
    /// `CheckSum` of the optional header.
    pub checksum: u32,
    /// The checksum computed from the file.
    pub computed_checksum: u32,
}

/// What the linker map says about an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// `Timestamp is …`: the link's timestamp, equal to the image's `TimeDateStamp`.
    pub timestamp: Option<u32>,
    /// `Rva+Base` of `DriverEntry` minus the preferred load address.
    pub driver_entry: u32,
}

/// What the entry-point check compares with.
#[derive(Clone, Debug)]
pub enum MapCheck {
    /// The map's content.
    Map(MapInfo),
    /// The map could not be used (missing, unreadable, no `DriverEntry`): an entry-point
    /// failure with this message.
    Unusable(String),
    /// `--no-map`: structural checks only.
    Skip,
}

/// The outcome of verifying one image.
#[derive(Clone, Debug)]
pub struct Report {
    /// What was read (absent when the file is not a PE32+ image).
    pub facts: Option<Facts>,
    /// The map used for the entry-point check.
    pub map: Option<MapInfo>,
    /// Failed checks, in table order.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Whether every check passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn status(&self, check: &str) -> &'static str {
        if self.failures.iter().any(|f| f.check == check) {
            "FAIL"
        } else {
            "ok"
        }
    }
}

/// Verifies the image at `path`; prints the report. `map`: `None` for the map next to the
/// image (`<image>.map`); `no_map` skips the map.
///
/// # Errors
/// When the file cannot be read or a check fails (every failure is listed).
pub fn verify_file(
    path: &Path,
    machine: Option<u16>,
    map: Option<&Path>,
    no_map: bool,
) -> Result<Report> {
    let data =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let map_check = if no_map {
        MapCheck::Skip
    } else {
        let map_path: PathBuf = map.map_or_else(|| path.with_extension("map"), Path::to_path_buf);
        match std::fs::read_to_string(&map_path) {
            Ok(text) => match parse_map(&text) {
                Ok(info) => MapCheck::Map(info),
                Err(message) => {
                    MapCheck::Unusable(format!("map {}: {message}", map_path.display()))
                }
            },
            Err(error) => MapCheck::Unusable(format!(
                "no usable linker map at {} ({error}); build with `cargo xtask build-driver`, \
                 or pass --map FILE or --no-map",
                map_path.display()
            )),
        }
    };
    let report = verify_bytes(&data, machine, &map_check);
    print!("{}", render(path, &report));
    if !report.passed() {
        let list: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
        bail!(
            "verify {}: {} check(s) failed:\n  {}",
            path.display(),
            list.len(),
            list.join("\n  ")
        );
    }
    Ok(report)
}

/// Runs every check on `data`.
#[must_use]
pub fn verify_bytes(data: &[u8], machine: Option<u16>, map: &MapCheck) -> Report {
    match read_facts(data) {
        Ok(facts) => {
            let failures = check(&facts, machine, map);
            Report {
                map: match map {
                    MapCheck::Map(info) => Some(*info),
                    _ => None,
                },
                facts: Some(facts),
                failures,
            }
        }
        Err(failure) => Report {
            facts: None,
            map: None,
            failures: vec![failure],
        },
    }
}

/// Reads the facts, or the `PE format` / `PE32+` failure that prevents it.
///
/// # Errors
/// The failure of the check that stops the reading.
pub fn read_facts(data: &[u8]) -> Result<Facts, Failure> {
    let format = |e: object::read::Error| Failure::new("PE format", format!("not a PE image: {e}"));
    let magic = object::read::pe::optional_header_magic(data).map_err(format)?;
    match magic {
        pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC => {}
        pe::IMAGE_NT_OPTIONAL_HDR32_MAGIC => {
            return Err(Failure::new(
                "PE32+",
                "the image is PE32 (optional header magic 0x10B), not PE32+ (0x20B)",
            ));
        }
        other => {
            return Err(Failure::new(
                "PE32+",
                format!("optional header magic {other:#06X}, expected 0x20B"),
            ));
        }
    }
    let file = PeFile64::parse(data).map_err(format)?;
    check_raw_data(&file.section_table(), data.len())?;
    let header = file.nt_headers().file_header();
    let optional = file.nt_headers().optional_header();
    let reader = Reader {
        data,
        sections: file.section_table(),
        directories: file.data_directories(),
    };
    let machine = header.machine.get(LE);
    Ok(Facts {
        size: data.len(),
        machine,
        timestamp: header.time_date_stamp.get(LE),
        characteristics: header.characteristics.get(LE),
        subsystem: optional.subsystem.get(LE),
        subsystem_version: (
            optional.major_subsystem_version.get(LE),
            optional.minor_subsystem_version.get(LE),
        ),
        dll_characteristics: optional.dll_characteristics.get(LE),
        image_base: optional.image_base.get(LE),
        entry: optional.address_of_entry_point.get(LE),
        sections: reader.sections(),
        imports: reader.imports()?,
        delay_imports: reader.delay_imports()?,
        exports: reader.exports()?,
        relocation_directory: reader
            .directories
            .get(pe::IMAGE_DIRECTORY_ENTRY_BASERELOC)
            .is_some(),
        relocation_types: reader.relocation_types()?,
        function_starts: reader.function_starts(machine)?,
        tls: reader
            .directories
            .get(pe::IMAGE_DIRECTORY_ENTRY_TLS)
            .is_some(),
        checksum: optional.check_sum.get(LE),
        computed_checksum: pe_checksum(data, checksum_offset(&file))
            .ok_or_else(|| Failure::new("PE format", "the headers end before CheckSum"))?,
    })
}

/// Refuses a section whose raw data (`PointerToRawData` + `SizeOfRawData`) does not lie
/// inside the file: a loader would read past the end of it (`object` parses the headers
/// without looking at the data).
fn check_raw_data(
    sections: &object::read::pe::SectionTable<'_>,
    file_len: usize,
) -> Result<(), Failure> {
    for section in sections.iter() {
        let offset = u64::from(section.pointer_to_raw_data.get(LE));
        let size = u64::from(section.size_of_raw_data.get(LE));
        if size > 0 && offset + size > file_len as u64 {
            return Err(Failure::new(
                "PE format",
                format!(
                    "section {} has raw data at {offset:#x}..{:#x}, beyond the end of the file ({file_len:#x} bytes)",
                    String::from_utf8_lossy(section.raw_name()),
                    offset + size
                ),
            ));
        }
    }
    Ok(())
}

/// The parts of a parsed image the facts are read from.
struct Reader<'data> {
    data: &'data [u8],
    sections: object::read::pe::SectionTable<'data>,
    directories: object::read::pe::DataDirectories<'data>,
}

/// A `PE format` failure about `what`.
fn malformed(what: &'static str) -> impl Fn(object::read::Error) -> Failure {
    move |e| Failure::new("PE format", format!("{what}: {e}"))
}

impl Reader<'_> {
    fn sections(&self) -> Vec<Section> {
        self.sections
            .iter()
            .map(|s| Section {
                name: String::from_utf8_lossy(s.raw_name()).into_owned(),
                address: s.virtual_address.get(LE),
                size: s.virtual_size.get(LE),
                characteristics: s.characteristics.get(LE),
            })
            .collect()
    }

    fn imports(&self) -> Result<Vec<(String, Vec<String>)>, Failure> {
        let bad = malformed("import directory");
        let mut imports = Vec::new();
        let Some(table) = self
            .directories
            .import_table(self.data, &self.sections)
            .map_err(&bad)?
        else {
            return Ok(imports);
        };
        let mut descriptors = table.descriptors().map_err(&bad)?;
        while let Some(descriptor) = descriptors.next().map_err(&bad)? {
            let dll = table.name(descriptor.name.get(LE)).map_err(&bad)?;
            let first = match descriptor.original_first_thunk.get(LE) {
                0 => descriptor.first_thunk.get(LE),
                lookup => lookup,
            };
            let mut thunks = table.thunks(first).map_err(&bad)?;
            let mut names = Vec::new();
            while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>().map_err(&bad)? {
                let import = table.import::<pe::ImageNtHeaders64>(thunk).map_err(|e| {
                    Failure::new(
                        "PE format",
                        format!(
                            "import directory: thunk {:#x} of {} cannot be read: {e}",
                            thunk.raw(),
                            String::from_utf8_lossy(dll)
                        ),
                    )
                })?;
                names.push(import_name(&import));
            }
            imports.push((String::from_utf8_lossy(dll).into_owned(), names));
        }
        Ok(imports)
    }

    fn delay_imports(&self) -> Result<Vec<String>, Failure> {
        let bad = malformed("delay-load import directory");
        let mut dlls = Vec::new();
        let Some(table) = self
            .directories
            .delay_load_import_table(self.data, &self.sections)
            .map_err(&bad)?
        else {
            return Ok(dlls);
        };
        let mut descriptors = table.descriptors().map_err(&bad)?;
        while let Some(descriptor) = descriptors.next().map_err(&bad)? {
            let dll = table.name(descriptor.dll_name_rva.get(LE)).map_err(&bad)?;
            dlls.push(String::from_utf8_lossy(dll).into_owned());
        }
        Ok(dlls)
    }

    fn exports(&self) -> Result<Vec<String>, Failure> {
        let bad = malformed("export directory");
        let Some(table) = self
            .directories
            .export_table(self.data, &self.sections)
            .map_err(&bad)?
        else {
            return Ok(Vec::new());
        };
        Ok(table
            .exports()
            .map_err(&bad)?
            .iter()
            .map(|export| match export.name {
                Some(name) => String::from_utf8_lossy(name).into_owned(),
                None => format!("#{}", export.ordinal),
            })
            .collect())
    }

    fn relocation_types(&self) -> Result<Vec<u16>, Failure> {
        let bad = malformed("base relocation directory");
        let mut types = Vec::new();
        if let Some(mut blocks) = self
            .directories
            .relocation_blocks(self.data, &self.sections)
            .map_err(&bad)?
        {
            while let Some(block) = blocks.next().map_err(&bad)? {
                types.extend(block.map(|relocation| relocation.typ));
            }
        }
        Ok(types)
    }

    /// `BeginAddress` of every `RUNTIME_FUNCTION` (x64: `BeginAddress`, `EndAddress`,
    /// `UnwindInfoAddress`; ARM64: `BeginAddress`, `UnwindData`).
    fn function_starts(&self, machine: u16) -> Result<Option<Vec<u32>>, Failure> {
        let Some(directory) = self.directories.get(pe::IMAGE_DIRECTORY_ENTRY_EXCEPTION) else {
            return Ok(None);
        };
        let bytes = directory
            .data(self.data, &self.sections)
            .map_err(malformed("exception directory"))?;
        let stride = if machine == pe::IMAGE_FILE_MACHINE_AMD64 {
            12
        } else {
            8
        };
        Ok(Some(
            bytes
                .chunks_exact(stride)
                .map(|entry| u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]))
                .collect(),
        ))
    }
}

fn import_name(import: &Import<'_>) -> String {
    match import {
        Import::Name(_, name) => String::from_utf8_lossy(name).into_owned(),
        Import::Ordinal(ordinal) => format!("#{ordinal}"),
    }
}

/// File offset of the optional header's `CheckSum`: NT headers + signature (4) + file
/// header (20) + 64, the same for PE32 and PE32+.
fn checksum_offset(file: &PeFile64<'_>) -> usize {
    file.dos_header().nt_headers_offset() as usize + 4 + 20 + 64
}

/// The standard PE checksum of `data`, the 4 bytes at `checksum_offset` counted as zero;
/// `None` when the file ends before them.
#[must_use]
pub fn pe_checksum(data: &[u8], checksum_offset: usize) -> Option<u32> {
    if data.len() < checksum_offset + 4 {
        return None;
    }
    let mut sum: u32 = 0;
    for (index, chunk) in data.chunks(2).enumerate() {
        let offset = index * 2;
        if offset == checksum_offset || offset == checksum_offset + 2 {
            continue;
        }
        let word = match *chunk {
            [low, high] => u16::from_le_bytes([low, high]),
            [low] => u16::from(low),
            _ => 0,
        };
        sum += u32::from(word);
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum = (sum & 0xFFFF) + (sum >> 16);
    // The image size is at most 4 GiB by the PE format's own limits.
    #[allow(clippy::cast_possible_truncation)]
    Some(sum.wrapping_add(data.len() as u32))
}

/// Reads an MSVC-style linker map (`/MAP`): the preferred load address, the link timestamp
/// and `DriverEntry`'s `Rva+Base`.
///
/// # Errors
/// A message when the load address or `DriverEntry` is missing or malformed.
pub fn parse_map(text: &str) -> Result<MapInfo, String> {
    let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|e| format!("bad number {s:?}: {e}"));
    let mut base = None;
    let mut timestamp = None;
    let mut driver_entry = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Preferred load address is ") {
            base = Some(hex(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("Timestamp is ") {
            let value = rest.split_whitespace().next().unwrap_or_default();
            timestamp = Some(
                u32::try_from(hex(value)?).map_err(|_| format!("timestamp {value} too large"))?,
            );
        } else {
            // Publics: `SSSS:OOOOOOOO  name  Rva+Base  Lib:Object`.
            let mut tokens = line.split_whitespace();
            if let (Some(address), Some("DriverEntry"), Some(rva_base)) =
                (tokens.next(), tokens.next(), tokens.next())
                && address.contains(':')
            {
                driver_entry = Some(hex(rva_base)?);
            }
        }
    }
    let base = base.ok_or("no \"Preferred load address\" line")?;
    let absolute = driver_entry.ok_or("no public symbol DriverEntry")?;
    let rva = absolute
        .checked_sub(base)
        .and_then(|rva| u32::try_from(rva).ok())
        .ok_or_else(|| format!("DriverEntry at {absolute:#x} is not above the base {base:#x}"))?;
    Ok(MapInfo {
        timestamp,
        driver_entry: rva,
    })
}

/// Runs the checks after `PE format` and `PE32+` on `facts`.
#[must_use]
pub fn check(facts: &Facts, machine: Option<u16>, map: &MapCheck) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut fail =
        |check: &'static str, message: String| failures.push(Failure::new(check, message));
    check_headers(facts, machine, &mut fail);
    check_entry(facts, map, &mut fail);
    check_linkage(facts, &mut fail);
    check_relocations(facts, &mut fail);
    failures
}

/// `machine`, `subsystem`, `checksum`, `TLS`.
fn check_headers(facts: &Facts, machine: Option<u16>, fail: &mut impl FnMut(&'static str, String)) {
    let known = [pe::IMAGE_FILE_MACHINE_AMD64, pe::IMAGE_FILE_MACHINE_ARM64];
    if !known.contains(&facts.machine) {
        fail(
            "machine",
            format!(
                "{} is neither AMD64 (0x8664) nor ARM64 (0xAA64)",
                machine_name(facts.machine)
            ),
        );
    } else if let Some(expected) = machine.filter(|&m| m != facts.machine) {
        fail(
            "machine",
            format!(
                "{}, expected {}",
                machine_name(facts.machine),
                machine_name(expected)
            ),
        );
    }

    if facts.subsystem != pe::IMAGE_SUBSYSTEM_NATIVE {
        fail(
            "subsystem",
            format!(
                "{} ({}), expected NATIVE (1)",
                subsystem_name(facts.subsystem),
                facts.subsystem
            ),
        );
    }

    if facts.checksum == 0 {
        fail("checksum", "CheckSum is 0 (link with /RELEASE)".into());
    } else if facts.checksum != facts.computed_checksum {
        fail(
            "checksum",
            format!(
                "CheckSum {:#010x} in the header, {:#010x} computed",
                facts.checksum, facts.computed_checksum
            ),
        );
    }

    if facts.tls {
        fail("TLS", "the image has a TLS directory".into());
    }
}

/// `entry point`.
fn check_entry(facts: &Facts, map: &MapCheck, fail: &mut impl FnMut(&'static str, String)) {
    let entry = facts.entry;
    match facts.sections.iter().find(|s| s.contains(entry)) {
        _ if entry == 0 => fail("entry point", "AddressOfEntryPoint is 0".into()),
        Some(section) if !section.is_executable() => fail(
            "entry point",
            format!(
                "RVA {entry:#x} is in {}, which is not executable",
                section.name
            ),
        ),
        Some(_) => {}
        None => fail(
            "entry point",
            format!("RVA {entry:#x} is outside every section"),
        ),
    }
    if let Some(starts) = &facts.function_starts
        && entry != 0
        && !starts.contains(&entry)
    {
        fail(
            "entry point",
            format!("RVA {entry:#x} is not the start of a function in the exception directory"),
        );
    }
    match map {
        MapCheck::Map(info) => {
            if let Some(stamp) = info.timestamp.filter(|&t| t != facts.timestamp) {
                fail(
                    "entry point",
                    format!(
                        "the linker map is from another link (timestamp {stamp:#010x}, image {:#010x})",
                        facts.timestamp
                    ),
                );
            } else if info.driver_entry != entry {
                fail(
                    "entry point",
                    format!(
                        "AddressOfEntryPoint {entry:#x} is not DriverEntry (RVA {:#x} in the linker map)",
                        info.driver_entry
                    ),
                );
            }
        }
        MapCheck::Unusable(message) => fail("entry point", message.clone()),
        MapCheck::Skip => {}
    }
}

/// `imports`, `exports`.
fn check_linkage(facts: &Facts, fail: &mut impl FnMut(&'static str, String)) {
    let foreign: Vec<&str> = facts
        .imports
        .iter()
        .map(|(dll, _)| dll.as_str())
        .chain(facts.delay_imports.iter().map(String::as_str))
        .filter(|dll| {
            !ALLOWED_DLLS
                .iter()
                .any(|allowed| dll.eq_ignore_ascii_case(allowed))
        })
        .collect();
    if !foreign.is_empty() {
        fail(
            "imports",
            format!(
                "imports from {} (only {} are allowed)",
                foreign.join(", "),
                ALLOWED_DLLS.join(" and ")
            ),
        );
    }
    let too_new: Vec<String> = facts
        .imports
        .iter()
        .flat_map(|(_, names)| names)
        .filter_map(|name| match first_build(name) {
            Some(build) if build <= MINIMUM_WINDOWS_BUILD => None,
            Some(build) => Some(format!("{name} (from build {build})")),
            None => Some(format!("{name} (not in the table of known routines)")),
        })
        .collect();
    if !too_new.is_empty() {
        fail(
            "minimum Windows",
            format!(
                "imports {} but the INF declares Windows 10 build {MINIMUM_WINDOWS_BUILD}: resolve newer routines at run time",
                too_new.join(", ")
            ),
        );
    }
    if !facts.delay_imports.is_empty() {
        fail(
            "imports",
            format!(
                "delay-load imports from {} (kernel images bind every import at load)",
                facts.delay_imports.join(", ")
            ),
        );
    }

    let helpers: Vec<&str> = facts
        .exports
        .iter()
        .map(String::as_str)
        .filter(|name| is_runtime_helper(name))
        .collect();
    if !helpers.is_empty() {
        fail(
            "exports",
            format!(
                "exports run-time helpers: {} (link as a [[bin]], not a cdylib)",
                helpers.join(", ")
            ),
        );
    }
}

/// `relocations`.
fn check_relocations(facts: &Facts, fail: &mut impl FnMut(&'static str, String)) {
    let relocations = facts
        .relocation_types
        .iter()
        .filter(|&&t| t != pe::IMAGE_REL_BASED_ABSOLUTE)
        .count();
    let other: Vec<u16> = facts
        .relocation_types
        .iter()
        .copied()
        .filter(|&t| t != pe::IMAGE_REL_BASED_ABSOLUTE && t != pe::IMAGE_REL_BASED_DIR64)
        .collect();
    if !facts.sections.iter().any(|s| s.name == ".reloc") {
        fail("relocations", "no .reloc section".into());
    }
    if !facts.relocation_directory || relocations == 0 {
        fail(
            "relocations",
            "no base relocation (the loader cannot move the image; keep an absolute address in data)".into(),
        );
    }
    if let Some(first) = other.first() {
        fail(
            "relocations",
            format!(
                "{} relocation(s) of type {first} (only DIR64 expected in a 64-bit image)",
                other.len()
            ),
        );
    }
}

fn is_runtime_helper(name: &str) -> bool {
    RUNTIME_HELPERS.contains(&name) || RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn machine_name(machine: u16) -> String {
    match machine {
        pe::IMAGE_FILE_MACHINE_AMD64 => "AMD64 (0x8664)".into(),
        pe::IMAGE_FILE_MACHINE_ARM64 => "ARM64 (0xAA64)".into(),
        pe::IMAGE_FILE_MACHINE_I386 => "I386 (0x14C)".into(),
        other => format!("machine {other:#06X}"),
    }
}

fn subsystem_name(subsystem: u16) -> &'static str {
    match subsystem {
        pe::IMAGE_SUBSYSTEM_NATIVE => "NATIVE",
        pe::IMAGE_SUBSYSTEM_WINDOWS_GUI => "WINDOWS_GUI",
        pe::IMAGE_SUBSYSTEM_WINDOWS_CUI => "WINDOWS_CUI",
        pe::IMAGE_SUBSYSTEM_EFI_BOOT_SERVICE_DRIVER => "EFI_BOOT_SERVICE_DRIVER",
        _ => "other",
    }
}

/// The human-readable report of `verify`.
#[must_use]
pub fn render(path: &Path, report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "verify {}", path.display());
    if let Some(facts) = &report.facts {
        for (check, text) in describe(facts, report.map) {
            let _ = writeln!(out, "  {:<4} {check:<12} {text}", report.status(check));
        }
    }
    if report.passed() {
        let _ = writeln!(out, "  all checks passed");
    }
    for failure in &report.failures {
        let _ = writeln!(out, "  FAIL {failure}");
    }
    out
}

/// One line per check (and one for the sections): what the image has.
fn describe(facts: &Facts, map: Option<MapInfo>) -> Vec<(&'static str, String)> {
    let or_none = |items: Vec<String>, separator: &str| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(separator)
        }
    };
    let entry_section = facts
        .sections
        .iter()
        .find(|s| s.contains(facts.entry))
        .map_or("no section", |s| s.name.as_str());
    let map = map.map_or_else(
        || "no linker map".to_string(),
        |m| format!("DriverEntry at RVA {:#x} in the linker map", m.driver_entry),
    );
    let padding = facts
        .relocation_types
        .iter()
        .filter(|&&t| t == pe::IMAGE_REL_BASED_ABSOLUTE)
        .count();
    let has_reloc = facts.sections.iter().any(|s| s.name == ".reloc");
    vec![
        (
            "PE format",
            format!(
                "{} bytes, {} sections, ImageBase {:#x}",
                facts.size,
                facts.sections.len(),
                facts.image_base
            ),
        ),
        ("PE32+", "optional header magic 0x20B".into()),
        ("machine", machine_name(facts.machine)),
        (
            "subsystem",
            format!(
                "{} ({}), version {}.{}; DllCharacteristics {:#06x}, Characteristics {:#06x}",
                subsystem_name(facts.subsystem),
                facts.subsystem,
                facts.subsystem_version.0,
                facts.subsystem_version.1,
                facts.dll_characteristics,
                facts.characteristics
            ),
        ),
        (
            "entry point",
            format!("RVA {:#x} in {entry_section}; {map}", facts.entry),
        ),
        (
            "imports",
            or_none(
                facts
                    .imports
                    .iter()
                    .map(|(dll, names)| format!("{dll}: {}", names.join(", ")))
                    .chain(
                        facts
                            .delay_imports
                            .iter()
                            .map(|dll| format!("{dll} (delay-load)")),
                    )
                    .collect(),
                "; ",
            ),
        ),
        ("exports", or_none(facts.exports.clone(), ", ")),
        (
            "relocations",
            format!(
                "{} relocation(s) (+{padding} padding), .reloc {}",
                facts.relocation_types.len() - padding,
                if has_reloc { "present" } else { "absent" }
            ),
        ),
        (
            "checksum",
            format!(
                "{:#010x} (computed {:#010x})",
                facts.checksum, facts.computed_checksum
            ),
        ),
        ("TLS", if facts.tls { "present" } else { "none" }.into()),
        (
            "sections",
            facts
                .sections
                .iter()
                .map(|s| format!("{} {:#x}+{:#x}", s.name, s.address, s.size))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::driver::{self, ARCHES, Version};

    /// A good x64 v1 image and its map, built once per test process into a target and output
    /// directory of the tests' own (so that `cargo xtask build-driver`'s are left alone).
    fn good() -> &'static (Vec<u8>, String) {
        static GOOD: OnceLock<(Vec<u8>, String)> = OnceLock::new();
        GOOD.get_or_init(|| {
            let root = crate::workspace_root();
            let target_dir = driver::target_dir(&root).with_file_name("sample-wdm-xtask-test");
            let out = target_dir.join("drivers");
            let image = driver::build_one(&root, &target_dir, &out, ARCHES[0], Version::V1)
                .expect("building the x64 v1 image for the verify tests");
            (
                std::fs::read(&image.path).unwrap(),
                std::fs::read_to_string(&image.map).unwrap(),
            )
        })
    }

    fn run(data: &[u8], map: &str) -> Report {
        verify_bytes(
            data,
            Some(pe::IMAGE_FILE_MACHINE_AMD64),
            &MapCheck::Map(parse_map(map).unwrap()),
        )
    }

    fn failed_checks(report: &Report) -> Vec<&'static str> {
        report.failures.iter().map(|f| f.check).collect()
    }

    /// Offset of the optional header.
    fn optional(data: &[u8]) -> usize {
        u32::from_le_bytes(data[0x3C..0x40].try_into().unwrap()) as usize + 24
    }

    fn put_u16(data: &mut [u8], offset: usize, value: u16) {
        data[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u32(data: &mut [u8], offset: usize, value: u32) {
        data[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Rewrites the `CheckSum` so that a patch is the only thing wrong.
    fn fix_checksum(data: &mut [u8]) {
        let offset = optional(data) + 64;
        let sum = pe_checksum(data, offset).unwrap();
        put_u32(data, offset, sum);
    }

    /// `data` with `patch` applied and the checksum recomputed.
    fn patched(patch: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut data = good().0.clone();
        patch(&mut data);
        fix_checksum(&mut data);
        data
    }

    #[test]
    fn a_built_image_passes_every_check() {
        let (data, map) = good();
        let report = run(data, map);
        assert!(report.passed(), "{}", render(Path::new("good"), &report));
        let facts = report.facts.unwrap();
        assert_eq!(facts.entry, parse_map(map).unwrap().driver_entry);
        assert_eq!(facts.imports.len(), 1);
        assert!(facts.imports[0].0.eq_ignore_ascii_case("ntoskrnl.exe"));
        assert!(facts.imports[0].1.iter().any(|n| n == "IoCreateDevice"));
        assert!(facts.exports.is_empty());
        // Recomputing the checksum of an unmodified image changes nothing.
        assert_eq!(&patched(|_| {}), data);
    }

    #[test]
    fn a_wrong_checksum_is_named() {
        let mut data = good().0.clone();
        let offset = optional(&data) + 64;
        data[offset] ^= 0x01;
        assert_eq!(failed_checks(&run(&data, &good().1)), ["checksum"]);
        put_u32(&mut data, offset, 0);
        let report = run(&data, &good().1);
        assert_eq!(failed_checks(&report), ["checksum"]);
        assert!(report.failures[0].message.contains("/RELEASE"));
    }

    #[test]
    fn a_changed_byte_anywhere_breaks_the_checksum() {
        let mut data = good().0.clone();
        let last = data.len() - 1;
        data[last] ^= 0x80;
        assert_eq!(failed_checks(&run(&data, &good().1)), ["checksum"]);
    }

    #[test]
    fn a_gui_subsystem_is_refused() {
        let data = patched(|d| {
            let offset = optional(d) + 68;
            put_u16(d, offset, pe::IMAGE_SUBSYSTEM_WINDOWS_GUI);
        });
        let report = run(&data, &good().1);
        assert_eq!(failed_checks(&report), ["subsystem"]);
        assert!(report.failures[0].message.contains("WINDOWS_GUI"));
    }

    #[test]
    fn non_pe_and_pe32_files_are_refused() {
        let report = verify_bytes(b"#!/bin/sh\necho not a driver\n", None, &MapCheck::Skip);
        assert_eq!(failed_checks(&report), ["PE format"]);
        let truncated = &good().0[..0x100];
        assert_eq!(
            failed_checks(&verify_bytes(truncated, None, &MapCheck::Skip)),
            ["PE format"]
        );
        let pe32 = patched(|d| {
            let offset = optional(d);
            put_u16(d, offset, pe::IMAGE_NT_OPTIONAL_HDR32_MAGIC);
        });
        let report = verify_bytes(&pe32, None, &MapCheck::Skip);
        assert_eq!(failed_checks(&report), ["PE32+"]);
        assert!(report.failures[0].message.contains("PE32 "));
    }

    #[test]
    fn the_wrong_machine_is_refused() {
        let i386 = patched(|d| {
            let offset = optional(d) - 20;
            put_u16(d, offset, pe::IMAGE_FILE_MACHINE_I386);
        });
        assert_eq!(failed_checks(&run(&i386, &good().1)), ["machine"]);
        // An ARM64 image is fine in itself, but not where AMD64 is asked for.
        let report = verify_bytes(
            &good().0,
            Some(pe::IMAGE_FILE_MACHINE_ARM64),
            &MapCheck::Map(parse_map(&good().1).unwrap()),
        );
        assert_eq!(failed_checks(&report), ["machine"]);
        assert!(report.failures[0].message.contains("expected ARM64"));
    }

    #[test]
    fn an_entry_point_other_than_driver_entry_is_refused() {
        let (data, map) = good();
        let entry = parse_map(map).unwrap().driver_entry;
        let moved = patched(|d| {
            let offset = optional(d) + 16;
            put_u32(d, offset, entry + 1);
        });
        let report = run(&moved, map);
        assert_eq!(failed_checks(&report), ["entry point", "entry point"]);
        assert!(
            report
                .failures
                .iter()
                .any(|f| f.message.contains("not DriverEntry"))
        );
        // A map of another link is not trusted.
        let stamp = parse_map(map).unwrap().timestamp.unwrap();
        let stale = map.replace(
            &format!("Timestamp is {stamp:08x}"),
            &format!("Timestamp is {:08x}", stamp ^ 1),
        );
        let report = run(data, &stale);
        assert_eq!(failed_checks(&report), ["entry point"]);
        assert!(report.failures[0].message.contains("another link"));
        // No map: refused unless the map is skipped explicitly.
        let report = verify_bytes(data, None, &MapCheck::Unusable("no map".into()));
        assert_eq!(failed_checks(&report), ["entry point"]);
        assert!(verify_bytes(data, None, &MapCheck::Skip).passed());
    }

    #[test]
    fn an_import_from_another_dll_is_named() {
        let data = patched(|d| {
            let name = b"ntoskrnl.exe\0";
            let at = d
                .windows(name.len())
                .position(|w| w.eq_ignore_ascii_case(name))
                .unwrap();
            d[at..at + name.len()].copy_from_slice(b"kernel32.dll\0");
        });
        let report = run(&data, &good().1);
        assert_eq!(failed_checks(&report), ["imports"]);
        assert!(report.failures[0].message.contains("kernel32.dll"));
    }

    /// Renames the import `from` to `to` (not longer) in the image's hint/name table.
    fn renamed_import(from: &str, to: &str) -> Vec<u8> {
        patched(|d| {
            let mut name = from.as_bytes().to_vec();
            name.push(0);
            let at = d.windows(name.len()).position(|w| w == name).unwrap();
            let mut new = to.as_bytes().to_vec();
            new.resize(name.len(), 0);
            d[at..at + name.len()].copy_from_slice(&new);
        })
    }

    #[test]
    fn the_minimum_windows_build_is_the_one_every_inx_declares() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for inx in ["inf/hotswap_sample.inx", "sample/kmdf/hotswap_sample.inx"] {
            let Ok(text) = std::fs::read_to_string(root.join(inx)) else {
                continue;
            };
            let declared = format!("NT$ARCH$.10.0...{MINIMUM_WINDOWS_BUILD}");
            assert!(
                text.contains(&declared),
                "{inx} does not declare {declared}"
            );
            // Every decorated model section or manufacturer entry names the same build.
            assert_eq!(
                text.matches("NT$ARCH$.10.0...").count(),
                text.matches(&declared).count(),
                "{inx} declares another minimum somewhere"
            );
        }
        assert!(root.join("inf/hotswap_sample.inx").exists());
    }

    #[test]
    fn an_import_newer_than_the_declared_minimum_windows_is_named() {
        let report = run(
            &renamed_import("IoDeleteSymbolicLink", "ExAllocatePool2"),
            &good().1,
        );
        assert_eq!(failed_checks(&report), ["minimum Windows"]);
        assert!(
            report.failures[0]
                .message
                .contains("ExAllocatePool2 (from build 19041)"),
            "{}",
            report.failures[0].message
        );
        let report = run(
            &renamed_import("IoDeleteSymbolicLink", "IoUnknownRoutine"),
            &good().1,
        );
        assert_eq!(failed_checks(&report), ["minimum Windows"]);
        assert!(
            report.failures[0]
                .message
                .contains("IoUnknownRoutine (not in the table")
        );
    }

    /// The file offset of section `name`'s header.
    fn section_header(d: &[u8], name: &[u8]) -> usize {
        let mut padded = name.to_vec();
        padded.resize(8, 0);
        d.windows(8).position(|w| w == padded.as_slice()).unwrap()
    }

    #[test]
    fn a_section_whose_raw_data_lies_beyond_the_end_of_the_file_is_refused() {
        let data = patched(|d| {
            // The code section: no other check reads its bytes.
            let header = section_header(d, b".text");
            let len = u32::try_from(d.len()).unwrap();
            put_u32(d, header + 20, len - 0x10); // PointerToRawData: its data runs past the end
        });
        let report = run(&data, &good().1);
        assert_eq!(failed_checks(&report), ["PE format"]);
        assert!(
            report.failures[0]
                .message
                .contains("beyond the end of the file"),
            "{}",
            report.failures[0].message
        );
    }

    /// The file offset of RVA `rva` in `data`.
    fn file_offset(data: &[u8], rva: u32) -> usize {
        let file = PeFile64::parse(data).unwrap();
        let section = file
            .section_table()
            .iter()
            .find(|s| {
                let start = s.virtual_address.get(LE);
                (start..start + s.size_of_raw_data.get(LE)).contains(&rva)
            })
            .unwrap();
        (section.pointer_to_raw_data.get(LE) + rva - section.virtual_address.get(LE)) as usize
    }

    #[test]
    fn an_import_thunk_that_cannot_be_read_is_refused() {
        let data = patched(|d| {
            // The first thunk of the first import descriptor's lookup table names a hint/name
            // entry far outside the image.
            let directory = optional(d) + 112 + 8 * pe::IMAGE_DIRECTORY_ENTRY_IMPORT;
            let descriptors = u32::from_le_bytes(d[directory..directory + 4].try_into().unwrap());
            let descriptor = file_offset(d, descriptors);
            let mut lookup = u32::from_le_bytes(d[descriptor..descriptor + 4].try_into().unwrap());
            if lookup == 0 {
                lookup =
                    u32::from_le_bytes(d[descriptor + 16..descriptor + 20].try_into().unwrap());
            }
            let thunk = file_offset(d, lookup);
            d[thunk..thunk + 8].copy_from_slice(&0x7FFF_0000u64.to_le_bytes());
        });
        let report = run(&data, &good().1);
        assert_eq!(failed_checks(&report), ["PE format"]);
        assert!(
            report.failures[0].message.contains("thunk 0x7fff0000")
                && report.failures[0].message.contains("cannot be read"),
            "{}",
            report.failures[0].message
        );
    }

    #[test]
    fn missing_relocations_and_a_tls_directory_are_refused() {
        // Data directory 5 (base relocations) emptied.
        let data = patched(|d| {
            let offset = optional(d) + 112 + 8 * pe::IMAGE_DIRECTORY_ENTRY_BASERELOC;
            put_u32(d, offset, 0);
            put_u32(d, offset + 4, 0);
        });
        assert_eq!(failed_checks(&run(&data, &good().1)), ["relocations"]);
        // Data directory 9 (TLS) pointing somewhere.
        let data = patched(|d| {
            let offset = optional(d) + 112 + 8 * pe::IMAGE_DIRECTORY_ENTRY_TLS;
            put_u32(d, offset, 0x1000);
            put_u32(d, offset + 4, 0x28);
        });
        assert_eq!(failed_checks(&run(&data, &good().1)), ["TLS"]);
    }

    #[test]
    fn exported_runtime_helpers_are_named() {
        let mut facts = read_facts(&good().0).unwrap();
        let map = MapCheck::Map(parse_map(&good().1).unwrap());
        facts.exports = vec!["DriverEntry".into()];
        assert!(
            check(&facts, None, &map).is_empty(),
            "DriverEntry may be exported"
        );
        facts.exports = vec!["DriverEntry".into(), "memcpy".into(), "__rust_alloc".into()];
        let failures = check(&facts, None, &map);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].check, "exports");
        assert!(failures[0].message.contains("memcpy, __rust_alloc"));
    }

    #[test]
    fn the_checksum_matches_the_linker_and_handles_odd_lengths() {
        // The linker's own CheckSum (/RELEASE) is what this computes.
        let facts = read_facts(&good().0).unwrap();
        assert_eq!(facts.checksum, facts.computed_checksum);
        // Odd length: the last byte counts as a zero-extended word.
        let sum = pe_checksum(&[1, 2, 3, 4, 0, 0, 0, 0, 5], 2).unwrap();
        assert_eq!(sum, 0x0201 + 5 + 9);
        // Carries fold back into 16 bits.
        let sum = pe_checksum(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 2, 0], 4).unwrap();
        // 0xFFFF + 0xFFFF = 0x1FFFE -> 0xFFFF; + 2 = 0x10001 -> 0x0002; + length 10.
        assert_eq!(sum, 2 + 10);
    }

    #[test]
    fn map_parsing_finds_driver_entry() {
        let map = " t\n\n Timestamp is 6b080860 (Thu)\n\n Preferred load address is 0000000140000000\n\n  Address  Publics by Value  Rva+Base  Lib:Object\n\n 0001:00000030       DriverEntry                0000000140001030     x.o\n entry point at 0001:00000030\n";
        assert_eq!(
            parse_map(map),
            Ok(MapInfo {
                timestamp: Some(0x6b08_0860),
                driver_entry: 0x1030
            })
        );
        assert!(parse_map("Preferred load address is 0000000140000000\n").is_err());
        assert!(parse_map(" 0001:00000030 DriverEntry 0000000140001030 x.o\n").is_err());
    }
}
