//! PE image loader: maps a driver image (`.sys`, PE32+ for x86-64) into this process so its
//! code runs natively on the CPU, as the Windows kernel would map it.
//!
//! ```no_run
//! use driver_proxy_host::image::LoadedImage;
//!
//! extern "win64" fn db_print(_format: *const u8) -> u32 { 0 }
//!
//! let bytes = std::fs::read("target/drivers/amd64/hotswap_sample_v1.sys")?;
//! let image = LoadedImage::load(&bytes, "hotswap_sample_v1.sys", |import| {
//!     match (import.dll, import.name) {
//!         ("ntoskrnl.exe", "DbgPrint") => Some(db_print as usize),
//!         _ => None, // the load fails with LoadError::UnknownImport naming it
//!     }
//! })?;
//! println!("DriverEntry at {:#x}", image.entry_point());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the loader does
//!
//! [`LoadedImage::load`] parses the image with the `object` crate, then:
//! 1. validates the headers and the section table: PE32+, machine
//!    AMD64, `SectionAlignment` a multiple of the page size, sections aligned, in order,
//!    not sharing pages, inside `SizeOfImage`, their raw data inside the file; the entry point
//!    in an executable section;
//! 2. reads the base relocations and the imports, and asks the caller's resolver for the
//!    address of every import, **by DLL and routine name** (the loader never picks an
//!    address: the host kernel's export table does);
//! 3. reserves `SizeOfImage` with `mmap(2)` near the host's own code (a far image measured
//!    +0.27 ns per call): images are carved, 64 KiB aligned, from a 256 MiB no-access arena
//!    reserved with `MAP_FIXED_NOREPLACE` in the 2 GiB below the host's code; when no arena
//!    can be placed there, anywhere;
//! 4. copies the headers and each section at its RVA; the rest of each section (beyond
//!    `SizeOfRawData`, e.g. all of a `.data` whose `SizeOfRawData` is 0) stays zero;
//! 5. applies the `DIR64` relocations (the image is never at its `ImageBase`) and writes the
//!    import address table;
//! 6. protects each section from its characteristics: execute → `r-x`, write → `rw-`, else
//!    `r--`; headers `r--`; gaps between sections no-access.
//!
//! # What is refused, and why
//!
//! Each refusal is a [`LoadError`] whose message names the field, section, import or offset;
//! malformed input (truncated at any length, bad offsets, corrupted fields) gives an error,
//! never a panic or a crash.
//! - **PE32, or another machine** (an ARM64 image: "machine ARM64 cannot run on this x86-64
//!   host"): the code runs natively. On a host other than x86-64 Linux every load fails
//!   with [`LoadError::UnsupportedHost`].
//! - **Imports by ordinal**: the host knows its routines by name. **Unknown imports** (the
//!   resolver returns `None`): a driver that links against a routine the model lacks must
//!   fail at load, by name, not crash when it calls it.
//! - **A TLS directory** (kernel images cannot have one; the loader runs no TLS callbacks)
//!   and **a delay-load import directory** (the host binds everything at load time and has
//!   no delay-load helper).
//! - **Relocation types other than `DIR64`** (`ABSOLUTE` entries are padding), and
//!   relocations outside the image. An image with `IMAGE_FILE_RELOCS_STRIPPED` cannot be
//!   moved, so it is refused too.
//! - **`SectionAlignment` that is not a multiple of the page size**: sections could not have
//!   their own protections. **Sections both writable and executable**: the loader keeps
//!   W^X rather than map such pages.
//!
//! No SEH, no exception directory processing, no export table: driver images are entered
//! through their entry point and through the routines they hand to the kernel.
//!
//! # Faults are reported, never a silent death
//!
//! A fault raised by an instruction of a mapped image (`SIGSEGV`, `SIGBUS`, `SIGILL`,
//! `SIGFPE`, `SIGTRAP`) is reported as Windows reports an exception no driver handled, with
//! the exception, the image and RVA, the address accessed, and the call the I/O manager model
//! was making into the driver (`DriverEntry`, the IRP being dispatched, `DriverUnload`), and
//! the process aborts:
//!
//! ```text
//! host kernel BUGCHECK 0x1E KMODE_EXCEPTION_NOT_HANDLED: STATUS_ACCESS_VIOLATION (0xc0000005)
//!   in image my_driver.sys at RVA 0x1000, accessing 0x0, during DriverEntry
//! ```
//!
//! A call into a driver that never returns is reported by the watchdog of the WDM model
//! (`crate::wdm::watchdog`).
//!
//! # Retired images fail loudly
//!
//! Dropping a [`LoadedImage`] (or [`LoadedImage::unmap`]) does not `munmap` it: the range is
//! remapped no-access and kept reserved for the life of the process (pages released, the
//! addresses never reused), and recorded in a process-wide list. A `SIGSEGV`/`SIGBUS`
//! handler, installed once and chaining to any previous handler, recognises a fault inside a
//! retired image (that handler is the same one, for every signal above), writes
//!
//! ```text
//! host kernel: call into unmapped image hotswap_sample_v1.sys at RVA 0x1030
//! ```
//!
//! to stderr and aborts. A stale wrapper or function pointer into an unloaded driver thus
//! stops the process at once, with the image and the offset to look up in its map file,
//! rather than running another image's code. Faults elsewhere go to the previous handler
//! (for example Rust's stack-overflow report) or the default action.

mod error;
mod imports;
mod loaded;
mod os;
mod parse;
mod protection;
mod relocs;
mod retired;
mod section;

pub use error::{LoadError, machine_name};
pub use imports::{BoundImport, ImportRef};
pub use loaded::LoadedImage;
pub use protection::Protection;
#[cfg(target_arch = "x86_64")] // its users, the WDM model, are x86-64 only
pub(crate) use retired::activity;
pub use section::Section;
