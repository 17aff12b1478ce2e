//! What exists for the Windows MSVC targets only: `_fltused`, the personality routine's stub,
//! the ARM64 imports of the C run-time routines, and the panic handler's bug check.

#![allow(non_upper_case_globals, reason = "the C names of the run-time symbols")]

use core::ffi::c_void;
use core::panic::PanicInfo;

/// `_fltused`: MSVC-convention objects that use floating point refer to it; its presence says
/// floating point is set up. Its value means nothing.
#[unsafe(no_mangle)]
pub static _fltused: i32 = 0;

/// `EXCEPTION_DISPOSITION __CxxFrameHandler3(EXCEPTION_RECORD*, void* EstablisherFrame,
/// CONTEXT*, DISPATCHER_CONTEXT*)`: the C++ personality routine the unwind data of the
/// prebuilt `core` names (dev builds; fat LTO removes the references). Nothing ever unwinds
/// through a driver's frames (`panic = "abort"`); if the kernel's exception dispatcher asks
/// anyway, the answer is always `ExceptionContinueSearch` (1).
#[unsafe(no_mangle)]
pub extern "C" fn __CxxFrameHandler3(
    _record: *mut c_void,
    _frame: *mut c_void,
    _context: *mut c_void,
    _dispatcher: *mut c_void,
) -> i32 {
    1
}

// ARM64: the kernel exports the C run-time routines; LLVM's calls bind to these imports.
// Declaring them is enough (nothing in Rust calls them by name): rustc puts every routine of
// a raw-dylib block, of this crate as of the driver's, into the import library it writes
// for the image, and the linker keeps the ones the code references.
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

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// `KeBugCheckEx`: stops the system. IRQL: any.
    fn KeBugCheckEx(
        code: u32,
        parameter1: usize,
        parameter2: usize,
        parameter3: usize,
        parameter4: usize,
    ) -> !;
}

/// The body of a driver's `#[panic_handler]`: stops the system with bug check `code` and
/// the parameters (the panic's source line, its column, `parameter`, 0); a panic without a
/// location gives line and column 0. Pick a `code` of your own (four ASCII letters naming
/// the driver, `u32::from_be_bytes(*b"MYDR")`, read well in a crash dump) and a `parameter`
/// that helps whoever reads it (the repository's drivers pass their version).
///
/// `KeBugCheckEx` is imported by an image only when a panic is reachable in it: an image
/// written never to panic does not import it.
///
/// IRQL: any.
///
/// ```rust,ignore
/// #[panic_handler]
/// fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
///     driver_proxy_rt::panic_bug_check(PANIC_BUGCHECK_CODE, info, VERSION as usize)
/// }
/// ```
pub fn panic_bug_check(code: u32, info: &PanicInfo<'_>, parameter: usize) -> ! {
    let (line, column) = info
        .location()
        .map_or((0, 0), |location| (location.line(), location.column()));
    // SAFETY: KeBugCheckEx may be called at any IRQL; it does not return.
    unsafe { KeBugCheckEx(code, line as usize, column as usize, parameter, 0) }
}
