//! Host kernel: a user-mode model of the kernel side of Windows Driver Hot-Swap, on which
//! `driver-proxy` and drivers built on it run in an ordinary test process.
//!
//! Status: [`exports`] provides `MmGetSystemRoutineAddress` and models a kernel that lacks
//! the DriverProxy routines (so the library's fallback path is exercised end to end);
//! the wrapper engine and the DriverProxy routines are being built (issue 3).

pub mod driver_object;
pub mod engine;
pub mod exports;

pub use driver_object::HostDriverObject;
pub use exports::hide_export;
