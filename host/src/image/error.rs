//! [`LoadError`]: every reason the loader refuses an image, each naming exactly what is
//! wrong (which field, which section, which import of which DLL, which offset).

use core::fmt;

/// Why an image could not be loaded.
///
/// Every variant is a property of the input (or of the host) that the loader checked before
/// running anything; the image is never partly loaded: on error nothing stays mapped.
/// `Display` gives a one-line explanation meant for a human reading a test failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The host cannot run driver images at all (not x86-64 Linux).
    UnsupportedHost {
        /// `std::env::consts::ARCH` of the host.
        arch: &'static str,
        /// `std::env::consts::OS` of the host.
        os: &'static str,
    },
    /// The file is not a well-formed PE image: `what` names the structure being read, `detail`
    /// is the parser's reason (file too short, offset outside the file, bad magic, ...).
    Malformed {
        /// The structure being read (for example "NT headers" or "import directory").
        what: &'static str,
        /// Why it could not be read.
        detail: String,
        /// Length of the file in bytes.
        file_len: usize,
    },
    /// The optional header is not PE32+ (magic 0x20B).
    NotPe32Plus {
        /// The optional header magic found.
        magic: u16,
    },
    /// The image is for another machine than x86-64.
    Machine {
        /// `IMAGE_FILE_HEADER::Machine`.
        machine: u16,
    },
    /// `SectionAlignment` is zero or not a multiple of the host page size, so sections
    /// cannot get their own page protections.
    SectionAlignment {
        /// `SectionAlignment` from the optional header.
        alignment: u32,
        /// The host page size.
        page_size: usize,
    },
    /// `SizeOfImage` is zero or larger than the loader accepts.
    SizeOfImage {
        /// `SizeOfImage` from the optional header.
        size: u32,
        /// The largest size accepted.
        limit: usize,
    },
    /// `SizeOfHeaders` is zero, beyond the end of the file, or beyond `SizeOfImage`.
    SizeOfHeaders {
        /// `SizeOfHeaders` from the optional header.
        size: u32,
        /// Length of the file in bytes.
        file_len: usize,
        /// `SizeOfImage` from the optional header.
        size_of_image: u32,
    },
    /// A section's `VirtualAddress` is not a multiple of `SectionAlignment`.
    SectionMisaligned {
        /// The section name.
        section: String,
        /// Its RVA.
        rva: u32,
        /// `SectionAlignment`.
        alignment: u32,
    },
    /// A section's memory range ends beyond `SizeOfImage`.
    SectionOutsideImage {
        /// The section name.
        section: String,
        /// First RVA of the section.
        start: u32,
        /// RVA one past its last byte.
        end: u64,
        /// `SizeOfImage`.
        size_of_image: u32,
    },
    /// Two sections (or the headers and a section) share memory, or sections are out of
    /// order, at page granularity.
    SectionsOverlap {
        /// The earlier section (or "headers").
        first: String,
        /// RVA one past the end of `first`, rounded up to a page.
        first_end: u64,
        /// The later section.
        second: String,
        /// First RVA of `second`.
        second_start: u32,
    },
    /// A section's raw data (`PointerToRawData` .. + `SizeOfRawData`) is not inside the file.
    SectionDataOutsideFile {
        /// The section name.
        section: String,
        /// `PointerToRawData`.
        offset: u32,
        /// `SizeOfRawData`.
        size: u32,
        /// Length of the file in bytes.
        file_len: usize,
    },
    /// A section is both writable and executable; the loader keeps W^X and refuses it.
    WritableAndExecutable {
        /// The section name.
        section: String,
        /// Its characteristics.
        characteristics: u32,
    },
    /// `AddressOfEntryPoint` is not inside an executable section.
    EntryPoint {
        /// `AddressOfEntryPoint`.
        rva: u32,
    },
    /// The image has a TLS directory: kernel drivers cannot have one, and the host does not
    /// run TLS callbacks.
    TlsDirectory {
        /// RVA of the directory.
        rva: u32,
        /// Its size.
        size: u32,
    },
    /// The image has a delay-load import directory: the host binds every import at load
    /// time and has no delay-load helper.
    DelayLoadImports {
        /// RVA of the directory.
        rva: u32,
        /// Its size.
        size: u32,
    },
    /// A base relocation of a type other than `DIR64` (and `ABSOLUTE` padding).
    RelocationType {
        /// The `IMAGE_REL_BASED_*` type.
        kind: u16,
        /// RVA the relocation applies to.
        rva: u32,
    },
    /// A base relocation whose 8 bytes are not inside the image.
    RelocationOutsideImage {
        /// RVA the relocation applies to.
        rva: u32,
        /// `SizeOfImage`.
        size_of_image: u32,
    },
    /// A base relocation block names a page outside the image (its `VirtualAddress` is at or
    /// beyond `SizeOfImage`): refused before any of its offsets is added to it, so that a page
    /// near 4 GiB cannot wrap around into the headers.
    RelocationPageOutsideImage {
        /// The block's `VirtualAddress`.
        page: u32,
        /// `SizeOfImage`.
        size_of_image: u32,
    },
    /// The image must be moved but says its relocations were stripped.
    RelocationsStripped {
        /// `ImageBase` (the preferred address).
        preferred: u64,
    },
    /// An import by ordinal: the host binds by name only.
    ImportByOrdinal {
        /// The DLL.
        dll: String,
        /// Index of the import in that DLL's lookup table.
        index: usize,
        /// The ordinal.
        ordinal: u16,
    },
    /// An import name or DLL name that is not printable ASCII.
    ImportName {
        /// The DLL (lossy if it is the DLL name that is bad).
        dll: String,
        /// Index of the import in that DLL's lookup table, `None` for the DLL name itself.
        index: Option<usize>,
        /// The raw name, lossily decoded.
        name: String,
    },
    /// The import callback knows no such routine.
    UnknownImport {
        /// The DLL.
        dll: String,
        /// The routine.
        name: String,
    },
    /// An import address table slot is not inside the image.
    IatOutsideImage {
        /// The DLL.
        dll: String,
        /// The routine.
        name: String,
        /// RVA of the slot.
        rva: u64,
    },
    /// The operating system refused a mapping call.
    Os {
        /// What the loader was doing (for example "mmap of the image").
        what: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
}

/// The conventional name of a PE machine type, if it has one.
#[must_use]
pub fn machine_name(machine: u16) -> Option<&'static str> {
    Some(match machine {
        0x8664 => "AMD64",
        0xAA64 => "ARM64",
        0xA641 => "ARM64EC",
        0xA64E => "ARM64X",
        0x014C => "I386",
        0x01C4 => "ARMNT",
        0x0200 => "IA64",
        _ => return None,
    })
}

/// The conventional name of an `IMAGE_REL_BASED_*` type, if it has one.
fn relocation_name(kind: u16) -> &'static str {
    match kind {
        0 => "ABSOLUTE",
        1 => "HIGH",
        2 => "LOW",
        3 => "HIGHLOW",
        4 => "HIGHADJ",
        5 => "MIPS_JMPADDR/ARM_MOV32",
        7 => "THUMB_MOV32",
        10 => "DIR64",
        _ => "unknown",
    }
}

impl fmt::Display for LoadError {
    #[allow(clippy::too_many_lines)] // one arm per variant, nothing to factor out
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedHost { arch, os } => write!(
                f,
                "loading driver images is not supported on this architecture ({arch}-{os}): \
                 the host kernel runs x86-64 images natively and only on x86-64 Linux"
            ),
            Self::Malformed {
                what,
                detail,
                file_len,
            } => write!(f, "malformed PE image ({file_len} bytes): {what}: {detail}"),
            Self::NotPe32Plus { magic } => write!(
                f,
                "optional header magic {magic:#06X} is not PE32+ (0x020B): only 64-bit images \
                 are supported"
            ),
            Self::Machine { machine } => {
                let name = machine_name(*machine).unwrap_or("unknown");
                write!(
                    f,
                    "machine {name} cannot run on this x86-64 host (IMAGE_FILE_HEADER::Machine \
                     {machine:#06X}; only AMD64 0x8664 images are supported)"
                )
            }
            Self::SectionAlignment {
                alignment,
                page_size,
            } => write!(
                f,
                "SectionAlignment {alignment:#x} is not a non-zero multiple of the page size \
                 {page_size:#x}: sections could not get their own protections"
            ),
            Self::SizeOfImage { size, limit } => write!(
                f,
                "SizeOfImage {size:#x} is zero or larger than the {limit:#x} bytes the loader \
                 accepts"
            ),
            Self::SizeOfHeaders {
                size,
                file_len,
                size_of_image,
            } => write!(
                f,
                "SizeOfHeaders {size:#x} is zero, beyond the end of the file ({file_len:#x} \
                 bytes) or beyond SizeOfImage {size_of_image:#x}"
            ),
            Self::SectionMisaligned {
                section,
                rva,
                alignment,
            } => write!(
                f,
                "section {section} at RVA {rva:#x} is not aligned to SectionAlignment \
                 {alignment:#x}"
            ),
            Self::SectionOutsideImage {
                section,
                start,
                end,
                size_of_image,
            } => write!(
                f,
                "section {section} (RVA {start:#x}..{end:#x}) lies outside the image \
                 (SizeOfImage {size_of_image:#x})"
            ),
            Self::SectionsOverlap {
                first,
                first_end,
                second,
                second_start,
            } => write!(
                f,
                "section {second} at RVA {second_start:#x} overlaps {first} (which ends at \
                 RVA {first_end:#x}, rounded up to a page) or comes before it"
            ),
            Self::SectionDataOutsideFile {
                section,
                offset,
                size,
                file_len,
            } => write!(
                f,
                "section {section}: raw data at file offset {offset:#x} (+{size:#x} bytes) lies \
                 beyond the end of the file ({file_len:#x} bytes): truncated file or bad \
                 PointerToRawData/SizeOfRawData"
            ),
            Self::WritableAndExecutable {
                section,
                characteristics,
            } => write!(
                f,
                "section {section} is both writable and executable (characteristics \
                 {characteristics:#010x}): refused, the loader keeps W^X"
            ),
            Self::EntryPoint { rva } => write!(
                f,
                "AddressOfEntryPoint {rva:#x} is not inside an executable section"
            ),
            Self::TlsDirectory { rva, size } => write!(
                f,
                "the image has a TLS directory (RVA {rva:#x}, size {size:#x}): drivers cannot \
                 use TLS and the host does not run TLS callbacks"
            ),
            Self::DelayLoadImports { rva, size } => write!(
                f,
                "the image has a delay-load import directory (RVA {rva:#x}, size {size:#x}): \
                 the host binds every import at load time and has no delay-load helper"
            ),
            Self::RelocationType { kind, rva } => write!(
                f,
                "base relocation at RVA {rva:#x} has type {kind} ({}): only DIR64 (10) and \
                 ABSOLUTE (0) padding are supported",
                relocation_name(*kind)
            ),
            Self::RelocationPageOutsideImage {
                page,
                size_of_image,
            } => write!(
                f,
                "base relocation block for page RVA {page:#x} lies outside the image \
                 (SizeOfImage {size_of_image:#x})"
            ),
            Self::RelocationOutsideImage { rva, size_of_image } => write!(
                f,
                "base relocation at RVA {rva:#x} patches 8 bytes outside the image (SizeOfImage \
                 {size_of_image:#x})"
            ),
            Self::RelocationsStripped { preferred } => write!(
                f,
                "the image has its relocations stripped (IMAGE_FILE_RELOCS_STRIPPED) and cannot \
                 be moved from its ImageBase {preferred:#x}"
            ),
            Self::ImportByOrdinal {
                dll,
                index,
                ordinal,
            } => write!(
                f,
                "import #{index} of {dll} is by ordinal ({ordinal}): the host binds imports by \
                 name only"
            ),
            Self::ImportName { dll, index, name } => match index {
                Some(index) => write!(
                    f,
                    "import #{index} of {dll} has a name that is not printable ASCII: {name:?}"
                ),
                None => write!(
                    f,
                    "an import descriptor names a DLL that is not printable ASCII: {name:?}"
                ),
            },
            Self::UnknownImport { dll, name } => write!(
                f,
                "unknown import {dll}!{name}: the host kernel does not provide it"
            ),
            Self::IatOutsideImage { dll, name, rva } => write!(
                f,
                "the import address table slot of {dll}!{name} (RVA {rva:#x}) lies outside the \
                 image"
            ),
            Self::Os { what, error } => write!(f, "{what} failed: {error}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_machine_error_names_the_machine_and_the_host() {
        let text = LoadError::Machine { machine: 0xAA64 }.to_string();
        assert!(
            text.contains("machine ARM64 cannot run on this x86-64 host"),
            "{text}"
        );
        let text = LoadError::Machine { machine: 0x1234 }.to_string();
        assert!(
            text.contains("machine unknown") && text.contains("0x1234"),
            "{text}"
        );
    }

    #[test]
    fn relocation_type_error_names_the_type() {
        let text = LoadError::RelocationType {
            kind: 3,
            rva: 0x2008,
        }
        .to_string();
        assert!(
            text.contains("type 3 (HIGHLOW)") && text.contains("0x2008"),
            "{text}"
        );
    }

    #[test]
    fn import_errors_name_the_dll_and_the_routine() {
        let text = LoadError::UnknownImport {
            dll: "ntoskrnl.exe".into(),
            name: "KeBugCheckEx".into(),
        }
        .to_string();
        assert!(text.contains("ntoskrnl.exe!KeBugCheckEx"), "{text}");
        let text = LoadError::ImportByOrdinal {
            dll: "hal.dll".into(),
            index: 2,
            ordinal: 17,
        }
        .to_string();
        assert!(
            text.contains("import #2 of hal.dll is by ordinal (17)"),
            "{text}"
        );
    }
}
