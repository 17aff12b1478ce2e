//! The memory of an image: a [`Reservation`] of `SizeOfImage` bytes (mapped near the host's
//! own code when possible), page protections, and retirement (the range stays reserved,
//! no-access, forever).
//!
//! Linux only (as the rest of the host kernel: `futex(2)`, `membarrier(2)`).

use std::io;

/// The host page size.
#[must_use]
pub fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the process; no memory of ours is involved.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// An anonymous mapping owned by the loader: released on drop unless it was handed over with
/// [`Reservation::into_raw`].
#[derive(Debug)]
pub struct Reservation {
    base: *mut u8,
    len: usize,
    /// Whether it is a slot of the [`ARENA`] (released by remapping it no-access, so the
    /// arena stays whole) rather than a mapping of its own (released with `munmap`).
    in_arena: bool,
}

/// The size of one arena: room for thousands of driver images (the sample is 32 KiB).
const ARENA_SIZE: usize = 256 << 20;
/// Arenas are placed at multiples of this below the host's code.
const ARENA_STEP: usize = ARENA_SIZE;
/// How many arena positions are tried below the anchor: 7 × 256 MiB stays within the
/// ±2 GiB a rel32 reaches from the host's code.
const ARENA_ATTEMPTS: usize = 7;
/// Windows' allocation granularity; image bases are multiples of it.
const GRANULARITY: usize = 64 << 10;
/// The lowest address tried (above any `vm.mmap_min_addr`).
const LOWEST: usize = 16 << 20;

/// The current arena: a no-access reservation near the host's code that images are carved
/// from, top down (`next` is the end of the free part; slots are never reused).
struct Arena {
    start: usize,
    next: usize,
}

static ARENA: std::sync::Mutex<Option<Arena>> = std::sync::Mutex::new(None);

/// Maps `len` bytes at `address` with `prot`, failing rather than replacing anything when
/// `replace` is false.
///
/// # Safety
/// When `replace` is true, the range must belong to the caller (it is replaced).
unsafe fn map_at(address: usize, len: usize, prot: libc::c_int, replace: bool) -> Option<usize> {
    let fixed = if replace {
        libc::MAP_FIXED
    } else {
        libc::MAP_FIXED_NOREPLACE
    };
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed;
    if prot == libc::PROT_NONE {
        flags |= libc::MAP_NORESERVE;
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping (EEXIST instead); MAP_FIXED only
    // replaces the caller's own range (contract above).
    let base = unsafe { libc::mmap(address as *mut libc::c_void, len, prot, flags, -1, 0) };
    if base == libc::MAP_FAILED {
        return None;
    }
    if base as usize != address {
        // A kernel older than 4.17 treats MAP_FIXED_NOREPLACE as a hint it may ignore.
        // SAFETY: the mapping was just made by us at `base` and nothing refers to it.
        unsafe { libc::munmap(base, len) };
        return None;
    }
    Some(address)
}

impl Arena {
    /// Reserves a new arena in the 2 GiB below `anchor`.
    fn reserve(anchor: usize) -> Option<Self> {
        (1..=ARENA_ATTEMPTS).find_map(|attempt| {
            let start = anchor
                .checked_sub(attempt * ARENA_STEP + ARENA_SIZE)
                .map(|address| address & !(ARENA_STEP - 1))
                .filter(|&address| address >= LOWEST)?;
            // SAFETY: `replace` is false: nothing existing is touched.
            let start = unsafe { map_at(start, ARENA_SIZE, libc::PROT_NONE, false) }?;
            Some(Self {
                start,
                next: start + ARENA_SIZE,
            })
        })
    }

    /// Carves `len` readable and writable bytes from the top of the free part.
    fn carve(&mut self, len: usize) -> Option<usize> {
        let slot = len.checked_next_multiple_of(GRANULARITY)?;
        let address = self.next.checked_sub(slot).filter(|&a| a >= self.start)?;
        // SAFETY: the slot is inside the arena, which we own, and was never handed out.
        let address = unsafe { map_at(address, len, libc::PROT_READ | libc::PROT_WRITE, true) }?;
        self.next = address;
        Some(address)
    }
}

impl Reservation {
    /// Maps `len` (page-aligned) bytes of zeroed, readable and writable memory at a 64 KiB
    /// aligned address near `anchor` (an address in the host's code), so calls between the
    /// image and the host stay short; anywhere when that is impossible.
    ///
    /// Near the anchor, images are carved from an *arena*: a 256 MiB no-access reservation
    /// made with `MAP_FIXED_NOREPLACE` in the 2 GiB below the anchor; slots are never
    /// reused, so retired images keep their addresses for the life of the process.
    ///
    /// # Errors
    /// The `mmap(2)` error when no mapping could be made.
    pub fn near(len: usize, anchor: usize) -> io::Result<Self> {
        if len <= ARENA_SIZE {
            let mut arena = ARENA
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for _ in 0..2 {
                if let Some(address) = arena.as_mut().and_then(|arena| arena.carve(len)) {
                    return Ok(Self {
                        base: address as *mut u8,
                        len,
                        in_arena: true,
                    });
                }
                // Full (or none yet): start a new one; the old one stays reserved.
                *arena = Arena::reserve(anchor);
                if arena.is_none() {
                    break;
                }
            }
        }
        Self::map_anywhere(len)
    }

    /// A mapping wherever the kernel puts it.
    fn map_anywhere(len: usize) -> io::Result<Self> {
        // SAFETY: a new anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: base.cast(),
            len,
            in_arena: false,
        })
    }

    /// The first byte.
    #[must_use]
    pub fn base(&self) -> usize {
        self.base as usize
    }

    /// The whole mapping as bytes, for copying and patching while it is still writable
    /// (before the first [`Reservation::protect`]).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable until `protect` is
        // called (which takes `&self`, so not while this borrow lives), and owned by `self`
        // alone: no other reference to it exists.
        unsafe { core::slice::from_raw_parts_mut(self.base, self.len) }
    }

    /// Sets the protection of `len` bytes at `offset` (both page aligned, inside the mapping).
    ///
    /// # Errors
    /// The `mprotect(2)` error.
    pub fn protect(&self, offset: usize, len: usize, prot: libc::c_int) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: the range is inside our own mapping (checked above); changing its
        // protection affects no other memory.
        let result = unsafe { libc::mprotect(self.base.add(offset).cast(), len, prot) };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Gives up ownership: the caller now owns `len` bytes at the returned base and must
    /// eventually pass them to [`retire`] (or leave them mapped).
    #[must_use]
    pub fn into_raw(self) -> (usize, usize) {
        let raw = (self.base as usize, self.len);
        core::mem::forget(self);
        raw
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.in_arena {
            // An arena slot goes back to no-access (never reused); should that fail it
            // merely stays mapped, unused.
            // SAFETY: the slot is ours and nothing refers to it: no code in it has run (a
            // loaded image leaves through `into_raw`).
            let _ = unsafe { retire(self.base as usize, self.len) };
        } else {
            // SAFETY: as above, for a mapping of its own.
            unsafe { libc::munmap(self.base.cast(), self.len) };
        }
    }
}

/// Replaces `len` bytes at `base` with a fresh no-access, unbacked mapping: the pages are
/// released, the addresses stay reserved (never reused by another mapping), and any access
/// faults.
///
/// # Safety
/// `base..base + len` must be a mapping the caller owns (from [`Reservation::into_raw`]) that
/// no live Rust reference points into.
///
/// # Errors
/// The error of `mmap(2)` and of the `mprotect(2)` fallback when both fail; the range is then
/// unchanged.
pub unsafe fn retire(base: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range (contract above); MAP_FIXED replaces only it.
    if unsafe { map_at(base, len, libc::PROT_NONE, true) }.is_some() {
        return Ok(());
    }
    // SAFETY: as above; mprotect only changes the protection of the caller's range.
    if unsafe { libc::mprotect(base as *mut libc::c_void, len, libc::PROT_NONE) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() {}

    #[test]
    fn near_maps_below_the_anchor_within_rel32_reach() {
        let page = page_size();
        let text = anchor as fn() as usize;
        let mut reservation = Reservation::near(4 * page, text).expect("mmap");
        assert_eq!(reservation.base() % page, 0);
        assert_eq!(reservation.base() % GRANULARITY, 0);
        let distance = text.abs_diff(reservation.base());
        assert!(
            distance < (1 << 31),
            "mapped {distance:#x} bytes from the text"
        );
        let bytes = reservation.bytes_mut();
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[0] = 1;
        reservation
            .protect(0, page, libc::PROT_READ)
            .expect("mprotect");
        assert!(
            reservation
                .protect(page, 4 * page, libc::PROT_READ)
                .is_err()
        );
    }

    #[test]
    fn arena_slots_are_distinct_and_never_reused() {
        let text = anchor as fn() as usize;
        let first = Reservation::near(0x5000, text).expect("mmap");
        let first_base = first.base();
        drop(first);
        let mut bases = vec![first_base];
        let mut kept = Vec::new();
        for _ in 0..100 {
            let reservation = Reservation::near(0x5000, text).expect("mmap");
            assert!(!bases.contains(&reservation.base()));
            assert!(text.abs_diff(reservation.base()) < (1 << 31));
            bases.push(reservation.base());
            kept.push(reservation);
        }
    }
}
