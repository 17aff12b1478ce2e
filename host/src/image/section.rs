//! [`Section`]: one section of a loaded image, as the loader placed and protected it.

use super::protection::Protection;

/// A section of a loaded image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The name from the section table (up to 8 bytes, NULs trimmed).
    pub name: String,
    /// RVA of its first byte.
    pub rva: u32,
    /// Its size in memory in bytes (`VirtualSize`, or `SizeOfRawData` when that is 0); the
    /// protection covers it rounded up to a page.
    pub size: u32,
    /// `IMAGE_SECTION_HEADER::Characteristics`.
    pub characteristics: u32,
    /// The protection its pages have while the image is loaded.
    pub protection: Protection,
}

impl Section {
    /// Whether `rva` is one of this section's bytes.
    #[must_use]
    pub fn contains(&self, rva: u32) -> bool {
        rva.checked_sub(self.rva)
            .is_some_and(|offset| offset < self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_is_half_open() {
        let section = Section {
            name: ".text".into(),
            rva: 0x1000,
            size: 0x10,
            characteristics: 0x6000_0020,
            protection: Protection::ReadExecute,
        };
        assert!(!section.contains(0xFFF));
        assert!(section.contains(0x1000));
        assert!(section.contains(0x100F));
        assert!(!section.contains(0x1010));
    }
}
