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
//! standard error (`hotswapctl::locate`);
//! `--backend host` (Linux) runs the WDM sample's real `.sys` images in the in-process host
//! kernel (`hotswapctl::host`), where `demo` and the scenarios swap them for real;
//! `--backend fake` is an in-memory simulation for trying the client anywhere (not a driver;
//! see `hotswapctl::fake`).

use std::{path::PathBuf, process::ExitCode, sync::Arc, thread, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use hotswap_sample_core::{DriverVersion, StatsInfo};
use hotswapctl::{
    backend::{Backend, BackendError},
    client::{Client, ClientError, Reply},
    fake::{FakeDevice, Swapper},
    locate::{Located, locate},
    scenarios::command::ScenariosArgs,
    stress::{self, StressConfig},
    watch::{self, WatchConfig},
};
use indicatif::{ProgressBar, ProgressStyle};

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

/// `service`: one action through the Service Control Manager.
#[cfg(windows)]
fn execute_service(name: &str, action: &ServiceAction, timeout: u64) -> Result<(), String> {
    let service = hotswapctl::service::Service::new(name);
    let timeout = Duration::from_secs(timeout);
    let (what, result) = match action {
        ServiceAction::Stop => ("stopping", service.stop(timeout)),
        ServiceAction::Start => ("starting", service.start(timeout)),
        ServiceAction::SetImage { path } => ("re-pointing", service.set_image(path)),
        ServiceAction::Query => (
            "querying",
            service
                .state()
                .map(|state| println!("{name}: state {state}")),
        ),
    };
    result.map_err(|error| format!("{what} service {name}: {error}"))
}

/// `service` where there is no Service Control Manager.
#[cfg(not(windows))]
fn execute_service(_: &str, _: &ServiceAction, _: u64) -> Result<(), String> {
    Err("the service command needs Windows (or Wine)".to_owned())
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

/// Opens connections to the chosen backend.
enum Connector {
    /// The installed driver, at the path found once ([`device_path`]).
    Device(Located),
    /// The fake, and its background swapper if any (kept alive, stopped on drop).
    Fake {
        device: Arc<FakeDevice>,
        _swapper: Option<Swapper>,
    },
    /// The host kernel with the sample's images.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    Host(Arc<hotswapctl::host::HostLab>),
}

/// The path of the installed driver's device (`--device`, else its interface, else its
/// symbolic link), said on the standard error where the device backend exists.
fn device_path(cli: &Cli) -> Located {
    let located = locate(cli.device.as_deref());
    if cfg!(windows) {
        eprintln!("hotswapctl: {located}");
    }
    located
}

/// `--backend device` where there is no device backend.
#[cfg(not(windows))]
fn no_device_backend(path: &str) -> String {
    format!(
        "cannot open {path}: the device backend needs Windows (try --backend fake, an in-memory simulation)"
    )
}

/// `--backend host` where there is no host kernel.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn no_host_kernel() -> String {
    "the host kernel (--backend host) runs x64 driver images on x86-64 Linux only".to_owned()
}

/// Loads v1 of the sample into the host kernel.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn host_lab(cli: &Cli) -> Result<Arc<hotswapctl::host::HostLab>, String> {
    hotswapctl::host::HostLab::new(&cli.images, DriverVersion::V1)
        .map(Arc::new)
        .map_err(|error| {
            format!("{error} (build the images with `cargo xtask build-driver`, or pass --images)")
        })
}

impl Connector {
    fn new(cli: &Cli) -> Result<Self, BackendError> {
        Ok(match cli.backend {
            BackendChoice::Device => Self::Device(device_path(cli)),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            BackendChoice::Host => Self::Host(host_lab(cli).map_err(BackendError::Unavailable)?),
            #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
            BackendChoice::Host => return Err(BackendError::Unavailable(no_host_kernel())),
            BackendChoice::Fake => {
                let version =
                    DriverVersion::from_raw(cli.fake_version).unwrap_or(DriverVersion::V1);
                let device = FakeDevice::new(version);
                let swapper = (cli.fake_swap_every_ms > 0)
                    .then(|| device.spawn_swapper(Duration::from_millis(cli.fake_swap_every_ms)));
                Self::Fake {
                    device,
                    _swapper: swapper,
                }
            }
        })
    }

    fn connect(&self) -> Result<Box<dyn Backend>, BackendError> {
        match self {
            #[cfg(windows)]
            Self::Device(located) => Ok(Box::new(
                hotswapctl::backend::windows::DeviceBackend::open(&located.path)?,
            )),
            #[cfg(not(windows))]
            Self::Device(located) => {
                Err(BackendError::Unavailable(no_device_backend(&located.path)))
            }
            Self::Fake { device, .. } => Ok(Box::new(device.connect())),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            Self::Host(lab) => Ok(Box::new(lab.open()?)),
        }
    }
}

fn print_stats(title: &str, reply: &Reply<StatsInfo>) {
    let stats = &reply.value;
    println!("{title} (answered by {}):", reply.driver_version);
    println!(
        "  served:       {} (v1 {}, v2 {})",
        stats.served, stats.served_v1, stats.served_v2
    );
    println!("  rejected:     {}", stats.rejected);
    println!(
        "  worker ticks: {} (v1 {}, v2 {})",
        stats.worker_ticks, stats.worker_ticks_v1, stats.worker_ticks_v2
    );
    match stats.last_worker_version() {
        Some(version) => println!("  worker last ran as {version}"),
        None => println!("  worker has not ticked yet"),
    }
    println!("  swaps:        {}", stats.swaps);
}

/// `scenarios`: builds the lab for the chosen backend and runs them.
fn execute_scenarios(cli: &Cli, args: &ScenariosArgs) -> Result<ExitCode, String> {
    let lab = match cli.backend {
        BackendChoice::Fake if cli.fake_swap_every_ms > 0 => {
            return Err("--fake-swap-every-ms would swap behind the scenarios' back".into());
        }
        BackendChoice::Fake => {
            args.fake_lab(DriverVersion::from_raw(cli.fake_version).unwrap_or(DriverVersion::V1))
        }
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        BackendChoice::Host => host_lab(cli)? as Arc<dyn hotswapctl::lab::Lab>,
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        BackendChoice::Host => return Err(no_host_kernel()),
        #[cfg(windows)]
        BackendChoice::Device => args.device_lab(&device_path(cli)),
        #[cfg(not(windows))]
        BackendChoice::Device => return Err(no_device_backend(&device_path(cli).path)),
    };
    hotswapctl::scenarios::command::execute(args, &lab)
}

/// `demo`: the stress with a swap in the middle, on the host kernel.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn execute_demo(
    cli: &Cli,
    threads: u32,
    requests: u64,
    swap_at_percent: u8,
) -> Result<ExitCode, String> {
    if cli.backend != BackendChoice::Host {
        return Err("demo runs on the host kernel: add --backend host".to_owned());
    }
    let lab = host_lab(cli)?;
    let config = hotswapctl::demo::DemoConfig {
        stress: StressConfig {
            threads: threads as usize,
            requests_per_thread: requests,
        },
        swap_at: f64::from(swap_at_percent) / 100.0,
    };
    println!(
        "loaded {} into the host kernel; {threads} threads x {requests} requests, hot swap to v2 at {swap_at_percent}%",
        lab.image_path(DriverVersion::V1).display()
    );
    let bar = ProgressBar::new(config.stress.total());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} requests, {per_sec}, answered by {msg}")
    {
        bar.set_style(style);
    }
    bar.set_message("v1");
    let watcher = lab.clone();
    let report = hotswapctl::demo::run(&lab, config, &|n| {
        bar.inc(n);
        if let Some(swap) = watcher.swaps().last() {
            bar.set_message(format!("v2 (swapped after {:.1?})", swap.entry));
        }
    })?;
    bar.finish();
    println!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn execute(cli: &Cli) -> Result<ExitCode, ClientError> {
    let connector = Connector::new(cli)?;
    match &cli.command {
        Command::Version => {
            let reply = Client::new(connector.connect()?).version()?;
            let info = reply.value;
            println!(
                "{} answers: build \"{}\", protocol {}, core {}.{}.{}, TRANSFORM up to {} bytes",
                reply.driver_version,
                info.build_tag_str().unwrap_or("?"),
                info.protocol_version,
                info.core_version >> 16,
                (info.core_version >> 8) & 0xFF,
                info.core_version & 0xFF,
                info.max_transform_payload
            );
        }
        Command::Transform { text } => {
            let reply = Client::new(connector.connect()?).transform(text.as_bytes())?;
            println!(
                "{}: {}",
                reply.driver_version,
                String::from_utf8_lossy(&reply.value)
            );
        }
        Command::Stats => print_stats("counters", &Client::new(connector.connect()?).stats()?),
        Command::Reset => print_stats(
            "counters before reset",
            &Client::new(connector.connect()?).reset()?,
        ),
        Command::Malformed => {
            let report = hotswapctl::malformed::run(&mut Client::new(connector.connect()?))?;
            println!("{report}");
            if !report.passed() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Stress { threads, requests } => {
            let config = StressConfig {
                threads: *threads as usize,
                requests_per_thread: *requests,
            };
            let bar = ProgressBar::new(config.total());
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} requests, {per_sec}, eta {eta}")
            {
                bar.set_style(style);
            }
            let report = stress::run(|| connector.connect(), config, &|n| bar.inc(n))?;
            bar.finish_and_clear();
            println!("{report}");
            if !report.passed() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Watch { interval_ms, count } => {
            let mut client = Client::new(connector.connect()?);
            let config = WatchConfig {
                interval: Duration::from_millis(*interval_ms),
                polls: *count,
            };
            println!(
                "watching {} every {interval_ms} ms",
                client.backend().describe()
            );
            let summary = watch::run(&mut client, config, &mut thread::sleep, &mut |event| {
                println!("{event}");
            });
            let versions: Vec<String> = summary.versions.iter().map(ToString::to_string).collect();
            println!(
                "{} polls ({} failed), {} swap(s) seen, answered by: {}",
                summary.polls,
                summary.failed_polls,
                summary.swaps_seen,
                if versions.is_empty() {
                    "none".to_owned()
                } else {
                    versions.join(", ")
                }
            );
        }
        // Handled in `main` (their errors are not the client's).
        Command::Scenarios(_) | Command::Demo { .. } | Command::Service { .. } => {
            unreachable!("scenarios, demo and service run through their own functions")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Scenarios(args) = &cli.command {
        return execute_scenarios(&cli, args).unwrap_or_else(|error| {
            eprintln!("hotswapctl: {error}");
            ExitCode::FAILURE
        });
    }
    if let Command::Service {
        name,
        action,
        timeout,
    } = &cli.command
    {
        return match execute_service(name, action, *timeout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("hotswapctl: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Demo {
        threads,
        requests,
        swap_at_percent,
    } = cli.command
    {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        let result = execute_demo(&cli, threads, requests, swap_at_percent);
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        let result: Result<ExitCode, String> = {
            let _ = (threads, requests, swap_at_percent);
            Err(no_host_kernel())
        };
        return result.unwrap_or_else(|error| {
            eprintln!("hotswapctl: {error}");
            ExitCode::FAILURE
        });
    }
    execute(&cli).unwrap_or_else(|error| {
        eprintln!("hotswapctl: {error}");
        ExitCode::FAILURE
    })
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
