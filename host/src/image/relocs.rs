//! Base relocations: reading the `.reloc` directory (only `IMAGE_REL_BASED_DIR64`, with
//! `IMAGE_REL_BASED_ABSOLUTE` entries as padding) and applying it to the mapped bytes.

use object::pe;
use object::read::pe::PeFile64;

use super::error::LoadError;

/// The RVA of every 8-byte pointer the image wants adjusted when it is not at its
/// `ImageBase`, checked to lie inside the image.
///
/// # Errors
/// [`LoadError::Malformed`] for an unreadable directory, [`LoadError::RelocationType`] for
/// any type but `DIR64` and `ABSOLUTE`, [`LoadError::RelocationOutsideImage`].
pub fn read(file: &PeFile64<'_>, data: &[u8], size_of_image: u32) -> Result<Vec<u32>, LoadError> {
    let bad = |error: object::read::Error| LoadError::Malformed {
        what: "base relocation directory",
        detail: error.to_string(),
        file_len: data.len(),
    };
    let mut targets = Vec::new();
    let Some(mut blocks) = file
        .data_directories()
        .relocation_blocks(data, &file.section_table())
        .map_err(bad)?
    else {
        return Ok(targets);
    };
    while let Some(block) = blocks.next().map_err(bad)? {
        // The block's page is checked before any offset is added to it: the `object` crate
        // adds the 12-bit offsets with a wrapping 32-bit add, so a page near 4 GiB would wrap
        // into the headers and pass a check of the sum alone.
        let page = block.virtual_address();
        if page >= size_of_image {
            return Err(LoadError::RelocationPageOutsideImage {
                page,
                size_of_image,
            });
        }
        // The iterator already skips the all-zero ABSOLUTE padding entries; an ABSOLUTE
        // entry with a non-zero offset is padding too.
        for relocation in block {
            // Recomputed without wrapping: page + the entry's 12-bit offset.
            let offset = relocation.virtual_address.wrapping_sub(page) & 0xFFF;
            let target = u64::from(page) + u64::from(offset);
            let rva = u32::try_from(target).unwrap_or(u32::MAX);
            match relocation.typ {
                pe::IMAGE_REL_BASED_ABSOLUTE => {}
                pe::IMAGE_REL_BASED_DIR64 => {
                    if target + 8 > u64::from(size_of_image) {
                        return Err(LoadError::RelocationOutsideImage { rva, size_of_image });
                    }
                    targets.push(rva);
                }
                kind => return Err(LoadError::RelocationType { kind, rva }),
            }
        }
    }
    Ok(targets)
}

/// Adds `delta` (actual base − preferred base, wrapping) to the 8 little-endian bytes at each
/// of `targets` in `image` (the mapped image, from RVA 0). Targets outside `image` are
/// skipped: [`read`] has already refused them.
pub fn apply(image: &mut [u8], targets: &[u32], delta: u64) {
    for &rva in targets {
        let start = rva as usize;
        if let Some(slot) = image.get_mut(start..start + 8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(slot);
            let value = u64::from_le_bytes(bytes).wrapping_add(delta);
            slot.copy_from_slice(&value.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_adds_the_delta_and_wraps() {
        let mut image = vec![0u8; 32];
        image[8..16].copy_from_slice(&0x1_4000_2000u64.to_le_bytes());
        image[24..32].copy_from_slice(&0x1_4000_1000u64.to_le_bytes());
        let delta = 0x5555_0000_0000u64.wrapping_sub(0x1_4000_0000);
        apply(&mut image, &[8, 24, 30], delta);
        assert_eq!(
            u64::from_le_bytes(image[8..16].try_into().unwrap()),
            0x5555_0000_2000
        );
        assert_eq!(
            u64::from_le_bytes(image[24..32].try_into().unwrap()),
            0x5555_0000_1000
        );
        // A negative delta (moved down) wraps correctly too.
        apply(&mut image, &[8], 0u64.wrapping_sub(0x1000));
        assert_eq!(
            u64::from_le_bytes(image[8..16].try_into().unwrap()),
            0x5555_0000_1000
        );
    }
}
