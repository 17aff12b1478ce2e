//! The run-time symbols a Rust kernel driver for 64-bit Windows needs when it is linked
//! without a C run-time, and the bug check its panic handler ends in: one crate, no
//! dependencies, for every driver crate built with the build library (`driver-build`, crate
//! `driver-proxy-build`): the WDM sample (`sample/wdm`), the example driver
//! (`examples/scratchpad`) and the README guide's driver (*Testing your driver on Linux*).
//!
//! # Why a kernel image needs them
//!
//! A driver image is linked with `/NODEFAULTLIB` (the build library's link arguments): there
//! is no C run-time in the kernel (`msvcrt`, `vcruntime` and `libcmt` are user-mode
//! libraries). Code built for the `*-pc-windows-msvc` targets still refers to symbols a C
//! run-time defines: LLVM calls `memcpy`, `memset`, … for the copies, fills and comparisons
//! it does not inline, a function with a large frame calls the stack probe `__chkstk`, and
//! MSVC-convention objects name `_fltused` and a C++ personality routine. The targets'
//! prebuilt `compiler_builtins` leaves every one of them to the C run-time, so without this
//! crate the link fails with `undefined symbol: memcpy` (and the like).
//!
//! | symbol | who refers to it | x64 | ARM64 |
//! |---|---|---|---|
//! | `memcpy` | LLVM: copies it does not inline (`copy_from_slice`, `ptr::copy_nonoverlapping`, moves of large values) | defined: `rep movsb` | imported from `ntoskrnl.exe` |
//! | `memmove` | LLVM: copies whose ranges may overlap (`ptr::copy`, `copy_within`) | defined: `rep movsb` forwards, or a byte loop backwards when the destination overlaps the source's tail | imported |
//! | `memset` | LLVM: fills and zeroing (`[0; N]`, `fill`, `write_bytes`) | defined: `rep stosb` | imported |
//! | `memcmp` | LLVM: comparisons of byte slices and arrays | defined: a byte loop; the difference of the first differing bytes, as unsigned values | imported |
//! | `bcmp` | LLVM, for comparisons that only ask "equal?", on targets whose C library has it | defined (as `memcmp`), so that no such call can stay unresolved | not declared (`ntoskrnl.exe` does not export it) |
//! | `__chkstk` | the prologue of every function whose frame is larger than a page (4 KiB) | defined: touches each page of the new frame, from the caller's stack pointer down, in order; moves nothing; clobbers only R10, R11 and the flags | imported from `ntoskrnl.exe` |
//! | `_fltused` | any object that uses floating point (MSVC convention: the reference pulls in a C run-time's floating-point support) | defined: a static | defined |
//! | `__CxxFrameHandler3` | the unwind data of the prebuilt `core` (built `panic = "unwind"`): dev builds only, fat LTO removes the references | a stub answering `ExceptionContinueSearch` | the same stub |
//!
//! **x64 vs ARM64.** `ntoskrnl.exe` exports the C run-time routines on both architectures,
//! but only the ARM64 images import them: there, every call LLVM emits binds to the kernel's
//! routine through a `raw-dylib` import (rustc writes the import library), and the image
//! imports only the routines its code calls. On x64 the crate defines them, so an x64 image
//! imports nothing for them (its imports stay what its own code calls, which the build
//! library's `verify` and the harness's import tests pin). The stack probe differs in its
//! convention: x64's `__chkstk` takes the frame size in RAX (and the caller then subtracts
//! it from RSP), ARM64's takes it in X15 as a count of 16-byte units (`sub sp, sp, x15, lsl
//! #4`), which is one more reason ARM64 uses the kernel's.
//!
//! **What the stack probe is for.** Kernel stacks are a few pages with a guard page below
//! them, and nothing grows them. Touching every page of a large frame in order means a frame
//! larger than the stack left hits the guard page (a bug check at the faulting frame) instead
//! of skipping over it and writing into whatever memory lies below. `__chkstk` cannot make a
//! stack larger: keep frames small (a page is a lot of kernel stack).
//!
//! **Linking.** Nothing is exported (a driver image is a `[[bin]]`: no export table, and
//! `cargo xtask verify` fails an image that exports a run-time helper), and the linker's
//! `/OPT:REF` drops every symbol the code does not reference: an x64 image typically keeps
//! `memcpy`, `memset` and `__chkstk`, an ARM64 image imports `memcpy` and `memset`.
//! Floating point: SSE2 is fine on x64 kernels; never enable AVX target features without
//! saving the extended state.
//!
//! **IRQL.** The routines run at any IRQL and touch only the memory they are given; that
//! memory must be resident at the caller's IRQL (non-paged above `APC_LEVEL`), which is the
//! caller's business, as with the kernel's own `RtlCopyMemory`.
//!
//! # The panic handler
//!
//! A `no_std` image needs exactly one `#[panic_handler]`, and a kernel driver's can only stop
//! the system. This crate does **not** define it, because the bug check code is the driver's
//! own (it names the driver in a crash dump) and because a `#[panic_handler]` in a library
//! would keep the library from building its tests for the host. It supplies the body:
//! `panic_bug_check` calls `KeBugCheckEx(code, line, column, parameter, 0)`, with the
//! panic's source line and column. `KeBugCheckEx` is imported only when some panic is
//! reachable in the optimised image (in the repository's drivers, none is).
//!
//! # Use
//!
//! ```toml
//! [dependencies]
//! driver-proxy-rt = { path = "<repository>/driver-rt" }
//! ```
//!
//! ```rust,ignore
//! // src/main.rs, built for the Windows targets (#![no_std], #![no_main]).
//! #[panic_handler]
//! fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
//!     // "MYDR": the driver's own bug check code; the third parameter is the driver's to pick.
//!     driver_proxy_rt::panic_bug_check(u32::from_be_bytes(*b"MYDR"), info, VERSION as usize)
//! }
//! ```
//!
//! The call is also what links the crate: rustc links a dependency only when the code names
//! it. A driver that does not call `panic_bug_check` writes `use driver_proxy_rt as _;`.
//!
//! # Other targets
//!
//! The symbols are defined under their C names (`#[unsafe(no_mangle)]`) for the Windows MSVC
//! targets only. Built for any other target, the crate is an ordinary library: the x64
//! routines keep their Rust paths (`memcpy`, …) and mangled names, `__chkstk` is assembled
//! under a name of its own, and the kernel-only items (`_fltused`, the personality stub, the
//! ARM64 imports, `panic_bug_check`) are left out. So a driver crate whose tests build for
//! the Linux host can depend on it unconditionally, and the routines' unit tests run on an
//! x86-64 host.

#![no_std]

#[cfg(test)]
extern crate std;

#[cfg(target_arch = "x86_64")]
mod x64;

#[cfg(target_arch = "x86_64")]
pub use x64::{bcmp, memcmp, memcpy, memmove, memset};

#[cfg(all(target_os = "windows", target_env = "msvc"))]
mod kernel;

#[cfg(all(target_os = "windows", target_env = "msvc"))]
pub use kernel::*;
