//! Page protections: what each section gets from its characteristics, and the plan that
//! covers the whole image (headers, sections, gaps) with one protection per page range.

use super::error::LoadError;

/// `IMAGE_SCN_MEM_EXECUTE`.
pub const SCN_MEM_EXECUTE: u32 = 0x2000_0000;
/// `IMAGE_SCN_MEM_WRITE`.
pub const SCN_MEM_WRITE: u32 = 0x8000_0000;

/// The protection of a range of a loaded image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// No access: gaps between sections, and every page of a retired image.
    NoAccess,
    /// Read-only: the headers and sections that are neither writable nor executable
    /// (`.rdata`, `.pdata`, `.reloc`; the import address table, after binding).
    ReadOnly,
    /// Read and write: writable data sections (`.data`).
    ReadWrite,
    /// Read and execute: code sections (`.text`).
    ReadExecute,
}

impl Protection {
    /// The protection of a section with these characteristics.
    ///
    /// `IMAGE_SCN_MEM_EXECUTE` gives [`ReadExecute`](Self::ReadExecute),
    /// `IMAGE_SCN_MEM_WRITE` gives [`ReadWrite`](Self::ReadWrite), anything else
    /// [`ReadOnly`](Self::ReadOnly) (a mapped section is always readable, as on Windows).
    ///
    /// # Errors
    /// [`LoadError::WritableAndExecutable`] when both flags are set: the loader keeps W^X
    /// rather than mapping a page both writable and executable.
    pub fn of_section(section: &str, characteristics: u32) -> Result<Self, LoadError> {
        let execute = characteristics & SCN_MEM_EXECUTE != 0;
        let write = characteristics & SCN_MEM_WRITE != 0;
        match (execute, write) {
            (true, true) => Err(LoadError::WritableAndExecutable {
                section: section.to_owned(),
                characteristics,
            }),
            (true, false) => Ok(Self::ReadExecute),
            (false, true) => Ok(Self::ReadWrite),
            (false, false) => Ok(Self::ReadOnly),
        }
    }

    /// The `PROT_*` flags of `mprotect(2)`.
    #[must_use]
    pub fn prot_flags(self) -> libc::c_int {
        match self {
            Self::NoAccess => libc::PROT_NONE,
            Self::ReadOnly => libc::PROT_READ,
            Self::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
            Self::ReadExecute => libc::PROT_READ | libc::PROT_EXEC,
        }
    }

    /// The permission letters `/proc/<pid>/maps` shows for this protection (`r-x`, ...).
    #[must_use]
    pub fn maps_letters(self) -> &'static str {
        match self {
            Self::NoAccess => "---",
            Self::ReadOnly => "r--",
            Self::ReadWrite => "rw-",
            Self::ReadExecute => "r-x",
        }
    }
}

/// One range of the protection plan: `len` bytes at offset `start` of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Offset from the image base (page aligned).
    pub start: usize,
    /// Length (page aligned, non-zero).
    pub len: usize,
    /// What the range gets.
    pub protection: Protection,
}

/// Rounds `value` up to a multiple of `page` (a power of two).
#[must_use]
pub fn page_align_up(value: usize, page: usize) -> usize {
    value.next_multiple_of(page)
}

/// The protection plan of an image: headers read-only, each section as given, every gap
/// (between sections, after the last one) no-access. `sections` are `(start, len,
/// protection)` with page-aligned starts, in ascending order and not sharing pages (the
/// parser guarantees it); `image_len` is page aligned.
#[must_use]
pub fn plan(
    headers_len: usize,
    sections: &[(usize, usize, Protection)],
    image_len: usize,
    page: usize,
) -> Vec<Range> {
    let mut ranges = Vec::with_capacity(2 * sections.len() + 2);
    let mut push = |start: usize, end: usize, protection| {
        if end > start {
            ranges.push(Range {
                start,
                len: end - start,
                protection,
            });
        }
    };
    let mut cursor = page_align_up(headers_len, page).min(image_len);
    push(0, cursor, Protection::ReadOnly);
    for &(start, len, protection) in sections {
        if len == 0 {
            continue;
        }
        let end = page_align_up(start + len, page).min(image_len);
        push(cursor, start, Protection::NoAccess);
        push(start, end, protection);
        cursor = end;
    }
    push(cursor, image_len, Protection::NoAccess);
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characteristics_map_to_protections() {
        assert_eq!(
            Protection::of_section(".text", 0x6000_0020).unwrap(),
            Protection::ReadExecute
        );
        assert_eq!(
            Protection::of_section(".rdata", 0x4000_0040).unwrap(),
            Protection::ReadOnly
        );
        assert_eq!(
            Protection::of_section(".data", 0xC000_0040).unwrap(),
            Protection::ReadWrite
        );
        assert_eq!(
            Protection::of_section(".reloc", 0x4200_0040).unwrap(),
            Protection::ReadOnly
        );
        let error = Protection::of_section(".wx", 0xE000_0020).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("section .wx is both writable and executable")
        );
    }

    #[test]
    fn plan_covers_the_image_with_gaps_no_access() {
        let page = 0x1000;
        let sections = [
            (0x1000, 0x2669, Protection::ReadExecute),
            (0x4000, 0xA44, Protection::ReadOnly),
            (0x5000, 0, Protection::ReadWrite),
            (0x6000, 0xC8, Protection::ReadWrite),
        ];
        let ranges = plan(0x400, &sections, 0x8000, page);
        let expected = [
            (0x0, 0x1000, Protection::ReadOnly),
            (0x1000, 0x3000, Protection::ReadExecute),
            (0x4000, 0x1000, Protection::ReadOnly),
            (0x5000, 0x1000, Protection::NoAccess),
            (0x6000, 0x1000, Protection::ReadWrite),
            (0x7000, 0x1000, Protection::NoAccess),
        ];
        let got: Vec<_> = ranges
            .iter()
            .map(|r| (r.start, r.len, r.protection))
            .collect();
        assert_eq!(got, expected);
    }
}
