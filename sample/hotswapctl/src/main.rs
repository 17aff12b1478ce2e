//! `hotswapctl`: drive the driver-proxy hot-swap sample from user mode.
//!
//! ```text
//! hotswapctl version
//! hotswapctl transform "hello"
//! hotswapctl stats | reset
//! hotswapctl malformed
//! hotswapctl service HotSwapSampleWdm stop | start | set-image C:\…\v2.sys | query
//! hotswapctl stress --threads 8 --requests 10000
//! hotswapctl watch --interval-ms 250
//! hotswapctl scenarios --quick --junit results.xml --swap-command "…{version}…"
//! hotswapctl --backend host --images target/drivers/amd64 demo
//! ```
//!
//! The command line and everything it runs are the library's (`hotswapctl::cli`, tested with
//! the rest); this binary only calls it.

use std::process::ExitCode;

fn main() -> ExitCode {
    hotswapctl::cli::main()
}
