//! The import directory: every routine the image imports, by DLL and name, with the RVA of
//! the import address table (IAT) slot the loader fills in. Imports by ordinal are refused:
//! the host kernel knows its routines by name only.

use object::LittleEndian as LE;
use object::pe::ImageNtHeaders64;
use object::read::pe::{Import, PeFile64};

use super::error::LoadError;

/// One import, as the loader asks the caller to resolve it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportRef<'a> {
    /// The DLL the image imports from, as written in the image (for example
    /// `ntoskrnl.exe`; compare case-insensitively if you care: Windows does).
    pub dll: &'a str,
    /// The routine's name (for example `IoCreateDevice`).
    pub name: &'a str,
    /// The hint: the index the linker expected in the DLL's export name table (advisory).
    pub hint: u16,
}

/// An import the loader bound: the routine and the address written to its IAT slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundImport {
    /// The DLL.
    pub dll: String,
    /// The routine.
    pub name: String,
    /// RVA of the IAT slot.
    pub iat_rva: u32,
    /// The address the resolver gave, now in the slot.
    pub address: usize,
}

/// An import read from the image, not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSlot {
    /// The DLL.
    pub dll: String,
    /// The routine.
    pub name: String,
    /// The hint.
    pub hint: u16,
    /// RVA of its IAT slot (8 bytes, inside the image).
    pub iat_rva: u32,
}

impl ImportSlot {
    /// The view given to the resolver.
    #[must_use]
    pub fn as_ref(&self) -> ImportRef<'_> {
        ImportRef {
            dll: &self.dll,
            name: &self.name,
            hint: self.hint,
        }
    }
}

/// A name that the host can print and compare: printable ASCII only.
fn ascii_name(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().all(u8::is_ascii_graphic))
        .then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Reads every import of `file` (whose bytes are `data`; `size_of_image` bounds the IAT).
///
/// # Errors
/// [`LoadError::Malformed`] for an unreadable directory, [`LoadError::ImportByOrdinal`],
/// [`LoadError::ImportName`] and [`LoadError::IatOutsideImage`].
pub fn read(
    file: &PeFile64<'_>,
    data: &[u8],
    size_of_image: u32,
) -> Result<Vec<ImportSlot>, LoadError> {
    let bad = |error: object::read::Error| LoadError::Malformed {
        what: "import directory",
        detail: error.to_string(),
        file_len: data.len(),
    };
    let mut slots = Vec::new();
    let Some(table) = file
        .data_directories()
        .import_table(data, &file.section_table())
        .map_err(bad)?
    else {
        return Ok(slots);
    };
    let mut descriptors = table.descriptors().map_err(bad)?;
    while let Some(descriptor) = descriptors.next().map_err(bad)? {
        let raw_dll = table.name(descriptor.name.get(LE)).map_err(bad)?;
        let dll = ascii_name(raw_dll).ok_or_else(|| LoadError::ImportName {
            dll: String::from_utf8_lossy(raw_dll).into_owned(),
            index: None,
            name: String::from_utf8_lossy(raw_dll).into_owned(),
        })?;
        let iat = descriptor.first_thunk.get(LE);
        let lookup = match descriptor.original_first_thunk.get(LE) {
            0 => iat,
            lookup => lookup,
        };
        let mut thunks = table.thunks(lookup).map_err(bad)?;
        let mut index = 0usize;
        while let Some(thunk) = thunks.next::<ImageNtHeaders64>().map_err(bad)? {
            let (hint, name) = match table.import::<ImageNtHeaders64>(thunk).map_err(bad)? {
                Import::Ordinal(ordinal) => {
                    return Err(LoadError::ImportByOrdinal {
                        dll,
                        index,
                        ordinal,
                    });
                }
                Import::Name(hint, raw) => {
                    let name = ascii_name(raw).ok_or_else(|| LoadError::ImportName {
                        dll: dll.clone(),
                        index: Some(index),
                        name: String::from_utf8_lossy(raw).into_owned(),
                    })?;
                    (hint, name)
                }
            };
            let slot = u64::from(iat) + 8 * index as u64;
            if iat == 0 || slot + 8 > u64::from(size_of_image) {
                return Err(LoadError::IatOutsideImage {
                    dll,
                    name,
                    rva: slot,
                });
            }
            slots.push(ImportSlot {
                dll: dll.clone(),
                name,
                hint,
                // Below size_of_image, a u32: checked just above.
                iat_rva: u32::try_from(slot).unwrap_or(u32::MAX),
            });
            index += 1;
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_printable_ascii() {
        assert_eq!(ascii_name(b"DbgPrint").as_deref(), Some("DbgPrint"));
        assert_eq!(ascii_name(b""), None);
        assert_eq!(ascii_name(b"Dbg Print"), None);
        assert_eq!(ascii_name(b"Dbg\xffPrint"), None);
    }
}
