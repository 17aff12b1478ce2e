//! The subcommands that send requests over one backend: `version`, `transform`, `stats`,
//! `reset`, `malformed`, `stress`, `watch`.

use std::{process::ExitCode, thread, time::Duration};

use hotswap_sample_core::StatsInfo;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Cli, Command, connect::Connector};
use crate::{
    client::{Client, ClientError, Reply},
    stress::{self, StressConfig},
    watch::{self, WatchConfig},
};

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

/// Runs one of this module's subcommands.
///
/// # Errors
/// The client's error: the backend could not be reached, a request failed.
pub(super) fn execute(cli: &Cli) -> Result<ExitCode, ClientError> {
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
            let report = crate::malformed::run(&mut Client::new(connector.connect()?))?;
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
