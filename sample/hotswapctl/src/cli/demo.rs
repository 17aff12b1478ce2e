//! `hotswapctl --backend host demo`: the stress with a hot swap in the middle, on the host
//! kernel, with a progress bar.

use std::process::ExitCode;

use hotswap_sample_core::DriverVersion;
use indicatif::{ProgressBar, ProgressStyle};

use super::{BackendChoice, Cli, connect::host_lab};
use crate::stress::StressConfig;

/// `demo`: the stress with a swap in the middle, on the host kernel.
pub(super) fn execute(
    cli: &Cli,
    threads: u32,
    requests: u64,
    swap_at_percent: u8,
) -> Result<ExitCode, String> {
    if cli.backend != BackendChoice::Host {
        return Err("demo runs on the host kernel: add --backend host".to_owned());
    }
    let lab = host_lab(cli)?;
    let config = crate::demo::DemoConfig {
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
    let report = crate::demo::run(&lab, config, &|n| {
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
