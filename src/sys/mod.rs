//! Raw bindings: the DriverProxy DDI family of `wdm.h`, exactly as `docs/ddi.md` gives it.
//!
//! Nothing here is safe to use directly; the rest of the crate builds a typed API on top of
//! it. Names follow the C headers (hence the `non_snake_case` / `non_camel_case_types`
//! allowances) so that a reader can match every item against the Microsoft DDI reference.
//!
//! * [`ntdef`]: the handful of general NT types the family needs (`NTSTATUS`, `HANDLE`,
//!   `UNICODE_STRING`, `LARGE_INTEGER`, opaque `DRIVER_OBJECT` and `KEVENT`, …), defined
//!   minimally so the crate needs no WDK. A pointer from `wdk-sys` converts with a cast.
//! * [`proxy`]: the DriverProxy types, unions, enums and callback types, each with its
//!   size and field offsets asserted at compile time.
//! * [`routines`]: the pointer type and export name of each documented routine, the Rust
//!   form of the `IoGetDriverProxyWrapperFromEndpoint` macro, and the one routine this crate
//!   imports statically, `MmGetSystemRoutineAddress`.
//! * [`kernel`]: general kernel routines the safe layer resolves at run time (events, the
//!   fallback worker thread, pool).
//! * [`status`]: the `NTSTATUS` codes the family documents.
//!
//! Layouts are LLP64 (x64 and ARM64): Driver Hot-Swap needs the Secure Kernel, which only
//! exists on 64-bit Windows. On a 64-bit host (the host kernel's tests) the same layouts hold.
//!
//! Where `docs/ddi.md` marks a declaration UNCONFIRMED, the most likely form is bound and
//! the item's documentation says so.

#![allow(
    non_snake_case,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::upper_case_acronyms
)]

pub mod kernel;
pub mod ntdef;
pub mod proxy;
pub mod routines;
pub mod status;

pub use kernel::*;
pub use ntdef::*;
pub use proxy::*;
pub use routines::*;
pub use status::*;

const _: () = assert!(
    core::mem::size_of::<usize>() == 8,
    "DriverProxy layouts are LLP64: 64-bit targets only"
);
