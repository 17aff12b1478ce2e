//! `hotswap_sample.sys`: the KMDF front end of the driver-proxy hot-swap sample, the **`PnP`
//! function driver** of the root-enumerated device node `Root\HotSwapSample`, on the `wdk`
//! crates of windows-drivers-rs (KMDF 1.33), laid out like the root-enumerated echo sample of
//! microsoft/Windows-rust-driver-samples. It builds **only on Windows with the WDK**.
//!
//! `devcon install hotswap_sample.inf Root\HotSwapSample` creates the node and installs this
//! package as its function driver (`inf/README.md`); `PnP` loads the image, calls `DriverEntry`,
//! then `EvtDriverDeviceAdd` for the node, then starts the device.
//!
//! Everything that is not a call into the framework lives in `hotswap-sample-core`, which
//! Linux CI compiles and tests: the IOCTL protocol and dispatch, the counters and their
//! hand-over, the worker body, and for this front end `pnp` (the endpoint table, the device
//! context and what D0 entry and exit do with the worker), `device_control` (the mapping of
//! `EvtIoDeviceControl` onto the dispatch), `shared` (the block both images of a swap reach)
//! and `takeover` (the phased swap callback). This crate is the framework glue only:
//! [`driver`] (`DriverEntry`, `EvtDriverUnload`), [`device`] (`EvtDriverDeviceAdd`,
//! `EvtDeviceD0Entry`, `EvtDeviceD0Exit`, the worker routine), [`queue`] (the default queue,
//! `EvtIoDeviceControl`), [`context`] (the device context and where its type lives),
//! [`endpoints`] (the one V1 table and its wrappers), [`abi`] (the wrappers as `wdk-sys`
//! callback types, checked at compile time), [`shared`] (where the shared block lives) and
//! [`swap`] (swap mode).
//!
//! # How it works
//!
//! The image's PE entry point is the framework's `FxDriverEntry` (`WdfDriverEntry.lib`),
//! which binds the image to KMDF (`WdfVersionBind`) and calls [`driver::driver_entry`]:
//!
//! 1. `HotSwap::new`: probes `DriverProxy` and creates the driver's extension, or falls back
//!    (kernel older than 24H2, no Secure Kernel, feature disabled, a routine the library
//!    needs missing, named in the log): then every "wrapper" below is the routine itself and
//!    the driver runs without hot swap, same code path.
//! 2. Registers one V1 `EndpointTable` with the six routines it hands out and looks their
//!    wrappers up ([`endpoints`]).
//! 3. Allocates two driver object extensions (`IoAllocateDriverObjectExtension`): the shared
//!    block (this image's version and exporter, [`shared`]) and the device context's type
//!    description ([`context`]). Unlike the WDM front end, which imports nothing the library
//!    resolves at run time, this image imports `IoAllocateDriverObjectExtension` and
//!    `IoGetDriverObjectExtension` statically (through `wdk-sys`): every Windows a KMDF 1.33
//!    driver runs on has them.
//! 4. `WdfDriverCreate` with the **device-add wrapper** as `EvtDriverDeviceAdd` and the
//!    **unload wrapper** as `EvtDriverUnload`, no driver-init flags (a `PnP` driver).
//!
//! Then `PnP` calls `EvtDriverDeviceAdd` ([`device::evt_driver_device_add`]) for the node:
//!
//! 5. `WdfDeviceInitSetPnpPowerEventCallbacks` with the **D0-entry and D0-exit wrappers**,
//!    device type `0x8D57`, secure open; `WdfDeviceCreate` with the device context
//!    (`hotswap_sample_core::pnp::DeviceContext`), written fresh right after;
//!    `WdfDeviceCreateDeviceInterface` with the sample's interface class
//!    `{33D918D7-4BFA-46DB-8221-BA6FB13AEE7A}` (`names::DEVICE_INTERFACE_GUID`, through which
//!    `hotswapctl` finds the device); `WdfDeviceCreateSymbolicLink` `\DosDevices\HotSwapSample`,
//!    the link the WDM sample creates (the device is unnamed, as `PnP` function devices are: the
//!    framework links the name to the node's physical device object); a default parallel,
//!    power-managed queue whose `EvtIoDeviceControl` is the **device-control wrapper**. The
//!    device's security is the INF's (`[...HW]`: system and administrators only).
//! 6. `EvtDeviceD0Entry` ([`device::evt_device_d0_entry`]) starts the worker thread with the
//!    library's builder on the **worker wrapper**
//!    (the core's `start_worker`:
//!    `hotswap.worker_thread(wrapper, ()).events(WORKER_EVENTS).timeout(WORKER_PERIOD)`):
//!    `WaitAny` on the library's stop event and the routine's kick event, 500 ms period; the
//!    device context holds it. When `HotSwap::worker_threads` says this kernel cannot run one
//!    (a routine missing, named in the log), the device runs **without its worker** rather
//!    than fail to start. `EvtDeviceD0Exit` ([`device::evt_device_d0_exit`]) takes it back
//!    (`WorkerThread::from_raw`) and stops and joins it: the worker runs exactly while the
//!    device is in D0.
//!
//! `EvtIoDeviceControl` ([`queue::evt_io_device_control`]) passes the request's parameters
//! and the framework's buffer retrievals to the core's `serve_device_control`
//! (`METHOD_BUFFERED` only: one system buffer, `WdfRequestRetrieveInputBuffer` /
//! `WdfRequestRetrieveOutputBuffer`), which runs `dispatch_buffered`, and completes the
//! request with `WdfRequestCompleteWithInformation`. When the node is removed or disabled,
//! D0 exit stops the worker, the framework deletes the device (its interface, link and
//! queue with it), and `PnP` unloads the driver with its last device: `EvtDriverUnload`
//! ([`driver::evt_driver_unload`]) logs what the driver served; the I/O manager frees the
//! extensions with the driver object.
//!
//! # Which routines are wrappers
//!
//! Every routine of this driver handed to the framework or the kernel:
//! `EvtDriverDeviceAdd`, `EvtDriverUnload`, `EvtDeviceD0Entry`, `EvtDeviceD0Exit`,
//! `EvtIoDeviceControl` and the worker routine, in one V1 table (ids 1-6,
//! `hotswap_sample_core::pnp::ENDPOINTS`). Each is an `unsafe extern "system" fn` (what the
//! library wraps) handed to the framework as the `wdk-sys` callback type (`extern "C"`, the
//! same convention on x64 and ARM64) through [`abi`], where a compile-time check makes any
//! difference between the two signatures a build error. Where hot swap is unavailable, the
//! library's fallback hands out the routines themselves. No cleanup or destroy callbacks are
//! registered. What this driver cannot wrap is the framework's own code: the `MajorFunction`
//! table points into the framework (which calls the wrappers), and
//! `DriverObject->DriverUnload` is `FxStubDriverUnload` of `WdfDriverEntry.lib`, **linked
//! into the image that called `WdfDriverCreate`**, which calls the framework, which calls
//! `EvtDriverUnload` through its wrapper. So after a swap the first image's stub code must
//! stay mapped until the driver unloads. (Observed in decompiled KMDF drivers:
//! `FxDriverEntryWorker` displaces `DriverUnload` with the stub after `DriverEntry` returns;
//! not documented.)
//!
//! # The device context across images
//!
//! KMDF finds a context by the address of its type description; a description declared in
//! an image (`WDF_DECLARE_CONTEXT_TYPE`) is another address in every image, and would be
//! unmapped with the first one. This driver keeps the description in a driver object
//! extension, written once by the first image, so every image finds the device context the
//! first one created ([`context`]; `hotswap_sample_core::pnp`, *The device context across
//! images*).
//!
//! # How a swap would reach it
//!
//! Exactly as the WDM front end's swap mode (`sample/wdm/src/main.rs`, *Swap mode*), with
//! the shared block in a driver object extension instead of the device's extension. How
//! Windows starts a hot swap is **not documented**; the V1 mechanism is: the incoming code
//! re-registers the same ids with `IoRegisterDriverProxyEndpoints` and a phased callback,
//! and the kernel drains, stalls, repoints and resumes inside that call. Here:
//!
//! * a loader maps the incoming image and calls its entry point with **the driver object of
//!   the loaded driver**. For KMDF the entry point is `FxDriverEntry`, which binds the new
//!   image to the framework first: whether `WdfVersionBind` accepts a second image for a
//!   driver object that is already bound is **unknown** (not documented, not tried);
//! * [`driver::driver_entry`] finds the shared block under its key (magic `"HSwK"`, layout
//!   checked) and enters swap mode: no framework object is created (the driver, the device
//!   and its queue exist, holding the wrappers);
//! * [`swap::take_over`] re-registers the same six ids with this image's routines and the
//!   core's `TakeOver` callback: `PreProcess` checks that another image's exporter is
//!   published; **`ProxyStalled`** calls it directly and imports the snapshot into this
//!   image's counters (`State::import_from`); any failure rolls the swap back and
//!   `DriverEntry` returns that status;
//! * committed: the block names this image and its exporter. The worker thread keeps
//!   running; its next wake-up runs this image's routine. Later callbacks (a D0 exit, a
//!   device added) look up this image's wrappers ([`endpoints::this_image`]) and the same
//!   device context.
//!
//! The incoming image's endpoints call the framework (`WdfRequest*`, `WdfDevice*`) through
//! the incoming image's own binding (`WdfFunctions`, `WdfDriverGlobals`); that calls on
//! objects created under the first image's binding work is the same unknown. The WDM front
//! end has none of these framework questions, which is why the project's swap tests run on
//! it.
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
//! :: or: devgen /add /bus ROOT /hardwareid Root\HotSwapSample, then
//! ::     pnputil /add-driver hotswap_sample.inf /install
//! hotswapctl version                              :: "device: \\?\ROOT#SAMPLE#0000#{33d918d7-…} (device interface …)"
//! ```
//!
//! Device Manager then shows *driver-proxy hot-swap sample (KMDF)* under *Samples*, working.
//! Removal: `devcon remove Root\HotSwapSample`, then `pnputil /delete-driver oemNN.inf
//! /uninstall`. Details, and what Device Manager shows: `inf/README.md`.
//!
//! # What could not be verified
//!
//! Nothing of this crate has been compiled: the `wdk`, `wdk-sys` and `wdk-build` crates do
//! not build on Linux, and no Windows machine or WDK was available. The framework calls and
//! types follow the WDF headers and the `wdk-sys` 0.5.2 / `wdk` 0.5.0 sources (bindgen's
//! output is generated at build time from the WDK, so the exact generated items were
//! inferred from its configuration and from drivers built on it); the logic they call is
//! tested in the core; the callback signatures are checked against `wdk-sys` at compile time
//! ([`abi`]) and will be checked when the crate is first built. `cargo xtask test` checks
//! this crate's formatting and its manifest (KMDF 1.33 metadata, `cdylib`, `panic =
//! "abort"`, `+crt-static`, the INX copy, the `PnP` structure). Not checked on Windows: the
//! device coming up under `PnP` as described, the interface and link, D0 entry and exit, the
//! unload with the last device; and for a swap, whether a second KMDF image can bind to an
//! already bound driver and take over the callbacks of the framework objects the first
//! image created (above).

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(test))]
extern crate wdk_panic;

#[cfg(not(test))]
use wdk_alloc::WdkAllocator;

pub mod abi;
pub mod context;
pub mod device;
pub mod driver;
pub mod endpoints;
pub mod queue;
pub mod shared;
pub mod swap;

use core::fmt;
use core::mem::size_of;

use driver_proxy::{NtStatus, Unavailable};
use hotswap_sample_core::{State, THIS_BUILD};
use wdk_sys::ULONG;

/// The kernel allocator (`ExAllocatePool2`, non-paged). The sample never allocates: every
/// buffer is the request's, every object the framework's or a driver object extension.
#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: WdkAllocator = WdkAllocator;

/// This image's counters: each image has its own; a swap moves them (`swap`).
pub static STATE: State = State::new();

/// The `Size` member of a WDF structure (`WDF_STRUCTURE_SIZE`).
#[must_use]
pub const fn wdf_size<T>() -> ULONG {
    const { assert!(size_of::<T>() <= ULONG::MAX as usize) };
    #[allow(clippy::cast_possible_truncation, reason = "asserted above")]
    let size = size_of::<T>() as ULONG;
    size
}

/// `DbgPrint("HotSwapSample v<version>: <formatted message>")`.
pub fn log_args(message: fmt::Arguments<'_>) {
    wdk::println!("HotSwapSample v{}: {message}", THIS_BUILD.raw());
}

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
