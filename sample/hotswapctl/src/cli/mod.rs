//! The command line of `hotswapctl` (`src/main.rs` calls [`main`]): its options and
//! subcommands, and what each does, in one file per kind of work:
//!
//! | module | subcommands |
//! |---|---|
//! | `requests` | `version`, `transform`, `stats`, `reset`, `malformed`, `stress`, `watch`: requests over one backend |
//! | `scenarios` | `scenarios`: its options ([`ScenariosArgs`]), the lab they choose, the report and the `JUnit` file |
//! | `service` | `service`: the Service Control Manager (Windows) |
//! | `demo` | `demo`: the host kernel's swap under load (Linux x86-64) |
//! | `connect` | where requests go (`--backend`, `--device`): the connections the others use |
//!
//! Everything they run is the library's ([`crate`]); this module only reads the command line,
//! prints, and turns results into exit codes.
//!
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
//! `--backend device` (the default) opens the installed driver and exists on Windows only: the
//! sample's device interface when one is present (the KMDF build), else its symbolic link
//! `\\.\HotSwapSample` (the WDM build), or `--device PATH`; the path used, and why, goes to
//! standard error ([`crate::locate`]);
//! `--backend host` (Linux) runs the WDM sample's real `.sys` images in the in-process host
//! kernel (`crate::host`), where `demo` and the scenarios swap them for real;
//! `--backend fake` is an in-memory simulation for trying the client anywhere (not a driver;
//! see [`crate::fake`]).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

mod connect;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod demo;
mod requests;
mod scenarios;
mod service;

pub use scenarios::{FaultChoice, ScenariosArgs};

/// Drive the driver-proxy hot-swap sample driver.
#[derive(Debug, Parser)]
#[command(name = "hotswapctl", version)]
struct Cli {
    /// Where requests go.
    #[arg(long, value_enum, default_value_t = BackendChoice::Device, global = true)]
    backend: BackendChoice,

    /// Device path for `--backend device` (default: the sample's device interface when one is
    /// present, else its symbolic link `\\.\HotSwapSample`; the path used is printed).
    #[arg(long, global = true)]
    device: Option<String>,

    /// `--backend fake`: the build loaded at start (1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=2), global = true)]
    fake_version: u16,

    /// `--backend fake`: swap between v1 and v2 every this many milliseconds (0: never).
    #[arg(long, default_value_t = 0, global = true)]
    fake_swap_every_ms: u64,

    /// `--backend host`: the directory of the x64 images `hotswap_sample_v1.sys` and
    /// `hotswap_sample_v2.sys` (`cargo xtask build-driver` writes them); v1 is loaded at start.
    #[arg(long, default_value = "target/drivers/amd64", global = true)]
    images: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Which build answers (VERSION).
    Version,
    /// Transform TEXT (TRANSFORM): v1 upper-cases ASCII letters, v2 applies ROT13.
    Transform {
        /// The text to send (at most 4096 bytes of UTF-8).
        text: String,
    },
    /// Print the driver's counters (STATS).
    Stats,
    /// Send every malformed request of the protocol's status table; check that each is
    /// refused with its documented status and counted as rejected.
    Malformed,
    /// Print the driver's counters, then zero them (RESET).
    Reset,
    /// Send THREADS x REQUESTS requests; summary per answering build and per failure status.
    Stress {
        /// Threads, each with its own handle.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        threads: u32,
        /// Requests per thread.
        #[arg(long, default_value_t = 1000)]
        requests: u64,
    },
    /// Poll the driver and print when the answering build changes.
    Watch {
        /// Time between polls, in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// Stop after this many polls (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Run the HLK-style scenarios (smoke, swap-stress, worker-swap, disable-enable,
    /// unload-reload), each with pass/fail criteria; optionally write `JUnit` XML.
    Scenarios(Box<ScenariosArgs>),
    /// Windows: control the driver's kernel service NAME through the Service Control
    /// Manager. A cold swap (another image loaded from scratch) is stop, set-image, start.
    Service {
        /// The service (the WDM build: `HotSwapSampleWdm`).
        name: String,
        /// What to do.
        #[command(subcommand)]
        action: ServiceAction,
        /// Longest wait for stop or start to take effect, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// `--backend host` only: stress the driver and hot-swap it from v1 to v2 in the middle,
    /// then summarise (served per build, errors, drain and stall of the swap).
    Demo {
        /// Threads, each with its own handle.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        threads: u32,
        /// Requests per thread.
        #[arg(long, default_value_t = 250_000)]
        requests: u64,
        /// Swap when this percentage of the requests has completed.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
        swap_at_percent: u8,
    },
}

/// What `hotswapctl service` does.
#[derive(Debug, Subcommand)]
enum ServiceAction {
    /// Stop the service (the driver unloads) and wait until it is stopped.
    Stop,
    /// Start the service (the driver loads) and wait until it is running.
    Start,
    /// Point the service at another image (takes effect at the next start).
    SetImage {
        /// The image's path, as the service database takes it (`C:\…\x.sys`).
        path: String,
    },
    /// Print the service's state.
    Query,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    /// The installed driver, through its device (Windows only).
    Device,
    /// An in-memory simulation of the protocol, for trying the client anywhere: NOT a driver.
    Fake,
    /// The WDM sample's real `.sys` images in the in-process host kernel (Linux x86-64).
    Host,
}

/// `hotswapctl`: parses the command line and runs the subcommand; errors go to standard error
/// with the exit code 1.
#[must_use]
pub fn main() -> ExitCode {
    run(&Cli::parse())
}

/// Runs `cli`'s subcommand.
fn run(cli: &Cli) -> ExitCode {
    let result = match &cli.command {
        Command::Scenarios(args) => scenarios::execute(cli, args),
        Command::Service {
            name,
            action,
            timeout,
        } => service::execute(name, action, *timeout).map(|()| ExitCode::SUCCESS),
        Command::Demo {
            threads,
            requests,
            swap_at_percent,
        } => demo(cli, *threads, *requests, *swap_at_percent),
        _ => requests::execute(cli).map_err(|error| error.to_string()),
    };
    result.unwrap_or_else(|error| {
        eprintln!("hotswapctl: {error}");
        ExitCode::FAILURE
    })
}

/// `demo`, on the host kernel.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn demo(cli: &Cli, threads: u32, requests: u64, swap_at_percent: u8) -> Result<ExitCode, String> {
    demo::execute(cli, threads, requests, swap_at_percent)
}

/// `demo` where there is no host kernel.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn demo(_: &Cli, _: u32, _: u64, _: u8) -> Result<ExitCode, String> {
    Err(connect::no_host_kernel())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn arguments_parse_into_commands() {
        let cli = Cli::try_parse_from([
            "hotswapctl",
            "stress",
            "--threads",
            "8",
            "--requests",
            "5",
            "--backend",
            "fake",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Stress {
                threads: 8,
                requests: 5
            }
        ));
        assert_eq!(cli.backend, BackendChoice::Fake);
        assert!(Cli::try_parse_from(["hotswapctl", "stress", "--threads", "0"]).is_err());
        assert!(Cli::try_parse_from(["hotswapctl", "version", "--fake-version", "3"]).is_err());
        let cli = Cli::try_parse_from(["hotswapctl", "transform", "hello world"]).unwrap();
        assert!(matches!(cli.command, Command::Transform { ref text } if text == "hello world"));
        assert_eq!(cli.device, None, "found, not defaulted");
        let cli = Cli::try_parse_from(["hotswapctl", "version", "--device", r"\\.\X"]).unwrap();
        assert_eq!(cli.device.as_deref(), Some(r"\\.\X"));
    }
}
