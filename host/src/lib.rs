//! Host kernel: a user-mode model of the kernel side of Windows Driver Hot-Swap, on which
//! `driver-proxy` and drivers built on it run in an ordinary test process.
//!
//! Status: the model kernel ([`kernel`]) exports the seven DriverProxy routines on top of the
//! wrapper engine ([`engine`]: real wrappers for `SysV` and Win64 callers, drain, stall,
//! repoint, rollback, poisoning), and the kernel routines the library resolves (events and
//! waits, system threads, handles, pool), all found through `MmGetSystemRoutineAddress`
//! ([`exports`]); [`kernel::control`] configures it, injects faults and triggers swaps.
//! Running driver images (PE `.sys`) is a later issue.
//!
//! The crate uses local-exec TLS: link it into executables (tests, benchmarks, the demo),
//! never into a shared library.

pub mod driver_object;
pub mod engine;
pub mod exports;
pub mod image;
pub mod kernel;
pub mod wdm;

pub use driver_object::HostDriverObject;
pub use exports::hide_export;
