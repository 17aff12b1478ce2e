//! `hotswap_sample.sys`: the KMDF front end of the driver-proxy hot-swap sample, a non-PnP
//! KMDF 1.33 driver on the `wdk` crates of windows-drivers-rs, laid out like
//! microsoft/Windows-rust-driver-samples. It builds **only on Windows with the WDK**.
//!
//! Everything that is not a call into the framework lives in `hotswap-sample-core`, which
//! Linux CI compiles and tests: the IOCTL protocol and dispatch, the counters and their
//! hand-over, the worker body, and for this front end `kmdf` (SDDL, endpoint ids, the
//! mapping of `EvtIoDeviceControl` onto the dispatch), `shared` (the block both images of a
//! swap reach) and `takeover` (the phased swap callback). This crate is the framework glue
//! only: [`driver`] (`DriverEntry`), [`device`] (driver, control device, queue),
//! [`endpoints`] (the three hot-swappable routines), [`shared`] (where the shared block
//! lives) and [`swap`] (swap mode).
//!
//! # How it works (first load)
//!
//! The image's PE entry point is the framework's `FxDriverEntry` (`WdfDriverEntry.lib`),
//! which binds the image to KMDF (`WdfVersionBind`) and calls [`driver::driver_entry`]:
//!
//! 1. `HotSwap::new`: probes DriverProxy and creates the driver's extension, or falls back
//!    (kernel older than 24H2, no Secure Kernel, feature disabled, a routine the library
//!    needs missing, named in the log): then every "wrapper" below is the routine itself and
//!    the driver runs without hot swap, same code path.
//! 2. Registers one V1 `EndpointTable` with the three routines it hands out and looks their
//!    wrappers up ([`endpoints`]).
//! 3. `WdfDriverCreate` with `WdfDriverInitNonPnpDriver` and the **unload wrapper** as
//!    `EvtDriverUnload`.
//! 4. Allocates the shared block (`IoAllocateDriverObjectExtension`): the worker thread
//!    (its address, `WorkerThread::into_raw`), this image's version and exporter
//!    ([`shared`]). Unlike the WDM front end, which imports nothing the library resolves at
//!    run time, this image imports `IoAllocateDriverObjectExtension` and
//!    `IoGetDriverObjectExtension` statically (through `wdk-sys`): every Windows a KMDF 1.33
//!    driver runs on has them, but a kernel without one would refuse the image instead of
//!    running it without hot swap.
//! 5. The control device: `WdfControlDeviceInitAllocate` with SDDL
//!    `D:P(A;;GA;;;SY)(A;;GA;;;BA)` (`SDDL_DEVOBJ_SYS_ALL_ADM_ALL`: system and administrators),
//!    device type `0x8D57`, secure open, name `\Device\HotSwapSample`, `WdfDeviceCreate`,
//!    symbolic link `\DosDevices\HotSwapSample` (names from `hotswap_sample_core::names`), a
//!    default parallel queue whose `EvtIoDeviceControl` is the **device-control wrapper**,
//!    `WdfControlFinishInitializing`.
//! 6. Starts the worker thread with the library's builder on the **worker wrapper**
//!    (`hotswap.worker_thread(wrapper, ()).events(WORKER_EVENTS).timeout(WORKER_PERIOD)`):
//!    `WaitAny` on the library's stop event and the routine's kick event, 500 ms period. The
//!    kernel calls the routine through its wrapper at each wake-up, so a swap takes effect
//!    at the next tick (where hot swap is unavailable, the library runs the same loop on a
//!    plain system thread). The library owns the thread's context and events (a pool
//!    block of its own); the block holds the thread's address. When
//!    `HotSwap::worker_threads` says this kernel cannot run one (a routine missing, named in
//!    the log), the driver runs **without its worker** rather than fail.
//!
//! `EvtIoDeviceControl` passes the request's parameters and the framework's buffer
//! retrievals to the core's `kmdf::serve_device_control` (`METHOD_BUFFERED` only: one system
//! buffer, `WdfRequestRetrieveInputBuffer` / `WdfRequestRetrieveOutputBuffer`), which runs
//! `dispatch_buffered`, and completes the request with `WdfRequestCompleteWithInformation`.
//! `EvtDriverUnload` takes the worker thread back from the block (`WorkerThread::from_raw`)
//! and stops and joins it (`stop_and_join`: the library sets its stop event, waits for the
//! thread and closes its handle); the framework then deletes the control device, its link
//! and queue.
//!
//! # Which routines are wrappers
//!
//! Every routine of this driver handed to the framework or the kernel: `EvtIoDeviceControl`,
//! `EvtDriverUnload` and the worker routine (ids 1-3, `hotswap_sample_core::kmdf::ENDPOINTS`).
//! No cleanup or destroy callbacks are registered. What this driver cannot wrap is the
//! framework's own code: the `MajorFunction` table points into the framework (which calls
//! the wrappers), and `DriverObject->DriverUnload` is `FxStubDriverUnload` of
//! `WdfDriverEntry.lib`, **linked into the image that called `WdfDriverCreate`**, which
//! calls the framework, which calls `EvtDriverUnload` through its wrapper. So after a swap
//! the first image's stub code must stay mapped until the driver unloads. (Observed in
//! decompiled KMDF drivers: `FxDriverEntryWorker` displaces `DriverUnload` with the stub
//! after `DriverEntry` returns; not documented.)
//!
//! # How a swap would reach it
//!
//! Exactly as the WDM front end's swap mode (`sample/wdm/src/main.rs`, *Swap mode*), with
//! the same shared block in a driver object extension instead of the control device's
//! extension. How Windows starts a hot swap is
//! **not documented**; the V1 mechanism is: the incoming code re-registers the same ids with
//! `IoRegisterDriverProxyEndpoints` and a phased callback, and the kernel drains, stalls,
//! repoints and resumes inside that call. Here:
//!
//! * a loader maps the incoming image and calls its entry point with **the driver object of
//!   the loaded driver**. For KMDF the entry point is `FxDriverEntry`, which binds the new
//!   image to the framework first: whether `WdfVersionBind` accepts a second image for a
//!   driver object that is already bound is **unknown** (not documented, not tried);
//! * [`driver::driver_entry`] finds the shared block under its key (magic `"HSwK"`, layout
//!   checked) and enters swap mode: no framework object is created (they exist, holding the
//!   wrappers);
//! * [`swap::take_over`] re-registers the same three ids with this image's routines and the
//!   core's `TakeOver` callback: `PreProcess` checks that another image's exporter is
//!   published; **`ProxyStalled`** calls it directly and imports the snapshot into this
//!   image's counters (`State::import_from`); any failure rolls the swap back and
//!   `DriverEntry` returns that status;
//! * committed: the block names this image and its exporter, and the worker thread, taken
//!   from the block (`WorkerThread::from_raw`), kicked (its kick event makes it tick in the
//!   new code at once) and given back (`into_raw`), keeps running for the new image.
//!
//! The incoming image's endpoints call the framework (`WdfRequest*`) through the incoming
//! image's own binding; that calls on objects created under the first image's binding work
//! is the same unknown. The WDM front end has none of these framework questions, which is
//! why the project's swap tests run on it.
//!
//! # v1 and v2
//!
//! `--features v2` builds version 2 (forwarded to the core): it answers `TRANSFORM` with
//! ROT13 instead of upper-case and names itself in every response.
//!
//! # Build (Windows, WDK or eWDK, LLVM/libclang for bindgen)
//!
//! This directory is its own workspace (the repository's root `Cargo.toml` excludes it).
//! `.cargo/config.toml` adds `+crt-static` (wdk-build refuses to build without it) and links
//! with `link.exe` (the repository's config would pick `rust-lld` for the WDM cross-link).
//!
//! ```text
//! cd sample\kmdf
//! cargo install --locked cargo-make --no-default-features --features tls-native
//! cargo make                                  :: build + package: target\debug\hotswap_sample_package\
//! cargo make default --release                :: arguments after the task name go to cargo
//! cargo make default --features v2 --target aarch64-pc-windows-msvc
//! :: or, with the newer cargo-wdk:
//! cargo install cargo-wdk
//! cargo wdk build --sample [--profile release] [--target-arch arm64] [--features v2]
//! ```
//!
//! `build.rs` calls `wdk_build::configure_wdk_binary_build()`, which reads the
//! `[package.metadata.wdk.driver-model]` table (KMDF 1.33) and emits the kernel link flags
//! (`/ENTRY:FxDriverEntry`, `/DRIVER`, `/KERNEL`, ...).
//!
//! # Packaging and test signing (what `cargo make` / `cargo wdk build` run)
//!
//! The package directory holds `hotswap_sample.sys` (the `cdylib`, renamed), `.pdb`,
//! `.inf` (from `hotswap_sample.inx`, identical to `inf/hotswap_sample.inx`), `.cat` and
//! the test certificate:
//!
//! ```text
//! stampinf -f hotswap_sample.inf -d * -a amd64 -c hotswap_sample.cat -v * -k 1.33
//! inf2cat /driver:<package dir> /os:10_x64            :: arm64: /os:Server10_arm64
//! infverif /w hotswap_sample.inf
//! makecert -r -pe -a SHA256 -eku 1.3.6.1.5.5.7.3.3 -ss WDRTestCertStore -n CN=WDRLocalTestCert WDRLocalTestCert.cer
//! signtool sign /v /s WDRTestCertStore /n WDRLocalTestCert /t http://timestamp.digicert.com /fd SHA256 hotswap_sample.sys
//! signtool sign /v /s WDRTestCertStore /n WDRLocalTestCert /t http://timestamp.digicert.com /fd SHA256 hotswap_sample.cat
//! ```
//!
//! # Install (test machine)
//!
//! Test signing on and the certificate trusted, from an administrator prompt:
//!
//! ```text
//! bcdedit /set testsigning on                     :: then reboot
//! certutil -addstore root WDRLocalTestCert.cer
//! certutil -addstore TrustedPublisher WDRLocalTestCert.cer
//! devcon install hotswap_sample.inf Root\HotSwapSample
//! :: or: pnputil /add-driver hotswap_sample.inf /install, then devcon/devgen to create the node
//! hotswapctl version
//! ```
//!
//! The INX installs the service `HotSwapSample` for a root-enumerated device node
//! `Root\HotSwapSample`; that node is what makes `PnP` load the service. The driver itself is
//! non-PnP: it registers no `EvtDriverDeviceAdd` and serves its control device, not the
//! node. How `PnP` reports a node whose function driver has no `AddDevice` (a legacy driver
//! on the node) was not checked on Windows. Removal: `devcon remove Root\HotSwapSample`,
//! then `pnputil /delete-driver oemNN.inf /uninstall`. Details: `inf/README.md`.
//!
//! # What could not be verified
//!
//! Nothing of this crate has been compiled: the `wdk`, `wdk-sys` and `wdk-build` crates do
//! not build on Linux, and no Windows machine or WDK was available. The framework calls
//! follow the WDF documentation and `wdk-sys` naming; the logic they call is tested in the
//! core. `cargo xtask test` checks this crate's formatting and its manifest (KMDF 1.33
//! metadata, `cdylib`, `panic = "abort"`, `+crt-static`, the INX copy).

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(test))]
extern crate wdk_panic;

#[cfg(not(test))]
use wdk_alloc::WdkAllocator;

pub mod device;
pub mod driver;
pub mod endpoints;
pub mod shared;
pub mod swap;

use driver_proxy::{NtStatus, Unavailable};
use hotswap_sample_core::{State, THIS_BUILD};

/// The kernel allocator (`ExAllocatePool2`, non-paged). The sample never allocates: every
/// buffer is the request's, every object the framework's or the shared block.
#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: WdkAllocator = WdkAllocator;

/// This image's counters: each image has its own; a swap moves them (`swap`).
pub static STATE: State = State::new();

/// `DbgPrint("HotSwapSample v<version>: <message>")`.
pub fn log(message: &str) {
    wdk::println!("HotSwapSample v{}: {message}", THIS_BUILD.raw());
}

/// `DbgPrint("HotSwapSample v<version>: <message>: <status>")`.
pub fn log_status(message: &str, status: NtStatus) {
    wdk::println!("HotSwapSample v{}: {message}: {status}", THIS_BUILD.raw());
}

/// `DbgPrint("HotSwapSample v<version>: <message>: <why>")`, naming the kernel routine that
/// is missing when that is the reason (`Unavailable`'s `Display`).
pub fn log_unavailable(message: &str, reason: Unavailable) {
    wdk::println!("HotSwapSample v{}: {message}: {reason}", THIS_BUILD.raw());
}
