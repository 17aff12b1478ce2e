//! The host kernel's own reading of the DDI it implements: the DriverProxy family of `wdm.h`
//! (types, unions and their bit fields, enums, callback types, routine prototypes, status
//! codes, export names) and the general NT types and routines around it, each layout asserted
//! at compile time.
//!
//! It is written from the documentation (`docs/ddi.md`, which quotes Microsoft Learn's syntax
//! blocks and gives the observed layouts, and the Microsoft Learn pages of the general
//! routines), **not** from the library's `driver_proxy::sys`: the library and the host are two
//! independent readings of the same header, as the WDM model (`crate::wdm::types`) and the
//! sample's `wdm_sys.rs` are for the I/O structures. The host's routines are declared and
//! checked against the types here; `host/tests/ddi_readings.rs` compares the two readings
//! (sizes, alignments and offsets of every DriverProxy structure and union, the value of every
//! status code and enum constant both name, the export names, and each routine's parameter
//! count and parameter and return sizes), so a transcription error on either side shows up as
//! a disagreement instead of being mirrored.
//!
//! Where the two meet at run time (the library calls the host's exports through its own
//! `PFN_` types, found with `MmGetSystemRoutineAddress`), only the ABI matters; in Rust code,
//! the host's API takes addresses where it only needs an address (`HostDriverObject::as_raw`,
//! `DriverControl::new`, `ExtensionControl::from_raw` are generic over the pointee).
//!
//! Names follow the C headers so that each item can be checked against them. Layouts are
//! LLP64 (x64, ARM64), which a 64-bit Linux host shares for every type here.

#![allow(
    non_snake_case,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::upper_case_acronyms,
    reason = "names follow wdm.h, ntdef.h and ntstatus.h, so that each can be checked against them"
)]

pub mod nt;
pub mod proxy;
pub mod routines;
pub mod status;

pub use nt::*;
pub use proxy::*;
pub use routines::*;
pub use status::*;

const _: () = assert!(
    size_of::<usize>() == 8,
    "the DriverProxy layouts are LLP64: 64-bit hosts only"
);
