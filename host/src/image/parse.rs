//! Header and section-table validation: turns the bytes of a file into a [`Layout`] (where
//! every byte goes in memory, with which protection) or a [`LoadError`] naming what is wrong.
//! Pure: no mapping, no callbacks.

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};

use super::error::LoadError;
use super::protection::{Protection, page_align_up};
use super::section::Section;

/// The largest `SizeOfImage` accepted: far above any driver (the sample is 32 KiB), low
/// enough that a corrupted field cannot make the loader reserve gigabytes.
pub const MAX_IMAGE_SIZE: usize = 256 << 20;

/// A section to be mapped: where it goes and the bytes to copy there.
pub struct PlannedSection<'data> {
    /// Name, placement and protection.
    pub section: Section,
    /// The bytes copied at its RVA (`min(SizeOfRawData, VirtualSize)` bytes; the rest of the
    /// section is zero).
    pub raw: &'data [u8],
}

/// A validated image: everything the mapper needs, nothing yet mapped.
pub struct Layout<'data> {
    /// The parsed file, for the directory readers.
    pub file: PeFile64<'data>,
    /// `ImageBase`: the address the image was linked for.
    pub preferred_base: u64,
    /// `SizeOfImage` rounded up to a page.
    pub image_len: usize,
    /// `SizeOfImage` as written.
    pub size_of_image: u32,
    /// The headers, copied at RVA 0 (`SizeOfHeaders` bytes).
    pub headers: &'data [u8],
    /// `AddressOfEntryPoint` (inside an executable section).
    pub entry_rva: u32,
    /// The sections, ascending, not sharing pages.
    pub sections: Vec<PlannedSection<'data>>,
    /// `IMAGE_FILE_RELOCS_STRIPPED`: the image cannot be moved.
    pub relocs_stripped: bool,
}

/// The context-adding conversion of the parser's errors.
fn malformed(what: &'static str, file_len: usize) -> impl Fn(object::read::Error) -> LoadError {
    move |error| LoadError::Malformed {
        what,
        detail: error.to_string(),
        file_len,
    }
}

/// The fixed part of the PE32+ optional header, before its data directories.
const OPTIONAL_HEADER_FIXED: usize = 0x70;
/// The most data directories a PE image has.
const MAX_DATA_DIRECTORIES: u32 = 16;

/// Checks the header fields the `object` crate refuses without naming them (its messages say
/// "Invalid PE number of RVA and sizes"), so that the error names the field and its value.
/// Fields the file is too short to hold are left to the parser.
fn check_header_fields(data: &[u8]) -> Result<(), LoadError> {
    let u16_at = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let file_len = data.len();
    let named = |what: &'static str, detail: String| LoadError::Malformed {
        what,
        detail,
        file_len,
    };
    let Some(nt) = u32_at(0x3C).and_then(|nt| usize::try_from(nt).ok()) else {
        return Ok(());
    };
    let file_header = nt + 4;
    let optional = file_header + 20;
    let (Some(sections), Some(optional_size)) = (u16_at(file_header + 2), u16_at(file_header + 16))
    else {
        return Ok(());
    };
    let optional_size = usize::from(optional_size);
    if optional_size < OPTIONAL_HEADER_FIXED {
        return Err(named(
            "file header",
            format!(
                "SizeOfOptionalHeader = {optional_size:#x}: smaller than the fixed part of a PE32+ optional header ({OPTIONAL_HEADER_FIXED:#x} bytes)"
            ),
        ));
    }
    if let Some(directories) = u32_at(optional + 108) {
        let fit = (optional_size - OPTIONAL_HEADER_FIXED) / 8;
        if directories > MAX_DATA_DIRECTORIES || directories as usize > fit {
            return Err(named(
                "optional header",
                format!(
                    "NumberOfRvaAndSizes = {directories}: at most {MAX_DATA_DIRECTORIES} data directories, and {fit} fit in SizeOfOptionalHeader {optional_size:#x}"
                ),
            ));
        }
    }
    let table = optional + optional_size;
    let end = table + 40 * usize::from(sections);
    if end > file_len {
        return Err(named(
            "section table",
            format!(
                "NumberOfSections = {sections}: the section table ({table:#x}..{end:#x}) runs past the end of the file"
            ),
        ));
    }
    Ok(())
}

/// Validates `data` as a PE32+ x86-64 image whose sections can be mapped with per-page
/// protections on a host with pages of `page` bytes.
///
/// # Errors
/// Any [`LoadError`] about the headers, the section table, the entry point, or a TLS or
/// delay-load directory (imports and relocations are read by their own modules).
pub fn parse(data: &[u8], page: usize) -> Result<Layout<'_>, LoadError> {
    let file_len = data.len();
    let magic = object::read::pe::optional_header_magic(data)
        .map_err(malformed("DOS or NT headers", file_len))?;
    if magic != pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC {
        return Err(LoadError::NotPe32Plus { magic });
    }
    check_header_fields(data)?;
    let file = PeFile64::parse(data).map_err(malformed("PE headers", file_len))?;
    let nt = file.nt_headers();
    let machine = nt.file_header().machine.get(LE);
    if machine != pe::IMAGE_FILE_MACHINE_AMD64 {
        return Err(LoadError::Machine { machine });
    }
    let optional = nt.optional_header();

    let alignment = optional.section_alignment();
    if alignment == 0 || usize::try_from(alignment).map_or(true, |a| a % page != 0) {
        return Err(LoadError::SectionAlignment {
            alignment,
            page_size: page,
        });
    }

    let size_of_image = optional.size_of_image();
    let image_len = usize::try_from(size_of_image).unwrap_or(usize::MAX);
    if image_len == 0 || image_len > MAX_IMAGE_SIZE {
        return Err(LoadError::SizeOfImage {
            size: size_of_image,
            limit: MAX_IMAGE_SIZE,
        });
    }
    let image_len = page_align_up(image_len, page);

    let size_of_headers = optional.size_of_headers();
    let headers_len = usize::try_from(size_of_headers).unwrap_or(usize::MAX);
    if headers_len == 0 || headers_len > file_len || size_of_headers > size_of_image {
        return Err(LoadError::SizeOfHeaders {
            size: size_of_headers,
            file_len,
            size_of_image,
        });
    }

    let directories = file.data_directories();
    if let Some(tls) = directories.get(pe::IMAGE_DIRECTORY_ENTRY_TLS) {
        return Err(LoadError::TlsDirectory {
            rva: tls.virtual_address.get(LE),
            size: tls.size.get(LE),
        });
    }
    if let Some(delay) = directories.get(pe::IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT) {
        return Err(LoadError::DelayLoadImports {
            rva: delay.virtual_address.get(LE),
            size: delay.size.get(LE),
        });
    }

    let sections = plan_sections(&file, data, page, headers_len, size_of_image)?;

    let entry_rva = optional.address_of_entry_point();
    let in_code = sections.iter().any(|planned| {
        planned.section.protection == Protection::ReadExecute && planned.section.contains(entry_rva)
    });
    if !in_code {
        return Err(LoadError::EntryPoint { rva: entry_rva });
    }

    Ok(Layout {
        preferred_base: optional.image_base(),
        image_len,
        size_of_image,
        headers: &data[..headers_len],
        entry_rva,
        sections,
        relocs_stripped: nt.file_header().characteristics.get(LE) & pe::IMAGE_FILE_RELOCS_STRIPPED
            != 0,
        file,
    })
}

/// Checks every section header and says where its bytes go.
fn plan_sections<'data>(
    file: &PeFile64<'data>,
    data: &'data [u8],
    page: usize,
    headers_len: usize,
    size_of_image: u32,
) -> Result<Vec<PlannedSection<'data>>, LoadError> {
    let alignment = file.nt_headers().optional_header().section_alignment();
    let mut planned = Vec::new();
    // The end of the previous occupant (headers, then each section), rounded up to a page.
    let mut previous = (
        String::from("headers"),
        page_align_up(headers_len, page) as u64,
    );
    for header in file.section_table().iter() {
        let name = String::from_utf8_lossy(header.raw_name()).into_owned();
        let rva = header.virtual_address.get(LE);
        let virtual_size = header.virtual_size.get(LE);
        let raw_size = header.size_of_raw_data.get(LE);
        let raw_offset = header.pointer_to_raw_data.get(LE);
        let characteristics = header.characteristics.get(LE);

        if rva % alignment != 0 {
            return Err(LoadError::SectionMisaligned {
                section: name,
                rva,
                alignment,
            });
        }
        // A zero VirtualSize means "as large as the raw data" (old linkers).
        let extent = if virtual_size == 0 {
            raw_size
        } else {
            virtual_size
        };
        let end = u64::from(rva) + u64::from(extent);
        if end > u64::from(size_of_image) {
            return Err(LoadError::SectionOutsideImage {
                section: name,
                start: rva,
                end,
                size_of_image,
            });
        }
        if u64::from(rva) < previous.1 {
            return Err(LoadError::SectionsOverlap {
                first: previous.0,
                first_end: previous.1,
                second: name,
                second_start: rva,
            });
        }
        let raw_end = u64::from(raw_offset) + u64::from(raw_size);
        let raw = if raw_size == 0 {
            &[][..]
        } else if raw_end > data.len() as u64 {
            return Err(LoadError::SectionDataOutsideFile {
                section: name,
                offset: raw_offset,
                size: raw_size,
                file_len: data.len(),
            });
        } else {
            // In range: raw_end <= data.len() was just checked.
            let start = raw_offset as usize;
            &data[start..start + raw_size.min(extent) as usize]
        };
        let protection = Protection::of_section(&name, characteristics)?;
        if extent != 0 {
            previous = (name.clone(), end.next_multiple_of(page as u64));
        }
        planned.push(PlannedSection {
            section: Section {
                name,
                rva,
                size: extent,
                characteristics,
                protection,
            },
            raw,
        });
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for len in 0..=255u8 {
            let bytes: Vec<u8> = (0..len)
                .map(|i: u8| i.wrapping_mul(7).wrapping_add(3))
                .collect();
            let error = parse(&bytes, 0x1000).err().expect("garbage parsed");
            assert!(error.to_string().contains("malformed PE image"), "{error}");
        }
    }

    #[test]
    fn header_fields_the_parser_refuses_are_named_with_their_values() {
        // A minimal header: MZ, e_lfanew 0x40, PE\0\0, a PE32+ optional header of 0xF0 bytes
        // with 16 directories, one section header.
        let mut bytes = vec![0u8; 0x40 + 4 + 20 + 0xF0 + 40];
        bytes[..2].copy_from_slice(b"MZ");
        bytes[0x3C..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        bytes[0x40..0x44].copy_from_slice(b"PE\0\0");
        let file_header = 0x44;
        bytes[file_header..file_header + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        bytes[file_header + 2..file_header + 4].copy_from_slice(&1u16.to_le_bytes());
        bytes[file_header + 16..file_header + 18].copy_from_slice(&0xF0u16.to_le_bytes());
        let optional = file_header + 20;
        bytes[optional..optional + 2].copy_from_slice(&0x20Bu16.to_le_bytes());
        bytes[optional + 108..optional + 112].copy_from_slice(&16u32.to_le_bytes());
        assert!(check_header_fields(&bytes).is_ok());

        let mut many = bytes.clone();
        many[optional + 108..optional + 112].copy_from_slice(&0x20u32.to_le_bytes());
        let text = check_header_fields(&many).unwrap_err().to_string();
        assert!(text.contains("NumberOfRvaAndSizes = 32"), "{text}");

        let mut small = bytes.clone();
        small[file_header + 16..file_header + 18].copy_from_slice(&0x60u16.to_le_bytes());
        let text = check_header_fields(&small).unwrap_err().to_string();
        assert!(text.contains("SizeOfOptionalHeader = 0x60"), "{text}");

        let mut sections = bytes;
        sections[file_header + 2..file_header + 4].copy_from_slice(&3u16.to_le_bytes());
        let text = check_header_fields(&sections).unwrap_err().to_string();
        assert!(text.contains("NumberOfSections = 3"), "{text}");
    }

    #[test]
    fn a_dos_stub_alone_names_the_nt_headers() {
        let mut bytes = vec![0u8; 64];
        bytes[..2].copy_from_slice(b"MZ");
        bytes[0x3C..0x40].copy_from_slice(&0x1000u32.to_le_bytes());
        let error = parse(&bytes, 0x1000).err().expect("stub parsed");
        let text = error.to_string();
        assert!(
            text.contains("(64 bytes)") && text.contains("NT headers"),
            "{text}"
        );
    }
}
