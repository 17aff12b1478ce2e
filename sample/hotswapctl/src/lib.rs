//! `hotswapctl`: the user-mode client of the driver-proxy hot-swap sample driver.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`]; everything lives here, so it is
//! tested on any machine:
//!
//! * [`cli`]: the command line (clap): options, subcommands, what each prints and its exit
//!   code.
//! * [`backend`]: the [`Backend`](backend::Backend) trait (send one I/O control request) and
//!   the Windows backend over `NtDeviceIoControlFile`.
//! * [`locate`]: which path the Windows backend opens: the sample's device interface when one
//!   is present (the KMDF build), else the symbolic link `\\.\HotSwapSample` (the WDM
//!   build), and how to say which.
//! * `host` (Linux): the in-process host kernel running the WDM sample's real `.sys`
//!   images, as a backend and a lab; `hotswapctl --backend host` and `cargo xtask demo`.
//! * [`client`]: typed requests (`VERSION`, `TRANSFORM`, `STATS`, `RESET`) over any backend.
//! * [`malformed`]: every malformed request of the core's table, each checked for its
//!   documented status.
//! * [`stress`]: N threads × M requests with a tally per answering build and per failure
//!   status, and a check that the driver's served counter lost nothing.
//! * [`watch`]: polls and reports when the answering build changes, so a swap is visible.
//! * [`fake`]: an in-memory fake of the driver for testing the client's own logic (it calls
//!   `hotswap-sample-core` directly; it is not the driver).
//! * [`lab`]: the [`Lab`](lab::Lab) trait (a backend plus swap, disable, enable, unload,
//!   reload), implemented by the fake, the host kernel and the command-running lab of the
//!   Windows VM suite (`tests/vm/`).
//! * `service` (Windows): the driver's kernel service through the Service Control Manager
//!   (stop, start, point at another image), and `ServiceLab`, the lab of the WDM build.
//! * `demo` (Linux): `hotswapctl --backend host demo`, a stress run with a hot swap in the
//!   middle and a summary.
//! * [`scenarios`]: the HLK-style scenarios (`hotswapctl scenarios`) with their pass/fail
//!   criteria, and their `JUnit` XML ([`scenarios::junit`], written with `quick-junit`).
//!
//! The protocol itself (codes, structures, statuses) is `hotswap-sample-core`'s.

pub mod backend;
pub mod cli;
pub mod client;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod demo;
pub mod fake;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod host;
pub mod lab;
pub mod locate;
pub mod malformed;
pub mod scenarios;
#[cfg(windows)]
pub mod service;
pub mod stress;
pub mod watch;
