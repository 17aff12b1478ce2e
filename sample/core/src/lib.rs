//! The framework-free core of the driver-proxy hot-swap sample driver.
//!
//! Everything of the sample that does not touch a driver framework lives here, so that the
//! KMDF front end (`sample/kmdf`, Windows only), the WDM front end (`sample/wdm`,
//! cross-linked on any machine), the `hotswapctl` client and the host-side tests all share
//! one implementation that Linux CI compiles and tests:
//!
//! * [`ioctl`]: the control codes (`CTL_CODE` semantics, `METHOD_BUFFERED`,
//!   `FILE_ANY_ACCESS`, vendor device type) and their decoding into fields.
//! * [`protocol`]: the versioned request and response structures, their byte encodings and
//!   the validation of every length and field, with the table of NTSTATUS codes each
//!   malformed input gets; [`malformed`], one request per row of that table, for the
//!   tests and for `hotswapctl malformed`.
//! * [`dispatch`]: the endpoint logic behind `IRP_MJ_DEVICE_CONTROL` /
//!   `EvtIoDeviceControl`: [`dispatch_device_control`] (separate buffers) and
//!   [`dispatch_buffered`] (the one in-place `METHOD_BUFFERED` system buffer).
//! * [`state`]: the counters that survive a hot swap ([`State`]) and the versioned
//!   hand-over snapshot ([`HandOverSnapshot`]) that the outgoing build exports and the
//!   incoming build imports while the proxy is stalled.
//! * [`worker`]: the body of the hot-swappable worker thread's routine, its type and its
//!   events and period.
//! * [`names`]: the device, symbolic-link, interface, service and hardware-id names shared with the
//!   front ends, the INF files and the client.
//! * [`takeover`]: the incoming image's phased callback of a V1 swap ([`TakeOver`]), which
//!   moves the outgoing image's [`State`] over in `ProxyStalled`.
//! * [`shared`]: the block of memory every image of a driver reaches across swaps
//!   ([`SharedBlock`]: the worker thread handed from image to image, the serving image's
//!   exporter and version).
//! * [`device_control`]: a device-control request as a framework presents it
//!   (`EvtIoDeviceControl`'s parameters, the buffers the framework's retrievals hand out),
//!   served by [`dispatch_buffered`].
//! * [`pnp`]: the framework-free half of the KMDF front end, a `PnP` function driver: its
//!   endpoint table, its device context (the worker thread the device runs in D0) and what
//!   `EvtDeviceD0Entry` / `EvtDeviceD0Exit` do with it.
//!
//! # v1 and v2
//!
//! The same source builds two versions of the driver. The cargo feature `v2` selects
//! [`THIS_BUILD`]` = `[`DriverVersion::V2`]; without it the build is
//! [`DriverVersion::V1`]. The versions differ observably (see [`DriverVersion`]): every
//! response names the version that produced it, and `TRANSFORM` answers differently
//! (v1: ASCII upper-case; v2: ROT13). Both transforms are always compiled so that tests and
//! the client's in-memory fake can model a swap in one process; the `_as` functions take the
//! version explicitly, the others use [`THIS_BUILD`].
//!
//! # IRQL
//!
//! Every function runs at any IRQL: none allocates, blocks or waits, and the crate has no
//! state of its own (a front end keeps its [`State`] where it likes, a `static` included).
//!
//! # Panics
//!
//! None: the crate denies `clippy::indexing_slicing`, `unwrap`, `expect` and `panic` outside
//! tests, so malformed input can only produce an NTSTATUS, never a bug check.

#![no_std]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn, missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod device_control;
pub mod dispatch;
pub mod ioctl;
pub mod malformed;
pub mod names;
pub mod pnp;
pub mod protocol;
pub mod shared;
pub mod state;
pub mod takeover;
mod version;
mod wire;
pub mod worker;

pub use dispatch::{
    Completion, dispatch_buffered, dispatch_buffered_as, dispatch_device_control,
    dispatch_device_control_as,
};
pub use driver_proxy::{NtStatus, Wake};
pub use ioctl::{
    Access, ControlCode, IOCTL_HOTSWAP_RESET, IOCTL_HOTSWAP_STATS, IOCTL_HOTSWAP_TRANSFORM,
    IOCTL_HOTSWAP_VERSION, Method, RequestKind, ctl_code,
};
pub use protocol::{ProtocolError, Request, Response, ResponseBody, StatsInfo, VersionInfo};
pub use shared::SharedBlock;
pub use state::{HandOverError, HandOverSnapshot, State};
pub use takeover::TakeOver;
pub use version::{DriverVersion, THIS_BUILD, transform_byte_v1, transform_byte_v2};
pub use worker::{WorkerWake, worker_routine, worker_routine_as};

// The unit tests that run worker threads on the host kernel count the library's pool
// blocks: one at a time.
#[cfg(all(test, target_os = "linux"))]
extern crate std;
#[cfg(all(test, target_os = "linux"))]
static HOST_WORKERS: std::sync::Mutex<()> = std::sync::Mutex::new(());
