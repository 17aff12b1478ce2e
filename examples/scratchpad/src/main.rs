//! `scratchpad.sys`: the example driver of `driver-proxy`, written only against the library
//! and ordinary WDM (its own bindings, [`driver::wdm`]), to show that the build command and
//! the host kernel's test harness work for any driver, not only for the sample.
//!
//! A legacy (non-PnP) driver with one device, `\Device\Scratchpad` (link
//! `\DosDevices\Scratchpad`), that holds 4 KiB in non-paged pool (tag `'SPdt'`):
//!
//! * reads and writes over **direct I/O** (`DO_DIRECT_IO`: the I/O manager locks the caller's
//!   buffer and hands an MDL, mapped with `MmGetSystemAddressForMdlSafe`);
//! * device controls of **every transfer type**: `INFO` (`METHOD_BUFFERED`), `LOAD`
//!   (`METHOD_IN_DIRECT`), `DUMP` (`METHOD_OUT_DIRECT`), `CHECKSUM` (`METHOD_NEITHER`, the
//!   caller's buffers probed with `ProbeForRead`/`ProbeForWrite`); the protocol is the
//!   library target (`src/lib.rs`);
//! * a **work item** (`IoQueueWorkItem`) that flushes: each write queues it (once at a time),
//!   and its routine computes the store's checksum. The routine is a hot-swappable endpoint
//!   like the dispatch routines: the kernel calls it through its DriverProxy wrapper, so after
//!   a swap the next flush runs in the new image.
//!
//! Every routine the driver hands to the kernel (the dispatch routines, `DriverUnload`, the
//! work-item routine) is registered in one V1 endpoint table and handed out as its wrapper.
//! Everything that must outlive an image (the store, the counters, the work item, the
//! wrapper of the flush routine) lives in the device extension, which both images of a swap
//! reach through the driver object.
//!
//! # Swap mode
//!
//! A loader swaps the driver by calling the incoming image's `DriverEntry` with the loaded
//! driver's object (as the host kernel's `TestDriver::swap_to` does). The entry finds the
//! device there, checks its extension (magic `'SPad'` and layout), re-registers the same
//! endpoint ids with its own routines and a phased callback (in `ProxyStalled`, with no
//! endpoint running, it counts the swap and records itself as the serving version); the
//! kernel drains calls in the old image, repoints every wrapper and resumes. Nothing else is
//! handed over: the state is in the device extension.
//!
//! # Build and test
//!
//! ```text
//! cargo xtask build-driver --manifest-path examples/scratchpad/Cargo.toml --arch amd64 --name scratchpad_v1
//! cargo xtask build-driver --manifest-path examples/scratchpad/Cargo.toml --arch amd64 --name scratchpad_v2 --features v2
//! cargo test --manifest-path examples/scratchpad/Cargo.toml
//! ```
//!
//! The images go to `examples/scratchpad/target/drivers/<arch>/`; the tests
//! (`tests/scratchpad.rs`) load them into the host kernel through
//! `driver_proxy_host::harness`. Feature `test-leak-pool` (test only) builds an image that
//! leaks one pool block, for the test of the leak report.
//!
//! Built for the Linux host (as `cargo test` does), this binary is a stub that says how to
//! build the image.

#![cfg_attr(all(target_os = "windows", target_env = "msvc"), no_std, no_main)]

#[cfg(all(target_os = "windows", target_env = "msvc"))]
pub mod driver;

#[cfg(not(all(target_os = "windows", target_env = "msvc")))]
fn main() {
    eprintln!(
        "scratchpad is a Windows kernel driver: build it with `cargo xtask build-driver \
         --manifest-path examples/scratchpad/Cargo.toml` (or --target x86_64-pc-windows-msvc / \
         aarch64-pc-windows-msvc); its tests run on Linux with `cargo test`"
    );
    std::process::exit(2);
}
