//! The x64 routines: `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp` and `__chkstk`, under
//! their C names for the Windows MSVC targets (`#[unsafe(no_mangle)]`), as ordinary Rust
//! functions elsewhere (for the host's tests).
//!
//! Two rules every routine here keeps. The string instructions rely on the direction flag
//! being clear on entry, which both x64 ABIs guarantee. And no loop may look like the routine
//! it implements: LLVM would turn a plain byte-copy loop inside `memmove` into a call to
//! `memmove`, which on the kernel targets is this very function. The loops use volatile
//! accesses, which LLVM never merges into a library call.

use core::arch::{asm, global_asm};

/// `rep movsb`: copies `n` bytes from `src` to `dst`, lowest address first.
///
/// # Safety
/// `dst` and `src` valid for `n` bytes; when they overlap, `dst` is below `src` (a forward
/// copy never reads a byte it already overwrote).
#[allow(
    clippy::inline_always,
    reason = "one instruction: memcpy and memmove are that instruction, not a call to it"
)]
#[inline(always)]
unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges; `rep movsb` copies exactly `n` bytes
    // forwards (the ABI guarantees DF = 0 on entry).
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
}

/// `void *memcpy(void *dst, const void *src, size_t n)`: copies `n` bytes; returns `dst`.
///
/// # Safety
/// `dst` and `src` valid for `n` bytes and not overlapping.
#[cfg_attr(all(target_os = "windows", target_env = "msvc"), unsafe(no_mangle))]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; without overlap the order does not matter.
    unsafe { copy_forward(dst, src, n) };
    dst
}

/// `void *memmove(void *dst, const void *src, size_t n)`: copies `n` bytes, the ranges may
/// overlap; returns `dst`.
///
/// # Safety
/// `dst` and `src` valid for `n` bytes.
#[cfg_attr(all(target_os = "windows", target_env = "msvc"), unsafe(no_mangle))]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // `dst` is below `src` or past its end: a forward copy never reads a byte it already
        // overwrote.
        // SAFETY: the caller's contract; the forward order is safe for this overlap.
        unsafe { copy_forward(dst, src, n) };
    } else {
        // `dst` overlaps the tail of `src`: copy backwards, byte by byte (volatile: see the
        // module docs).
        let mut i = n;
        while i > 0 {
            i -= 1;
            // SAFETY: `i < n`, inside both ranges (the caller's contract).
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
    }
    dst
}

/// `void *memset(void *dst, int c, size_t n)`: stores the low byte of `c` in `n` bytes;
/// returns `dst`.
///
/// # Safety
/// `dst` valid for `n` bytes.
#[cfg_attr(all(target_os = "windows", target_env = "msvc"), unsafe(no_mangle))]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "memset stores the low byte of `c`, as C specifies"
    )]
    let byte = c as u8;
    // SAFETY: the caller guarantees the range; `rep stosb` stores exactly `n` bytes.
    unsafe {
        asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            in("al") byte,
            options(nostack, preserves_flags),
        );
    }
    dst
}

/// `int memcmp(const void *left, const void *right, size_t n)`: 0 when the `n` bytes are
/// equal, otherwise the difference of the first differing bytes, as unsigned values
/// (`left`'s minus `right`'s): negative when `left` orders first.
///
/// # Safety
/// `left` and `right` valid for `n` bytes.
#[cfg_attr(all(target_os = "windows", target_env = "msvc"), unsafe(no_mangle))]
#[must_use]
pub unsafe extern "C" fn memcmp(left: *const u8, right: *const u8, n: usize) -> i32 {
    let mut index = 0;
    while index < n {
        // SAFETY: `index < n`, inside both ranges (the caller's contract). Volatile: see the
        // module docs.
        let (l, r) = unsafe {
            (
                left.add(index).read_volatile(),
                right.add(index).read_volatile(),
            )
        };
        if l != r {
            return i32::from(l) - i32::from(r);
        }
        index += 1;
    }
    0
}

/// `int bcmp(const void *left, const void *right, size_t n)`: 0 exactly when the `n` bytes
/// are equal (this one answers as [`memcmp`] does).
///
/// # Safety
/// As [`memcmp`].
#[cfg_attr(all(target_os = "windows", target_env = "msvc"), unsafe(no_mangle))]
#[must_use]
pub unsafe extern "C" fn bcmp(left: *const u8, right: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract.
    unsafe { memcmp(left, right, n) }
}

/// `__chkstk` (Microsoft x64), assembled under `$name`. RAX = the size of the frame the
/// caller is about to allocate. Touches every page from the caller's RSP down to RSP - RAX,
/// in order, so that the stack's guard page is hit before anything below it, without moving
/// RSP. Clobbers only R10, R11 and the flags (RAX is preserved: the caller subtracts it from
/// RSP next).
macro_rules! chkstk {
    ($name:literal) => {
        global_asm!(
            concat!(".globl ", $name),
            concat!($name, ":"),
            "    lea r10, [rsp + 8]", // the caller's RSP (above our return address)
            "    mov r11, rax",       // bytes still to probe
            "2:",
            "    cmp r11, 0x1000",
            "    jb 3f",
            "    sub r10, 0x1000",
            "    test qword ptr [r10], r10", // read-touch the page
            "    sub r11, 0x1000",
            "    jmp 2b",
            "3:",
            "    sub r10, r11",
            "    test qword ptr [r10], r10", // the lowest byte of the new frame
            "    ret",
        );
    };
}

#[cfg(all(target_os = "windows", target_env = "msvc"))]
chkstk!("__chkstk");

// Elsewhere (the host's tests) under a name no C library defines.
#[cfg(not(all(target_os = "windows", target_env = "msvc")))]
chkstk!("driver_proxy_rt_chkstk");

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::{bcmp, memcmp, memcpy, memmove, memset};

    /// 64 distinct bytes, 1 to 64 (no zero, so a stray clear shows).
    fn pattern() -> [u8; 64] {
        core::array::from_fn(|i| u8::try_from(i + 1).unwrap())
    }

    #[test]
    fn memcpy_copies_exactly_n_bytes_and_returns_dst() {
        let src = pattern();
        for offset in 0..8 {
            for n in 0..=48 {
                let mut dst = [0xEEu8; 64];
                // SAFETY: both ranges are inside their arrays; distinct arrays.
                let returned = unsafe { memcpy(dst.as_mut_ptr().add(offset), src.as_ptr(), n) };
                assert_eq!(returned, dst.as_mut_ptr().wrapping_add(offset));
                assert!(dst[..offset].iter().all(|&b| b == 0xEE), "below");
                assert_eq!(dst[offset..offset + n], src[..n], "offset {offset}, n {n}");
                assert!(dst[offset + n..].iter().all(|&b| b == 0xEE), "past the end");
            }
        }
    }

    /// Every overlap of a 32-byte buffer with itself (destination below, above and on the
    /// source, disjoint, zero length), against `copy_within`.
    #[test]
    fn memmove_handles_every_overlap_like_copy_within() {
        for src in 0..32 {
            for dst in 0..32 {
                for n in 0..=(32 - src.max(dst)) {
                    let mut expected: Vec<u8> = pattern()[..32].to_vec();
                    expected.copy_within(src..src + n, dst);
                    let mut buffer: Vec<u8> = pattern()[..32].to_vec();
                    let base = buffer.as_mut_ptr();
                    // SAFETY: both ranges inside `buffer`; overlap is memmove's case.
                    let returned = unsafe { memmove(base.add(dst), base.add(src), n) };
                    assert_eq!(returned, base.wrapping_add(dst));
                    assert_eq!(buffer, expected, "src {src}, dst {dst}, n {n}");
                }
            }
        }
    }

    /// The two overlaps spelled out: the destination one byte above the source (a forward
    /// copy would smear the first byte) and one byte below.
    #[test]
    fn memmove_overlap_by_one_byte_both_ways() {
        let mut up = *b"abcdef";
        // SAFETY: [0, 5) and [1, 6) inside `up`.
        unsafe { memmove(up.as_mut_ptr().add(1), up.as_ptr(), 5) };
        assert_eq!(&up, b"aabcde");
        let mut down = *b"abcdef";
        // SAFETY: [1, 6) and [0, 5) inside `down`.
        unsafe { memmove(down.as_mut_ptr(), down.as_ptr().add(1), 5) };
        assert_eq!(&down, b"bcdeff");
    }

    #[test]
    fn memset_stores_the_low_byte_of_c_in_exactly_n_bytes() {
        for (c, byte) in [(0, 0u8), (0x5A, 0x5A), (0x1AB, 0xAB), (-1, 0xFF), (-256, 0)] {
            for offset in 0..8 {
                for n in 0..=40 {
                    let mut buffer = pattern();
                    // SAFETY: the range is inside `buffer`.
                    let returned = unsafe { memset(buffer.as_mut_ptr().add(offset), c, n) };
                    assert_eq!(returned, buffer.as_mut_ptr().wrapping_add(offset));
                    assert_eq!(buffer[..offset], pattern()[..offset]);
                    assert!(buffer[offset..offset + n].iter().all(|&b| b == byte));
                    assert_eq!(buffer[offset + n..], pattern()[offset + n..]);
                }
            }
        }
    }

    /// `memcmp` and `bcmp` of two slices of one length.
    fn compare(left: &[u8], right: &[u8]) -> (i32, i32) {
        assert_eq!(left.len(), right.len());
        // SAFETY: both slices hold `len` bytes.
        unsafe {
            (
                memcmp(left.as_ptr(), right.as_ptr(), left.len()),
                bcmp(left.as_ptr(), right.as_ptr(), left.len()),
            )
        }
    }

    #[test]
    fn memcmp_orders_by_the_first_differing_byte_as_unsigned() {
        assert_eq!(compare(b"", b""), (0, 0));
        assert_eq!(compare(b"same", b"same"), (0, 0));
        // The first difference decides, whatever follows.
        let (order, _) = compare(b"abcz", b"abda");
        assert!(order < 0);
        let (order, _) = compare(b"abda", b"abcz");
        assert!(order > 0);
        // Unsigned: 0x80 orders after 0x7F (as signed bytes it would not).
        let (order, _) = compare(&[0x80], &[0x7F]);
        assert!(order > 0);
        let (order, _) = compare(&[0x00], &[0xFF]);
        assert!(order < 0);
        // The value is the difference of the two bytes.
        assert_eq!(compare(&[1, 0xFF], &[1, 0x01]).0, 0xFE);
        assert_eq!(compare(&[0x10], &[0x30]).0, -0x20);
        // Agrees with the order of Rust's slices, on every pair of these.
        let words: [&[u8; 3]; 6] = [b"abc", b"abd", b"ab\x80", b"ab\x7f", b"\x00bc", b"\xffbc"];
        for left in words {
            for right in words {
                let (order, equal) = compare(left, right);
                assert_eq!(order.cmp(&0), left.cmp(right), "{left:?} {right:?}");
                assert_eq!(equal == 0, left == right);
            }
        }
    }

    #[test]
    fn memcmp_reads_only_n_bytes() {
        // SAFETY: 3 bytes of each; what follows differs and is not compared.
        let order = unsafe { memcmp(b"abcX".as_ptr(), b"abcY".as_ptr(), 3) };
        assert_eq!(order, 0);
        // SAFETY: n = 0 reads nothing (dangling pointers are fine for zero bytes).
        let order = unsafe {
            memcmp(
                core::ptr::NonNull::dangling().as_ptr(),
                core::ptr::NonNull::dangling().as_ptr(),
                0,
            )
        };
        assert_eq!(order, 0);
    }

    unsafe extern "C" {
        /// The host build's `__chkstk` (not an `extern "C"` function: called with `asm!`).
        fn driver_proxy_rt_chkstk();
    }

    /// `__chkstk` probes frames of every size (none, under a page, whole pages, pages and a
    /// rest, 64 KiB) and returns with RSP, RAX and every register but R10 and R11 unchanged.
    #[test]
    fn chkstk_probes_without_moving_the_stack_or_clobbering_registers() {
        const MARKS: [u64; 6] = [
            0x1111_1111_1111_1111,
            0x2222_2222_2222_2222,
            0x3333_3333_3333_3333,
            0x4444_4444_4444_4444,
            0x5555_5555_5555_5555,
            0x6666_6666_6666_6666,
        ];
        for size in [0u64, 8, 4095, 4096, 4097, 3 * 4096 + 123, 16 * 4096] {
            let (rsp_before, rsp_after): (u64, u64);
            let (rax, rcx, rdx, rsi, rdi, r8, r9): (u64, u64, u64, u64, u64, u64, u64);
            // SAFETY: the probe reads at most `size` bytes below this thread's stack pointer
            // (64 KiB at most, well inside a test thread's stack), writes nothing, and
            // clobbers R10, R11 and the flags (declared). The asm block calls, so it uses the
            // stack (no `nostack`): the compiler keeps RSP aligned and the red zone free.
            unsafe {
                core::arch::asm!(
                    "mov {before}, rsp",
                    "call {probe}",
                    "mov {after}, rsp",
                    probe = sym driver_proxy_rt_chkstk,
                    before = out(reg) rsp_before,
                    after = out(reg) rsp_after,
                    inout("rax") size => rax,
                    inout("rcx") MARKS[0] => rcx,
                    inout("rdx") MARKS[1] => rdx,
                    inout("rsi") MARKS[2] => rsi,
                    inout("rdi") MARKS[3] => rdi,
                    inout("r8") MARKS[4] => r8,
                    inout("r9") MARKS[5] => r9,
                    out("r10") _,
                    out("r11") _,
                );
            }
            assert_eq!(rsp_after, rsp_before, "size {size}: RSP moved");
            assert_eq!(rax, size, "size {size}: RAX");
            assert_eq!([rcx, rdx, rsi, rdi, r8, r9], MARKS, "size {size}");
        }
    }
}
