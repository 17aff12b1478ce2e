//! Safe, typed Rust bindings for **Windows Driver Hot-Swap**: the DriverProxy DDI family of
//! `wdm.h`, with which Windows 11 (24H2 and later) replaces a loaded driver's code at run time.
//!
//! # The mechanism
//!
//! A hot-swappable driver never hands out its own functions. Everything the rest of the
//! system calls it through (the `MajorFunction` table, DPC and work-item routines, callbacks
//! in interface tables, worker threads) receives a **wrapper** of the function, the
//! *endpoint*. The kernel makes the wrappers; each one counts the calls in flight and forwards
//! them to the endpoint's current implementation. To swap in a new version of the driver, the
//! kernel:
//!
//! 1. calls the driver back in [`Phase::PreProcess`] (calls still flowing: take locks,
//!    allocate);
//! 2. stops new calls at the wrappers and waits for the calls already inside the old code to
//!    drain (a timeout fails the swap with `STATUS_UNSUCCESSFUL` and changes nothing);
//! 3. calls back in [`Phase::ProxyStalled`]: no endpoint call is running or can start, the
//!    one moment where state can be handed from the old version to the new one;
//! 4. repoints every wrapper at the new implementation, atomically, and lets calls resume;
//! 5. calls back in [`Phase::PostProcess`].
//!
//! A raw function pointer that escaped to the rest of the system keeps calling the old code
//! after a swap and keeps the old image alive: **never hand out an endpoint unwrapped**. That
//! includes comparisons such as `MajorFunction[i] == my_dispatch`, which stop matching.
//!
//! # V1 and V2
//!
//! * **V2** (current): the compiler and linker list the endpoints in a PE section named
//!   `.shsept`, and a wrapper is looked up by the endpoint's address
//!   (`IofGetDriverProxyWrapperFromEndpoint`, the `IoGetDriverProxyWrapperFromEndpoint`
//!   macro in C): [`HotSwap::wrap`]. Rust toolchains cannot emit `.shsept` today (its format
//!   is undocumented).
//! * **V1** (deprecated by Microsoft, but what a Rust driver can use): the driver registers a
//!   table of `{id, endpoint, parameter count}` with `IoRegisterDriverProxyEndpoints` and
//!   looks wrappers up by id. Registering the same ids again *is* the swap, with the phased
//!   callback above: [`EndpointTable`], [`HotSwap::register`], [`HotSwap::wrapper`].
//!
//! The parameter count is derived from the endpoint's type ([`Endpoint::ARITY`]); an id is
//! typed with its endpoint's signature ([`EndpointId`]), so a lookup returns a [`Wrapped`] of
//! the right type, and calling a `Wrapped<F>` is exactly one indirect call.
//!
//! # Fallback
//!
//! Drivers must keep loading on kernels without Driver Hot-Swap, so this crate imports only
//! `MmGetSystemRoutineAddress` and resolves everything else at run time, once. Where hot-swap
//! is unavailable (an export missing, the feature disabled for the driver, creation answering
//! `STATUS_NOT_SUPPORTED` or `STATUS_DRIVER_BLOCKED`), [`HotSwap`] falls back: wrappers are the
//! endpoints themselves, registration does nothing, worker threads are plain system threads,
//! and [`HotSwap::unavailable`] says why. The driver has one code path.
//!
//! # IRQL
//!
//! Creation, registration and thread creation run at `PASSIVE_LEVEL`; lookups of wrappers at
//! any IRQL. The first call into this crate resolves the kernel routines and must be made at
//! `PASSIVE_LEVEL` (from `DriverEntry`). Every public function states its IRQL.
//!
//! # Layers
//!
//! * [`sys`]: the raw DDI: types with compile-time layout assertions, routine pointer types,
//!   status codes. A `wdk-sys` pointer converts with a cast.
//! * The safe API at the crate root.
//!
//! # Example: a driver skeleton
//!
//! A WDM driver whose device-control dispatch routine is hot-swappable (V1). The same code
//! runs here, in a test process, on the host kernel of this project (`driver-proxy-host`),
//! and on Windows 11 24H2+ with the Secure Kernel: in both, the dispatch routine handed to the
//! I/O manager is a real wrapper (on older kernels, the routine itself).
//!
//! ```
//! # extern crate driver_proxy_host;
//! use driver_proxy::{
//!     DriverObject, EndpointEntry, EndpointId, EndpointTable, HotSwap, NtStatus, Phase, sys,
//! };
//!
//! /// `DRIVER_DISPATCH`: `NTSTATUS Dispatch(PDEVICE_OBJECT, PIRP)`.
//! type Dispatch = unsafe extern "system" fn(*mut core::ffi::c_void, *mut core::ffi::c_void) -> i32;
//! const DEVICE_CONTROL: EndpointId<Dispatch> = EndpointId::new(1);
//!
//! unsafe extern "system" fn device_control(_device: *mut core::ffi::c_void, _irp: *mut core::ffi::c_void) -> i32 {
//!     NtStatus::SUCCESS.raw() // complete the IRP here
//! }
//!
//! /// `DriverEntry` (export it with `#[unsafe(export_name = "DriverEntry")]` in a driver).
//! unsafe extern "system" fn driver_entry(driver: sys::PDRIVER_OBJECT, _registry: *const sys::UNICODE_STRING) -> i32 {
//!     // SAFETY: the kernel passes our own driver object, valid until unload.
//!     let driver = match unsafe { DriverObject::from_raw(driver) } {
//!         Ok(driver) => driver,
//!         Err(null) => return null.status().raw(),
//!     };
//!     // Probe and create the extension; falls back on kernels without hot-swap.
//!     let hotswap = match HotSwap::new(driver) {
//!         Ok(hotswap) => hotswap,
//!         Err(error) => return error.status().raw(),
//!     };
//!     // Register the endpoints (V1). A new version of the driver registers the same ids
//!     // again, with a callback that carries state over in Phase::ProxyStalled.
//!     let table = match EndpointTable::new([EndpointEntry::new(DEVICE_CONTROL, device_control as Dispatch)]) {
//!         Ok(table) => table,
//!         Err(error) => return error.status().raw(),
//!     };
//!     let mut on_phase = |phase: Phase| -> Result<(), NtStatus> {
//!         let _ = phase; // hand state over in ProxyStalled
//!         Ok(())
//!     };
//!     if let Err(error) = hotswap.register(&table, Some(&mut on_phase)) {
//!         return error.status().raw();
//!     }
//!     // Hand out the wrapper, never `device_control` itself:
//!     // (*driver).MajorFunction[IRP_MJ_DEVICE_CONTROL] = wrapper.get();
//!     let wrapper = match hotswap.wrapper(&table, DEVICE_CONTROL) {
//!         Ok(wrapper) => wrapper,
//!         Err(error) => return error.status().raw(),
//!     };
//!     // SAFETY: a dispatch routine may be called with any pointers it is given by the I/O manager.
//!     let status = unsafe { wrapper.get()(core::ptr::null_mut(), core::ptr::null_mut()) };
//!     assert_eq!(status, NtStatus::SUCCESS.raw());
//!     NtStatus::SUCCESS.raw()
//! }
//!
//! let mut driver_object = driver_proxy_host::HostDriverObject::new();
//! // SAFETY: the host driver object is valid for the call.
//! let status = unsafe { driver_entry(driver_object.as_raw(), core::ptr::null()) };
//! assert_eq!(NtStatus(status), NtStatus::SUCCESS);
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]

mod driver;
mod endpoint;
mod error;
mod event;
mod extension;
mod features;
mod hotswap;
mod phase;
mod resolve;
pub mod status;
mod sync;
pub mod sys;
mod table;
mod worker;
mod wrapped;

pub use driver::DriverObject;
pub use endpoint::{Endpoint, MAX_ENDPOINT_ARITY, assert_endpoint};
pub use error::{
    CreateError, EventError, LookupError, NullDriverObject, RegisterError, Unavailable,
    WorkerError, WrapError,
};
pub use event::{Event, EventKind};
pub use extension::Extension;
pub use features::{Features, probe};
pub use hotswap::HotSwap;
pub use phase::{Phase, SwapCallback};
pub use status::{NtStatus, Severity};
pub use table::{EndpointEntry, EndpointId, EndpointTable};
pub use worker::{
    MAX_WORKER_EVENTS, Timeout, WaitMode, WaitReason, WaitType, WorkerRoutine, WorkerThread,
    WorkerThreadBuilder,
};
pub use wrapped::Wrapped;

// Unit tests link against the host kernel, which supplies `MmGetSystemRoutineAddress`.
#[cfg(test)]
use driver_proxy_host as _;
