//! (The same file as the WDM sample's `src/rt.rs`: every driver linked without a CRT needs it.)
//!
//! The run-time symbols the `*-pc-windows-msvc` targets expect from a C runtime, which a
//! kernel driver linked with `/NODEFAULTLIB` does not have.
//!
//! * `memcpy`, `memmove`, `memset`, `memcmp` (LLVM calls them for copies, fills and
//!   comparisons) and `__chkstk` (probes the stack for frames over 4 KiB): the prebuilt
//!   `compiler_builtins` of the msvc targets leaves them to the CRT.
//!   - **x64**: defined here (`rep movsb` / `rep stosb`, a byte loop, and a stack probe
//!     that touches each page of the new frame). They are not exported: a `[[bin]]` image
//!     has no export table.
//!   - **ARM64**: imported from `ntoskrnl.exe`, which exports the same names.
//! * `_fltused`: referenced by any object that uses floating point (MSVC convention).
//! * `__CxxFrameHandler3`: the personality routine named by the unwind data of the prebuilt
//!   `core` (built `panic = "unwind"`). With LTO (release) the references disappear; the
//!   dev profile links them. Nothing ever unwinds through this driver's frames
//!   (`panic = "abort"`); if the kernel's exception dispatcher asks anyway, the answer is
//!   `ExceptionContinueSearch`.
//!
//! A symbol nothing references is dropped by the linker (`/OPT:REF`), so an image only
//! contains the helpers its code needs.

#![allow(non_upper_case_globals, reason = "the C names of the run-time symbols")]

use core::ffi::c_void;

/// `_fltused`: its presence tells MSVC-convention objects that floating point is set up.
#[unsafe(no_mangle)]
pub static _fltused: i32 = 0;

/// `EXCEPTION_DISPOSITION __CxxFrameHandler3(EXCEPTION_RECORD*, void* EstablisherFrame,
/// CONTEXT*, DISPATCHER_CONTEXT*)`: always `ExceptionContinueSearch` (1).
#[unsafe(no_mangle)]
pub extern "C" fn __CxxFrameHandler3(
    _record: *mut c_void,
    _frame: *mut c_void,
    _context: *mut c_void,
    _dispatcher: *mut c_void,
) -> i32 {
    1
}

#[cfg(target_arch = "x86_64")]
pub use x64::*;

#[cfg(target_arch = "x86_64")]
mod x64 {
    use core::arch::{asm, global_asm};

    /// `memcpy`.
    ///
    /// # Safety
    /// `dst` and `src` valid for `n` bytes and not overlapping.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
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
        dst
    }

    /// `memmove`: overlapping ranges allowed.
    ///
    /// # Safety
    /// `dst` and `src` valid for `n` bytes.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if (dst as usize).wrapping_sub(src as usize) >= n {
            // `dst` is below `src` or past its end: a forward copy never reads a byte it
            // already overwrote.
            // SAFETY: as in `memcpy`; the forward order is safe for this overlap.
            unsafe {
                asm!(
                    "rep movsb",
                    inout("rcx") n => _,
                    inout("rdi") dst => _,
                    inout("rsi") src => _,
                    options(nostack, preserves_flags),
                );
            }
        } else {
            // `dst` overlaps the tail of `src`: copy backwards, byte by byte. Volatile
            // accesses keep LLVM from turning the loop back into a call to `memmove`.
            let mut i = n;
            while i > 0 {
                i -= 1;
                // SAFETY: `i < n`, inside both ranges (caller contract).
                unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
            }
        }
        dst
    }

    /// `memset`.
    ///
    /// # Safety
    /// `dst` valid for `n` bytes.
    #[unsafe(no_mangle)]
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

    /// `memcmp`: the difference of the first differing bytes, as unsigned values.
    ///
    /// # Safety
    /// `a` and `b` valid for `n` bytes.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(left: *const u8, right: *const u8, n: usize) -> i32 {
        let mut index = 0;
        while index < n {
            // SAFETY: `index < n`, inside both ranges (caller contract). Volatile: see
            // memmove.
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

    /// `bcmp`: zero when equal (LLVM may use it for equality-only comparisons).
    ///
    /// # Safety
    /// As `memcmp`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn bcmp(left: *const u8, right: *const u8, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        unsafe { memcmp(left, right, n) }
    }

    // `__chkstk` (Microsoft x64): RAX = size of the frame the caller is about to allocate.
    // Touches every page from the caller's RSP down to RSP - RAX, so that the stack's guard
    // page is hit in order, without moving RSP. May clobber only R10, R11 and the flags.
    global_asm!(
        ".globl __chkstk",
        "__chkstk:",
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
}

// ARM64: the kernel exports the C run-time routines; LLVM's calls bind to these imports.
// Declaring them is enough (nothing in Rust calls them directly): rustc puts every routine
// of a raw-dylib block into the import library it generates, and the linker keeps the
// ones the code references.
#[cfg(target_arch = "aarch64")]
#[allow(
    dead_code,
    reason = "called by LLVM-generated code, not by name from Rust"
)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8;
    fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
    fn __chkstk();
}
