//! The checks of the stage: `hotswapctl.exe` run under Wine against the driver, each answer
//! compared with what the protocol and the build say it must be, every counter delta
//! exact (nothing else uses the device).
//!
//! In order, with the image under test loaded as the service's first image:
//! `reset`, `version`, `transform`, `stats`, `malformed`, `stats`, `stress` between two
//! `stats`, `watch`, the worker's ticks, the scenarios through the service lab, then the
//! cold swap under test → v2 → under test (stop, `set-image`, start; each build checked by
//! `version`, `transform` and fresh counters), and a last stop.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hotswap_sample_core::{
    DriverVersion,
    malformed::MALFORMED_REQUESTS,
    names::{WDM_SERVICE_NAME, WIN32_DEVICE_PATH},
    protocol::{CORE_VERSION, MAX_TRANSFORM_PAYLOAD, PROTOCOL_VERSION},
};

use super::{
    parse::{self, Counters},
    session::{Output, Session},
};

/// Stress: 2 threads of this many requests each.
pub const STRESS_REQUESTS_PER_THREAD: u64 = 10_000;
/// `watch`: this many polls, this far apart.
const WATCH_POLLS: u64 = 10;
const WATCH_INTERVAL_MS: u64 = 100;
/// The text `transform` sends.
const TRANSFORM_TEXT: &str = "Hello, Wine! 0123";
/// Time limit of one client command (the stress and the scenarios get more).
const COMMAND_TIMEOUT: Duration = Duration::from_mins(1);
const LONG_TIMEOUT: Duration = Duration::from_mins(3);
/// The scenarios Wine can run (no hot swap, no device node), and those it cannot.
const RUNNABLE: [&str; 2] = ["smoke", "unload-reload"];
const NOT_RUNNABLE: [&str; 3] = ["swap-stress", "worker-swap", "disable-enable"];

/// The numbers the stage prints.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests the stage's commands sent (the scenarios' own are not counted here).
    pub requests: u64,
    /// Malformed requests whose documented status was checked.
    pub statuses: u64,
    /// Scenarios run and passed.
    pub scenarios_run: Vec<String>,
    /// Scenarios skipped, with the reason.
    pub scenarios_skipped: Vec<(String, String)>,
    /// Cold swaps made (each checked).
    pub cold_swaps: u32,
    /// Service starts the stage made.
    pub starts: u32,
    /// Worker ticks seen.
    pub worker_ticks: u64,
}

/// The images of the service, as Windows paths inside the prefix.
#[derive(Debug)]
pub struct Images {
    /// The image under test (v1, or the `--image` given).
    pub under_test: String,
    /// v2, for the cold swap.
    pub v2: String,
}

/// The client says which device path it opened (its standard error). Under Wine the WDM
/// service registers no device interface of the sample's class, so the client must have
/// fallen back to the symbolic link, and said so.
///
/// # Errors
/// When the client opened something else, or did not say.
fn uses_the_symbolic_link(stderr: &str) -> Result<()> {
    let expected = format!("hotswapctl: device: {WIN32_DEVICE_PATH} (the symbolic link: ");
    ensure!(
        stderr.lines().any(|line| line.starts_with(&expected)),
        "the client under Wine did not say it fell back to the symbolic link (`{expected}…`); its standard error: {}",
        stderr.trim_end()
    );
    Ok(())
}

/// Runs the client under Wine.
pub struct Checks<'a> {
    session: &'a mut Session,
    exe: String,
    /// What was checked so far.
    pub tally: Tally,
}

impl<'a> Checks<'a> {
    /// Checks run with the client at `exe` (a Windows path in the prefix).
    pub fn new(session: &'a mut Session, exe: String) -> Self {
        Self {
            session,
            exe,
            tally: Tally::default(),
        }
    }

    /// `hotswapctl <args>`; its output if it succeeded.
    fn client(&mut self, args: &[&str], timeout: Duration) -> Result<Output> {
        let exe = self.exe.clone();
        self.session.client(&exe, args, timeout)?.ok()
    }

    fn counters(&mut self, command: &str) -> Result<Counters> {
        let output = self.client(&[command], COMMAND_TIMEOUT)?;
        self.tally.requests += 1;
        parse::counters(&output.stdout)
    }

    fn service(&mut self, args: &[&str]) -> Result<()> {
        let mut all = vec!["service", WDM_SERVICE_NAME];
        all.extend(args);
        self.client(&all, COMMAND_TIMEOUT)
            .with_context(|| format!("service {} {}", WDM_SERVICE_NAME, args.join(" ")))?;
        if args.first() == Some(&"start") {
            self.tally.starts += 1;
        }
        Ok(())
    }

    /// Starts the service (its `DriverEntry` runs in `winedevice.exe`).
    ///
    /// # Errors
    /// When the service does not start (the driver failed to load or `DriverEntry` failed).
    pub fn start(&mut self) -> Result<()> {
        self.service(&["start"])
            .context("the driver did not start under Wine (see target/wine/wine.log)")
    }

    /// Stops the service (its `DriverUnload` runs).
    ///
    /// # Errors
    /// When the service does not stop.
    pub fn stop(&mut self) -> Result<()> {
        self.service(&["stop"])
    }

    /// `version`: exactly the line of `version`'s build, from the device the client found
    /// through its symbolic link ([`uses_the_symbolic_link`]).
    fn expect_version(&mut self, version: DriverVersion) -> Result<()> {
        let output = self.client(&["version"], COMMAND_TIMEOUT)?;
        self.tally.requests += 1;
        let expected = format!(
            "{version} answers: build \"hotswap {version}\", protocol {PROTOCOL_VERSION}, core {}.{}.{}, TRANSFORM up to {MAX_TRANSFORM_PAYLOAD} bytes",
            CORE_VERSION >> 16,
            (CORE_VERSION >> 8) & 0xFF,
            CORE_VERSION & 0xFF
        );
        let got = output.stdout.trim_end();
        ensure!(
            got == expected,
            "VERSION under Wine: expected `{expected}`, the driver answered `{got}`"
        );
        uses_the_symbolic_link(&output.stderr)
    }

    /// `transform`: exactly `version`'s transform of the text.
    fn expect_transform(&mut self, version: DriverVersion) -> Result<()> {
        let output = self.client(&["transform", TRANSFORM_TEXT], COMMAND_TIMEOUT)?;
        self.tally.requests += 1;
        let transformed: String = TRANSFORM_TEXT
            .bytes()
            .map(|b| char::from(version.transform_byte(b)))
            .collect();
        let expected = format!("{version}: {transformed}");
        let got = output.stdout.trim_end();
        ensure!(
            got == expected,
            "TRANSFORM under Wine: expected `{expected}`, the driver answered `{got}`"
        );
        Ok(())
    }

    /// The first load: single requests, malformed requests, stress, watch, the worker.
    ///
    /// # Errors
    /// The first check that fails, with what was expected and what came.
    pub fn requests(&mut self) -> Result<()> {
        let v1 = DriverVersion::V1;
        let reset = self.counters("reset")?;
        ensure!(
            reset.answered_by == 1,
            "RESET answered by v{}",
            reset.answered_by
        );
        self.expect_version(v1)?;
        self.expect_transform(v1)?;
        let stats = self.counters("stats")?;
        ensure!(
            stats.answered_by == 1 && stats.served == 3 && stats.rejected == 0 && stats.swaps == 0,
            "after RESET, VERSION, TRANSFORM, STATS the counters must be served 3, rejected 0, swaps 0, answered by v1; they are {stats:?}"
        );
        println!("xtask: wine: version, transform, stats, reset: as v1 must answer");

        let output = self.client(&["malformed"], COMMAND_TIMEOUT)?;
        let count = MALFORMED_REQUESTS.len();
        ensure!(
            output.stdout.contains(&format!(
                "{count} malformed requests, {count} answered with their documented status"
            )),
            "malformed requests under Wine:\n{}",
            output.stdout
        );
        self.tally.requests += count as u64 + 2;
        self.tally.statuses += count as u64;
        let after = self.counters("stats")?;
        ensure!(
            after.rejected == count as u64 && after.served == stats.served + 3,
            "after {count} malformed requests the counters must be rejected {count}, served {}; they are {after:?}",
            stats.served + 3
        );
        println!(
            "xtask: wine: {count} malformed requests (rows 1-10 of the protocol's table): each refused with its documented status"
        );

        let threads = "2";
        let requests = STRESS_REQUESTS_PER_THREAD.to_string();
        let output = self.client(
            &["stress", "--threads", threads, "--requests", &requests],
            LONG_TIMEOUT,
        )?;
        let stress = parse::stress(&output.stdout)?;
        ensure!(
            stress.sent == 2 * STRESS_REQUESTS_PER_THREAD,
            "the stress sent {} requests, expected {}",
            stress.sent,
            2 * STRESS_REQUESTS_PER_THREAD
        );
        self.tally.requests += stress.sent + 2;
        let end = self.counters("stats")?;
        let delta = end.served - after.served;
        ensure!(
            delta == stress.sent + 3 && end.rejected == after.rejected,
            "served counter +{delta} across the stress, expected +{} ({} requests, its two STATS and ours); rejected {} -> {}",
            stress.sent + 3,
            stress.sent,
            after.rejected,
            end.rejected
        );
        println!(
            "xtask: wine: stress 2 threads x {STRESS_REQUESTS_PER_THREAD}: {} sent, {} served, 0 errors, served counter +{delta} (exact)",
            stress.sent, stress.answered
        );

        let polls = WATCH_POLLS.to_string();
        let interval = WATCH_INTERVAL_MS.to_string();
        let output = self.client(
            &["watch", "--interval-ms", &interval, "--count", &polls],
            COMMAND_TIMEOUT,
        )?;
        let (seen, failed, swaps, by) = parse::watch(&output.stdout)?;
        ensure!(
            (seen, failed, swaps, by.as_str()) == (WATCH_POLLS, 0, 0, "v1"),
            "watch under Wine: {seen} polls, {failed} failed, {swaps} swaps, answered by {by}; expected {WATCH_POLLS}, 0, 0, v1"
        );
        self.tally.requests += WATCH_POLLS;

        let ticks = self.counters("stats")?;
        ensure!(
            ticks.served == end.served + WATCH_POLLS + 1,
            "served counter after watch: {}, expected {}",
            ticks.served,
            end.served + WATCH_POLLS + 1
        );
        ensure!(
            ticks.worker_ticks > 0,
            "the driver's worker thread (the library's fallback thread) never ticked: {ticks:?}"
        );
        self.tally.worker_ticks = ticks.worker_ticks;
        println!(
            "xtask: wine: watch {WATCH_POLLS} polls, 0 failed; worker thread ticked {} times on the fallback path",
            ticks.worker_ticks
        );
        Ok(())
    }

    /// The HLK-style scenarios through the service lab: those Wine can run must pass, the
    /// others must be skipped with the reason (never run as something else).
    ///
    /// # Errors
    /// When a scenario fails, or one is skipped or run against expectation.
    pub fn scenarios(&mut self, junit: &str) -> Result<()> {
        let exe = self.exe.clone();
        let output = self.session.client(
            &exe,
            &[
                "scenarios",
                "--quick",
                "--service",
                WDM_SERVICE_NAME,
                "--junit",
                junit,
            ],
            LONG_TIMEOUT,
        )?;
        let lines = parse::scenarios(&output.stdout);
        let verdict = |name: &str| lines.iter().find(|l| l.name == name);
        for name in RUNNABLE {
            match verdict(name) {
                Some(line) if line.verdict == "PASS" => {
                    self.tally.scenarios_run.push(name.to_owned());
                }
                other => bail!(
                    "scenario {name} must pass under Wine, got {other:?}\n{}",
                    output.failure("")
                ),
            }
        }
        for name in NOT_RUNNABLE {
            match verdict(name) {
                Some(line) if line.verdict == "SKIP" => self
                    .tally
                    .scenarios_skipped
                    .push((name.to_owned(), line.detail.clone())),
                other => bail!(
                    "scenario {name} cannot run under Wine and must be skipped with the reason, got {other:?}\n{}",
                    output.failure("")
                ),
            }
        }
        ensure!(
            output.success && lines.len() == RUNNABLE.len() + NOT_RUNNABLE.len(),
            "{}",
            output.failure("did not pass")
        );
        for (name, why) in &self.tally.scenarios_skipped {
            println!("xtask: wine: scenario {name} SKIPPED: {why}");
        }
        println!(
            "xtask: wine: scenarios passed: {}",
            self.tally.scenarios_run.join(", ")
        );
        Ok(())
    }

    /// One cold swap: stop, point the service at `image`, start, and check that `version`
    /// answers, transforms, and starts from fresh counters.
    fn cold_swap(&mut self, image: &str, version: DriverVersion) -> Result<()> {
        self.stop()?;
        self.service(&["set-image", image])?;
        self.start()?;
        self.expect_version(version)?;
        self.expect_transform(version)?;
        let stats = self.counters("stats")?;
        ensure!(
            stats.served == 3 && stats.rejected == 0 && stats.swaps == 0,
            "after a cold swap to {image} the counters must start afresh (served 3: VERSION, TRANSFORM, STATS); they are {stats:?}"
        );
        self.tally.cold_swaps += 1;
        Ok(())
    }

    /// The cold swaps under test → v2 → under test.
    ///
    /// # Errors
    /// The first check that fails.
    pub fn cold_swaps(&mut self, images: &Images) -> Result<()> {
        self.cold_swap(&images.v2, DriverVersion::V2)?;
        self.cold_swap(&images.under_test, DriverVersion::V1)?;
        println!(
            "xtask: wine: cold swap v1 -> v2 -> v1 (stop, set-image, start): each build answered as itself, counters fresh"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::uses_the_symbolic_link;

    #[test]
    fn the_fallback_to_the_symbolic_link_must_be_said() {
        let said = "wine: noise\nhotswapctl: device: \\\\.\\HotSwapSample (the symbolic link: no device interface {33D918D7-4BFA-46DB-8221-BA6FB13AEE7A} is present)\n";
        uses_the_symbolic_link(said).unwrap();
        let interface = "hotswapctl: device: \\\\?\\ROOT#SAMPLE#0000#{x} (device interface {X})\n";
        assert!(uses_the_symbolic_link(interface).is_err());
        assert!(uses_the_symbolic_link("").is_err());
    }
}
