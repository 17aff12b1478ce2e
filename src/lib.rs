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
//! * **V1** (deprecated by Microsoft, but what a Rust driver can use): the driver registers a
//!   table of `{id, endpoint, parameter count}` with `IoRegisterDriverProxyEndpoints` and
//!   looks wrappers up by id. Registering the same ids again *is* the swap, with the phased
//!   callback above: [`EndpointTable`], [`HotSwap::register`], [`HotSwap::wrapper`]. A new
//!   image of the driver takes over by registering the same ids from its `DriverEntry`
//!   ([`HotSwap::from_driver_object`]).
//! * **V2** (current): the compiler and linker list the endpoints in a PE section named
//!   `.shsept`, the kernel wraps them when the extension is created, and a wrapper is looked up
//!   by the endpoint's address (`IofGetDriverProxyWrapperFromEndpoint`, the
//!   `IoGetDriverProxyWrapperFromEndpoint` macro in C): [`HotSwap::wrap`]. Rust toolchains
//!   cannot emit `.shsept` today (its format is undocumented), so for a Rust driver `wrap`
//!   finds the endpoints it registered with V1 by address. The host kernel of this project
//!   models `.shsept` (`DriverControl::declare_image_endpoints` in `driver-proxy-host`), which
//!   is how its tests exercise the V2 lookup.
//!
//! The parameter count is derived from the endpoint's type ([`Endpoint::ARITY`]); an id is
//! typed with its endpoint's signature ([`EndpointId`]), so a lookup returns a [`Wrapped`] of
//! the right type, and calling a `Wrapped<F>` is exactly one indirect call.
//!
//! # Which calls are allowed in which phase
//!
//! | phase | calls into the driver's endpoints (through wrappers) | the callback may |
//! |---|---|---|
//! | [`Phase::PreProcess`] | flow to the old implementation | call wrappers, allocate, take locks |
//! | [`Phase::ProxyStalled`] | none runs, new ones are held | touch endpoint state; **not** call a wrapper of the driver (it would wait for this phase to end) |
//! | [`Phase::PostProcess`] | flow to the new implementation | call wrappers, release locks, log |
//!
//! No phase may register again ([`RegisterError::Busy`]). A panic in the callback never
//! unwinds into the kernel: the trampoline is an `extern "system"` function, so the panic
//! aborts (a driver is built with `panic = "abort"`; its panic handler normally stops the
//! system), with the swap half done. Return `Err(status)` to refuse a phase: the kernel rolls
//! the swap back and [`HotSwap::register`] returns [`RegisterError::Callback`].
//!
//! # Fallback
//!
//! Drivers must keep loading on kernels without Driver Hot-Swap, so this crate imports only
//! `MmGetSystemRoutineAddress` and resolves everything else at run time, once.
//! [`HotSwap::new`] checks every routine it will call later; where hot-swap is unavailable (a
//! routine missing, named in [`Unavailable::ExportMissing`]; the feature disabled for the
//! driver; creation answering `STATUS_NOT_SUPPORTED` or `STATUS_DRIVER_BLOCKED`; the kernel
//! refusing the storage of the endpoint record, [`Unavailable::RecordRefused`]), it falls
//! back: wrappers are the endpoints themselves, registration does nothing, worker threads are
//! plain system threads, and [`HotSwap::unavailable`] says why. Worker threads have their own
//! check ([`HotSwap::worker_threads`]), so a driver knows before it starts one. The driver has
//! one code path.
//!
//! The crate needs nothing newer than Windows 10 1709 outside DriverProxy itself: it allocates
//! pool with `ExAllocatePool2` where the kernel has it (Windows 10 2004 and later) and with
//! `ExAllocatePoolWithTag` and zeroing elsewhere, and keeps its endpoint record in a
//! driver-object extension (`IoAllocateDriverObjectExtension`, Windows 2000).
//!
//! # Soundness
//!
//! Safe code using this crate cannot reach undefined behaviour. The `unsafe` entry points are
//! [`DriverObject::from_raw`] (the pointer `DriverEntry` received) and
//! [`WorkerThread::from_raw`] (taking back a thread handed on). These invariants hold:
//!
//! 1. **A `Wrapped<F>` only ever forwards to code of signature `F`.** The crate keeps an
//!    *endpoint record* in storage the driver object owns: for every V1 id, the image whose
//!    registration is in force and that image's `TypeId` of the endpoint type; for every
//!    address handed out by [`HotSwap::wrap`], its type. A lookup succeeds only for an id
//!    this image registered with exactly `F`; a registration that would give an id (or a
//!    handed-out address) another type is refused before the kernel sees it
//!    ([`RegisterError::SignatureMismatch`]). The table passed to a lookup is checked too, but
//!    it is not what makes the lookup sound: the record is.
//! 2. **Across images**, `TypeId`s of two compilations cannot be compared. A new image can
//!    only look up the ids *it* registered ([`LookupError::RegisteredByAnotherImage`]); when
//!    it re-registers an id of the old image, the record compares what is comparable (the
//!    parameter count and a fingerprint of the type's name, [`Endpoint::signature`]). That an
//!    id keeps its signature from one version of the driver to the next is the contract of
//!    hot swap; the old image's own wrappers die with it, because no code of the old image
//!    runs after the swap (every way into it was a wrapper, drained before the repoint).
//! 3. **A worker routine gets the context it reads.** [`WorkerRoutine<T, EVENTS>`] carries
//!    the context's type and the event count; [`HotSwap::worker_thread`] takes a `T`.
//! 4. **Nothing the kernel holds lives in an image.** A worker thread's context, events and
//!    stop request live in storage this crate allocates (non-paged pool, tag `DPwk`), never in
//!    the image, which a swap unmaps while the kernel keeps waiting on those events. No
//!    `static` of the image is ever handed to the kernel by safe code. The endpoint record
//!    lives in a driver-object extension, which outlives every image.
//! 5. **The storage outlives every use of it.** The routine sees its context through a
//!    [`WorkerRef`], which cannot leave the worker thread (it is neither `Send` nor `Sync`) and
//!    lends the context to a closure only ([`WorkerRef::with`]), and [`WorkerThread`] frees the
//!    storage only after the thread has ended; dropping a
//!    `WorkerThread` stops and joins it, [`WorkerThread::into_raw`] hands it on explicitly.
//!
//! Each of these has a test that fails without it (`tests/soundness.rs`, and the
//! compile-fail examples on [`HotSwap::worker_thread`] and [`Endpoint`]).
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
//! A WDM driver whose device-control dispatch routine and worker thread are hot-swappable
//! (V1). The same code runs here, in a test process, on the host kernel of this project
//! (`driver-proxy-host`), and on Windows: the dispatch routine handed to the I/O manager is a
//! real wrapper where the kernel has Driver Hot-Swap, and the routine itself elsewhere.
//!
//! ```
//! # extern crate driver_proxy_host;
//! use core::ffi::c_void;
//! use core::sync::atomic::{AtomicU32, Ordering};
//! use driver_proxy::{
//!     DriverObject, EndpointEntry, EndpointId, EndpointTable, EventKind, HotSwap, NtStatus,
//!     Phase, Timeout, Wake, WorkerRef, WorkerRoutine, sys,
//! };
//!
//! /// `DRIVER_DISPATCH`: `NTSTATUS Dispatch(PDEVICE_OBJECT, PIRP)`.
//! type Dispatch = unsafe extern "system" fn(*mut c_void, *mut c_void) -> NtStatus;
//! /// The worker: a context of type `Ticks`, one event of its own (a "kick").
//! type Worker = WorkerRoutine<Ticks, 1>;
//!
//! const DEVICE_CONTROL: EndpointId<Dispatch> = EndpointId::new(1);
//! const WORKER: EndpointId<Worker> = EndpointId::new(2);
//!
//! #[derive(Default)]
//! struct Ticks(AtomicU32);
//!
//! unsafe extern "system" fn device_control(_device: *mut c_void, _irp: *mut c_void) -> NtStatus {
//!     NtStatus::SUCCESS // complete the IRP here
//! }
//!
//! extern "system" fn worker(worker: WorkerRef<Ticks, 1>, status: NtStatus) -> bool {
//!     match worker.wake(status) {
//!         Wake::Stop => false, // asked to end: end
//!         Wake::Event(0) | Wake::Timeout => {
//!             worker.with(|ticks| ticks.0.fetch_add(1, Ordering::Relaxed));
//!             true
//!         }
//!         _ => true,
//!     }
//! }
//!
//! /// `DriverEntry`'s body (export the entry with `#[unsafe(export_name = "DriverEntry")]`).
//! fn driver_entry(driver: DriverObject) -> Result<(), NtStatus> {
//!     // Probe and create the extension; falls back on kernels without hot-swap.
//!     let hotswap = HotSwap::new(driver)?;
//!     // Register the endpoints (V1). A new version of the driver registers the same ids
//!     // again, with a callback that carries state over in Phase::ProxyStalled.
//!     let table = EndpointTable::new([
//!         EndpointEntry::new(DEVICE_CONTROL, device_control as Dispatch),
//!         EndpointEntry::new(WORKER, worker as Worker),
//!     ])?;
//!     hotswap.register(&table, Some(&mut |_phase: Phase| Ok(())))?;
//!     // Hand out the wrapper, never `device_control` itself:
//!     // (*driver_object).MajorFunction[IRP_MJ_DEVICE_CONTROL] = Some(dispatch.get());
//!     let dispatch = hotswap.wrapper(&table, DEVICE_CONTROL)?;
//!     // SAFETY: a dispatch routine may be called with the pointers the I/O manager gives it.
//!     assert_eq!(unsafe { dispatch.get()(core::ptr::null_mut(), core::ptr::null_mut()) }, NtStatus::SUCCESS);
//!     // A worker thread: the kernel calls the worker's wrapper after each wait.
//!     if hotswap.worker_threads().is_ok() {
//!         let thread = hotswap
//!             .worker_thread(hotswap.wrapper(&table, WORKER)?, Ticks::default())
//!             .events([EventKind::Synchronization])
//!             .timeout(Timeout::from_millis(500))
//!             .spawn()?;
//!         thread.event(0).map(|kick| kick.set());
//!         // Unload: stop and join (dropping the thread does the same).
//!         thread.stop_and_join()?;
//!     }
//!     Ok(())
//! }
//!
//! let mut driver_object = driver_proxy_host::HostDriverObject::new();
//! // SAFETY: the host driver object outlives everything made from it in this example.
//! let driver = unsafe { DriverObject::from_raw(driver_object.as_raw()) }?;
//! assert_eq!(driver_entry(driver), Ok(()));
//! # Ok::<(), driver_proxy::NullDriverObject>(())
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]

mod driver;
mod endpoint;
mod error;
mod event;
mod features;
mod hotswap;
mod phase;
mod record;
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
pub use event::{Event, EventKind, EventRef};
pub use features::{Features, probe};
pub use hotswap::HotSwap;
pub use phase::{Phase, SwapCallback};
pub use record::MAX_ENDPOINTS;
pub use status::{NtStatus, Severity};
pub use table::{EndpointEntry, EndpointId, EndpointTable};
pub use worker::{
    MAX_WORKER_EVENTS, Timeout, WaitMode, WaitReason, WaitType, Wake, WorkerRef, WorkerRoutine,
    WorkerThread, WorkerThreadBuilder,
};
pub use wrapped::Wrapped;

// Unit tests link against the host kernel, which supplies `MmGetSystemRoutineAddress`.
#[cfg(test)]
use driver_proxy_host as _;
