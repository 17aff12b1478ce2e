//! Host kernel: a user-mode model of the kernel side of Windows Driver Hot-Swap, on which
//! `driver-proxy`, drivers built on it, and real `.sys` images run in an ordinary process.
//!
//! | part | what |
//! |---|---|
//! | [`ddi`] | the host's own reading of the DDI: DriverProxy types, unions, enums, callback and routine types, status codes, export names, with layout assertions (independent of `driver_proxy::sys`; `host/tests/ddi_readings.rs` compares the two) |
//! | [`engine`] | real wrappers for `SysV` and Microsoft x64 callers: drain, stall, repoint, rollback, poisoning of retired code |
//! | [`kernel`] | the seven DriverProxy routines on the engine, and the kernel routines the library resolves (events and waits, system threads, handles, pool); [`kernel::control`] configures the model, injects faults and triggers swaps |
//! | [`exports`] | `MmGetSystemRoutineAddress` and the `SysV` export table (for drivers compiled for the host), with exports that can be hidden |
//! | [`image`] | the PE loader: maps a `.sys`, relocates it, binds its imports by name, retires unmapped images so that a late call fails loudly |
//! | `wdm` (x86-64) | the Microsoft x64 entry points an image calls, and the I/O manager model (devices, symbolic links, IRPs, `DbgPrint`) |
//! | `image_driver` (x86-64) | an image as a running driver: load, requests, image hot swap (v1.sys → v2.sys), unload with leak checks |
//! | `harness` (x86-64) | **the test harness for a driver author's own `.sys`**: load, requests of every kind, hot swap under load, faults, leak report, bugchecks as test results |
//!
//! x86-64 Linux is the target. On aarch64 Linux the crate builds without the parts that run
//! x64 code (`wdm`, `image_driver`); the engine and the loader there answer "not supported".
//!
//! The crate uses local-exec TLS: link it into executables (tests, benchmarks, the demo),
//! never into a shared library.

pub mod ddi;
pub mod driver_object;
pub mod engine;
pub mod exports;
#[cfg(target_arch = "x86_64")]
pub mod harness;
pub mod image;
#[cfg(target_arch = "x86_64")]
pub mod image_driver;
pub mod kernel;
#[cfg(target_arch = "x86_64")]
pub mod wdm;

pub use driver_object::HostDriverObject;
pub use exports::hide_export;
