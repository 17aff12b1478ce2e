//! `hotswapctl scenarios`: its options, the lab they choose for the backend, and the run:
//! each scenario's verdict printed as it ends, a summary, the `JUnit` file. The scenarios
//! themselves are [`crate::scenarios`]; the labs are [`crate::lab`] and the backends' own.

use std::{fmt::Write as _, fs, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use hotswap_sample_core::DriverVersion;

use super::{BackendChoice, Cli, connect};
use crate::{
    fake::{FakeDevice, FakeFault, FakeLab},
    lab::{CommandLab, Connector, Lab, LabCommands},
    scenarios::{Scenario, ScenarioConfig, ScenarioReport, junit, run},
};

/// Options of `hotswapctl scenarios`.
#[derive(Clone, Debug, clap::Args)]
pub struct ScenariosArgs {
    /// Run only these scenarios (default: all, in the order smoke, swap-stress,
    /// worker-swap, disable-enable, unload-reload).
    #[arg(long, value_enum, num_args = 1..)]
    pub only: Vec<Scenario>,

    /// Write `JUnit` XML (one testcase per scenario) to this file.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,

    /// Short runs (seconds against the fake) instead of the full ones.
    #[arg(long)]
    pub quick: bool,

    /// Command that hot-swaps the driver to `{version}` (v1 or v2), e.g.
    /// `powershell -NoProfile -ExecutionPolicy Bypass -File tests\vm\swap.ps1 -Version {version}`.
    #[arg(long, value_name = "COMMAND")]
    pub swap_command: Option<String>,

    /// Device instance id of the sample's device node: disable and enable run
    /// `pnputil /disable-device ID` and `pnputil /enable-device ID`.
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,

    /// Command that disables the device (instead of pnputil with --instance-id).
    #[arg(long, value_name = "COMMAND")]
    pub disable_command: Option<String>,

    /// Command that enables the device (instead of pnputil with --instance-id).
    #[arg(long, value_name = "COMMAND")]
    pub enable_command: Option<String>,

    /// Windows: unload and reload by stopping and starting the kernel service NAME through
    /// the Service Control Manager (the WDM build: `HotSwapSampleWdm`), instead of
    /// --unload-command and --reload-command; disable and enable are then unsupported
    /// (no device node), and a hot swap needs --swap-command.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["unload_command", "reload_command", "instance_id", "disable_command", "enable_command"])]
    pub service: Option<String>,

    /// Command that unloads the driver, e.g. `sc stop HotSwapSampleWdm`.
    #[arg(long, value_name = "COMMAND")]
    pub unload_command: Option<String>,

    /// Command that loads the driver again, e.g. `sc start HotSwapSampleWdm`.
    #[arg(long, value_name = "COMMAND")]
    pub reload_command: Option<String>,

    /// Time limit of each command, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub command_timeout: u64,

    /// `--backend fake`: the fake worker's period in milliseconds (the driver's is 500).
    #[arg(long, default_value_t = 10, hide = true)]
    pub fake_worker_ms: u64,

    /// `--backend fake`: break the fake on purpose (to see a scenario fail).
    #[arg(long, value_enum, hide = true)]
    pub fake_fault: Option<FaultChoice>,
}

/// The faults the command line can inject into the fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultChoice {
    /// [`FakeFault::LoseCountOnSwap`].
    LoseCountOnSwap,
    /// [`FakeFault::StaleVersionAfterSwap`].
    StaleVersionAfterSwap,
    /// [`FakeFault::WorkerStopsAfterSwap`].
    WorkerStopsAfterSwap,
    /// [`FakeFault::DisableIgnored`].
    DisableIgnored,
    /// [`FakeFault::ReloadKeepsState`].
    ReloadKeepsState,
}

impl From<FaultChoice> for FakeFault {
    fn from(choice: FaultChoice) -> Self {
        match choice {
            FaultChoice::LoseCountOnSwap => Self::LoseCountOnSwap,
            FaultChoice::StaleVersionAfterSwap => Self::StaleVersionAfterSwap,
            FaultChoice::WorkerStopsAfterSwap => Self::WorkerStopsAfterSwap,
            FaultChoice::DisableIgnored => Self::DisableIgnored,
            FaultChoice::ReloadKeepsState => Self::ReloadKeepsState,
        }
    }
}

impl ScenariosArgs {
    /// The lab commands given.
    #[must_use]
    pub fn commands(&self) -> LabCommands {
        LabCommands {
            swap: self.swap_command.clone(),
            disable: self.disable_command.clone(),
            enable: self.enable_command.clone(),
            unload: self.unload_command.clone(),
            reload: self.reload_command.clone(),
        }
        .with_instance_id(self.instance_id.as_deref())
    }

    /// The fake as a lab, loaded with `version`.
    #[must_use]
    pub fn fake_lab(&self, version: DriverVersion) -> Arc<dyn Lab> {
        let device = match self.fake_fault {
            Some(fault) => FakeDevice::with_fault(version, fault.into()),
            None => FakeDevice::new(version),
        };
        Arc::new(FakeLab::new(
            device,
            Duration::from_millis(self.fake_worker_ms.max(1)),
        ))
    }

    /// A lab connecting with `connector` whose operations run the given commands, each
    /// with `--command-timeout`.
    #[must_use]
    pub fn command_lab(&self, connector: Connector, description: String) -> Arc<dyn Lab> {
        Arc::new(CommandLab::new(
            connector,
            self.commands(),
            Duration::from_secs(self.command_timeout),
            description,
        ))
    }

    /// The installed driver at `device` (Windows): a `ServiceLab` with `--service`,
    /// otherwise a [`Self::command_lab`]. Unless the path was given (`--device`), the
    /// command lab looks for the device again at each connection
    /// ([`crate::locate::locate`]): a device node disabled and enabled, or removed and
    /// created again, may come back with another interface path.
    #[cfg(windows)]
    #[must_use]
    pub fn device_lab(&self, device: &crate::locate::Located) -> Arc<dyn Lab> {
        use crate::backend::{Backend, windows::DeviceBackend};

        if let Some(name) = &self.service {
            return Arc::new(crate::service::ServiceLab::new(
                crate::service::Service::new(name),
                &device.path,
                self.swap_command.clone(),
                Duration::from_secs(self.command_timeout),
            ));
        }
        let given = device.is_given().then(|| device.path.clone());
        self.command_lab(
            Box::new(move || {
                let path = given
                    .clone()
                    .unwrap_or_else(|| crate::locate::locate(None).path);
                Ok(Box::new(DeviceBackend::open(&path)?) as Box<dyn Backend>)
            }),
            format!("installed driver, {device}"),
        )
    }

    /// The scenarios to run.
    #[must_use]
    pub fn selected(&self) -> Vec<Scenario> {
        if self.only.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            self.only.clone()
        }
    }
}

/// One line per scenario, then its criteria.
fn print_report(report: &ScenarioReport) {
    let verdict = if report.skipped.is_some() {
        "SKIP"
    } else if report.passed() {
        "PASS"
    } else {
        "FAIL"
    };
    let mut line = format!("{verdict} {} ({:.2?})", report.scenario, report.elapsed);
    if let Some(why) = &report.skipped {
        let _ = write!(line, ": {why}");
    } else if let Some(message) = report.failure_message() {
        let _ = write!(line, ": {message}");
    }
    println!("{line}");
    for row in report.details().lines() {
        println!("    {row}");
    }
}

/// `scenarios`: builds the lab for the chosen backend and runs them ([`run_against`]).
///
/// # Errors
/// A message when the backend has no lab here, or as [`run_against`].
pub(super) fn execute(cli: &Cli, args: &ScenariosArgs) -> Result<ExitCode, String> {
    let lab = match cli.backend {
        BackendChoice::Fake if cli.fake_swap_every_ms > 0 => {
            return Err("--fake-swap-every-ms would swap behind the scenarios' back".into());
        }
        BackendChoice::Fake => {
            args.fake_lab(DriverVersion::from_raw(cli.fake_version).unwrap_or(DriverVersion::V1))
        }
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        BackendChoice::Host => connect::host_lab(cli)? as Arc<dyn Lab>,
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        BackendChoice::Host => return Err(connect::no_host_kernel()),
        #[cfg(windows)]
        BackendChoice::Device => args.device_lab(&connect::device_path(cli)),
        #[cfg(not(windows))]
        BackendChoice::Device => {
            return Err(connect::no_device_backend(&connect::device_path(cli).path));
        }
    };
    run_against(args, &lab)
}

/// Runs the selected scenarios against `lab`, prints the results, writes the `JUnit` file if
/// asked; fails when a scenario failed.
///
/// # Errors
/// A message when the `JUnit` file cannot be written.
pub fn run_against(args: &ScenariosArgs, lab: &Arc<dyn Lab>) -> Result<ExitCode, String> {
    let config = if args.quick {
        ScenarioConfig::quick()
    } else {
        ScenarioConfig::full()
    };
    let description = lab.describe();
    println!("running scenarios against {description}");
    let reports = run(lab, &args.selected(), &config, &mut print_report);
    let failed = reports.iter().filter(|r| r.failed()).count();
    let skipped = reports.iter().filter(|r| r.skipped.is_some()).count();
    println!(
        "{} scenarios: {} passed, {failed} failed, {skipped} skipped",
        reports.len(),
        reports.len() - failed - skipped
    );
    if let Some(path) = &args.junit {
        let xml = junit::to_xml(&junit::junit_report(&reports, &description))
            .map_err(|error| format!("cannot write the JUnit XML: {error}"))?;
        fs::write(path, xml)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        println!("JUnit XML written to {}", path.display());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::backend::Backend;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ScenariosArgs,
    }

    #[test]
    fn the_command_lab_gets_the_options_commands_and_connector() {
        let cli = Cli::try_parse_from([
            "scenarios",
            "--unload-command",
            "sc stop HotSwapSampleWdm",
            "--instance-id",
            r"ROOT\SAMPLE\0000",
            "--command-timeout",
            "7",
        ])
        .unwrap();
        let commands = cli.args.commands();
        assert_eq!(commands.unload.as_deref(), Some("sc stop HotSwapSampleWdm"));
        assert_eq!(
            commands.disable.as_deref(),
            Some(r#"pnputil /disable-device "ROOT\SAMPLE\0000""#)
        );
        assert_eq!(commands.swap, None);
        let device = FakeDevice::new(DriverVersion::V2);
        let lab = cli.args.command_lab(
            Box::new(move || Ok(Box::new(device.connect()) as Box<dyn Backend>)),
            "fake behind commands".to_owned(),
        );
        assert_eq!(lab.describe(), "fake behind commands");
        assert_eq!(lab.stats().unwrap().0, DriverVersion::V2);
        assert!(matches!(
            lab.swap_to(DriverVersion::V1),
            Err(crate::lab::LabError::Unsupported(_))
        ));
    }
}
