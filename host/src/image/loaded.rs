//! [`LoadedImage`]: the load pipeline (parse → resolve imports → map → copy → relocate →
//! bind → protect) and the mapped image it produces, until it is retired.

use super::error::LoadError;
use super::imports::{self, BoundImport, ImportRef};
use super::os::{self, Reservation};
use super::parse::{self, Layout};
use super::protection::{self, Protection};
use super::relocs;
use super::retired;
use super::section::Section;

/// A PE32+ image mapped into this process, relocated, bound and protected, ready to run.
///
/// The image's memory lives until the value is dropped (or [`unmap`](Self::unmap)ped);
/// then the range is *retired*, not released: it stays reserved and no-access, so a late
/// call into the image aborts the process with a message naming the image and the RVA
/// instead of running whatever might have been mapped there later (see the
/// [module docs](super)).
#[derive(Debug)]
pub struct LoadedImage {
    name: String,
    base: usize,
    len: usize,
    preferred_base: u64,
    entry_rva: u32,
    sections: Vec<Section>,
    imports: Vec<BoundImport>,
    relocations: usize,
    /// Its entry in the list of mapped images: faults of its code are reported as bugchecks.
    live: &'static retired::Retired,
}

/// An address in the host's own code: the loader maps images near it.
fn host_text_anchor() {}

/// Whether this host can run x86-64 images natively.
fn check_host() -> Result<(), LoadError> {
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        Ok(())
    } else {
        Err(LoadError::UnsupportedHost {
            arch: std::env::consts::ARCH,
            os: std::env::consts::OS,
        })
    }
}

impl LoadedImage {
    /// Loads the PE32+ x86-64 image in `bytes` under the name `name` (used in messages;
    /// typically the file name, e.g. `hotswap_sample_v1.sys`).
    ///
    /// `imports` is called once per imported routine, in the order of the import directory,
    /// with the DLL and routine name; it returns the address to put in the routine's import
    /// address table slot, or `None` if the host has no such routine. The loader never
    /// chooses an address itself. **Every address must be a function that follows the
    /// Microsoft x64 calling convention** (`extern "win64"`, or assembly that follows it):
    /// the image calls it with arguments in rcx, rdx, r8, r9 and expects rdi, rsi and
    /// xmm6–15 preserved, and nothing checks this.
    ///
    /// Steps: validate the headers and section table; read the relocations and imports;
    /// resolve every import; reserve `SizeOfImage` near the host's code (anywhere if that
    /// fails); copy the headers and each section at its RVA (the rest of each section is
    /// zero); apply the `DIR64` relocations; write the import address table; set each
    /// section's protection (`R`, `RW` or `RX` from its characteristics; headers `R`, gaps
    /// no-access). Nothing in the image runs.
    ///
    /// # Errors
    /// A [`LoadError`] naming the first problem found; nothing stays mapped. See the
    /// [module docs](super) for what is refused and why.
    pub fn load(
        bytes: &[u8],
        name: &str,
        mut imports: impl FnMut(&ImportRef<'_>) -> Option<usize>,
    ) -> Result<Self, LoadError> {
        check_host()?;
        let page = os::page_size();
        let layout = parse::parse(bytes, page)?;
        let targets = relocs::read(&layout.file, bytes, layout.size_of_image)?;
        let slots = imports::read(&layout.file, bytes, layout.size_of_image)?;
        let mut bound = Vec::with_capacity(slots.len());
        for slot in slots {
            let Some(address) = imports(&slot.as_ref()) else {
                return Err(LoadError::UnknownImport {
                    dll: slot.dll,
                    name: slot.name,
                });
            };
            bound.push(BoundImport {
                dll: slot.dll,
                name: slot.name,
                iat_rva: slot.iat_rva,
                address,
            });
        }

        let mut reservation =
            Reservation::near(layout.image_len, host_text_anchor as fn() as usize).map_err(
                |error| LoadError::Os {
                    what: "mmap of the image",
                    error,
                },
            )?;
        let base = reservation.base();
        if base as u64 != layout.preferred_base && layout.relocs_stripped {
            return Err(LoadError::RelocationsStripped {
                preferred: layout.preferred_base,
            });
        }
        fill(reservation.bytes_mut(), &layout, &targets, &bound, base);
        protect(&reservation, &layout, page)?;

        let (base, len) = reservation.into_raw();
        Ok(Self {
            live: retired::record_mapped(base, len, name),
            name: name.to_owned(),
            base,
            len,
            preferred_base: layout.preferred_base,
            entry_rva: layout.entry_rva,
            sections: layout
                .sections
                .into_iter()
                .map(|planned| planned.section)
                .collect(),
            imports: bound,
            relocations: targets.len(),
        })
    }

    /// The name given to [`load`](Self::load).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address of RVA 0 (the headers).
    #[must_use]
    pub fn base(&self) -> usize {
        self.base
    }

    /// The size of the mapping: `SizeOfImage` rounded up to a page.
    #[must_use]
    pub fn size(&self) -> usize {
        self.len
    }

    /// `ImageBase`: where the image was linked to run. The loader maps it elsewhere (near
    /// the host's code) and relocates it.
    #[must_use]
    pub fn preferred_base(&self) -> u64 {
        self.preferred_base
    }

    /// The absolute address of `AddressOfEntryPoint` (for a driver, `DriverEntry`: call it as
    /// `unsafe extern "win64" fn(*mut DRIVER_OBJECT, *mut UNICODE_STRING) -> NTSTATUS`).
    /// The loader checked that it lies in an executable section.
    #[must_use]
    pub fn entry_point(&self) -> usize {
        self.base + self.entry_rva as usize
    }

    /// Whether `address` is inside the image's mapping.
    #[must_use]
    pub fn contains(&self, address: usize) -> bool {
        address
            .checked_sub(self.base)
            .is_some_and(|offset| offset < self.len)
    }

    /// The RVA of `address`, if it is inside the image.
    #[must_use]
    pub fn rva_of(&self, address: usize) -> Option<u32> {
        if self.contains(address) {
            u32::try_from(address - self.base).ok()
        } else {
            None
        }
    }

    /// The absolute address of `rva`, if it is inside the image.
    #[must_use]
    pub fn address_of(&self, rva: u32) -> Option<usize> {
        let address = self.base + rva as usize;
        self.contains(address).then_some(address)
    }

    /// The sections, in the order of the section table.
    #[must_use]
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The first section called `name` (for example `.text`).
    #[must_use]
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|section| section.name == name)
    }

    /// The section holding `address`, if any.
    #[must_use]
    pub fn section_of(&self, address: usize) -> Option<&Section> {
        let rva = self.rva_of(address)?;
        self.sections.iter().find(|section| section.contains(rva))
    }

    /// Every import, as bound: DLL, routine, IAT slot and the address the resolver gave.
    #[must_use]
    pub fn imports(&self) -> &[BoundImport] {
        &self.imports
    }

    /// How many `DIR64` relocations were applied (0 for an image without a relocation
    /// directory).
    #[must_use]
    pub fn relocation_count(&self) -> usize {
        self.relocations
    }

    /// Unmaps the image: the same as dropping it, spelled out. The range is retired (kept
    /// reserved, no-access), so a call into it later aborts the process with a message
    /// naming the image and the RVA.
    pub fn unmap(self) {
        drop(self);
    }
}

impl Drop for LoadedImage {
    fn drop(&mut self) {
        self.live.deactivate();
        let record = retired::record(self.base, self.len, &self.name);
        // SAFETY: the range is the image's own mapping (from `Reservation::into_raw`), and
        // `LoadedImage` hands out addresses only, never references into it.
        if let Err(error) = unsafe { os::retire(self.base, self.len) } {
            // The image stays mapped and runnable: nothing can reuse its addresses, so a late
            // call runs the old code rather than anything else.
            record.deactivate();
            eprintln!(
                "host kernel: could not retire image {} at {:#x}: {error}; it stays mapped",
                self.name, self.base
            );
        }
    }
}

/// Copies the headers and sections into `image` (zeroed, `layout.image_len` bytes at
/// `base`), applies the relocations and writes the IAT.
fn fill(
    image: &mut [u8],
    layout: &Layout<'_>,
    targets: &[u32],
    bound: &[BoundImport],
    base: usize,
) {
    image[..layout.headers.len()].copy_from_slice(layout.headers);
    for planned in &layout.sections {
        let start = planned.section.rva as usize;
        image[start..start + planned.raw.len()].copy_from_slice(planned.raw);
    }
    relocs::apply(
        image,
        targets,
        (base as u64).wrapping_sub(layout.preferred_base),
    );
    for import in bound {
        let start = import.iat_rva as usize;
        image[start..start + 8].copy_from_slice(&(import.address as u64).to_le_bytes());
    }
}

/// Gives every page of the image its final protection.
fn protect(reservation: &Reservation, layout: &Layout<'_>, page: usize) -> Result<(), LoadError> {
    let sections: Vec<(usize, usize, Protection)> = layout
        .sections
        .iter()
        .map(|planned| {
            let section = &planned.section;
            (
                section.rva as usize,
                section.size as usize,
                section.protection,
            )
        })
        .collect();
    for range in protection::plan(layout.headers.len(), &sections, layout.image_len, page) {
        reservation
            .protect(range.start, range.len, range.protection.prot_flags())
            .map_err(|error| LoadError::Os {
                what: "mprotect of a section",
                error,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_image_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<LoadedImage>();
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn this_host_gets_past_the_architecture_check_to_the_image_itself() {
        // An empty file is refused for what it is (not a PE image), not for the host.
        let error = LoadedImage::load(&[], "empty.sys", |_| None).expect_err("refused");
        assert!(
            !matches!(error, LoadError::UnsupportedHost { .. }),
            "refused by architecture on x86-64 Linux: {error}"
        );
    }

    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    #[test]
    fn other_hosts_refuse_every_image_by_architecture() {
        let error = LoadedImage::load(&[], "any.sys", |_| None).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("not supported on this architecture"),
            "{error}"
        );
    }
}
