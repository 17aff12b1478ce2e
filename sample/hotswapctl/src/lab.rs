//! What a scenario runs against: the [`Lab`] trait, the control operations a scenario needs
//! beyond sending requests (swap, disable, enable, unload, reload), and [`CommandLab`], the
//! lab whose operations run external commands (the Windows VM suite, `tests/vm/`).
//!
//! | lab | where | what its operations do |
//! |---|---|---|
//! | [`crate::fake::FakeLab`] | everywhere | change an in-memory fake of the driver; **not a driver**, it only tests the scenarios' own logic |
//! | [`CommandLab`] | built everywhere, meant for Windows | run the commands given on the command line (`pnputil`, `sc`, `tests/vm/*.ps1`); requests go to the installed driver through [`crate::backend::windows::DeviceBackend`] |
//! | `crate::service::ServiceLab` | Windows (and Wine) | the WDM build's kernel service through the Service Control Manager: unload and reload stop and start it; no hot swap without a swap command (under Wine: none, no DriverProxy), no disable (no device node); `cargo xtask wine` runs the scenarios with it |
//! | `crate::host::HostLab` | x86-64 Linux | the WDM sample's real `.sys` images in the in-process host kernel: swap, unload and reload them there (module docs of `host`) |
//!
//! # The documented error of an absent device
//!
//! While the device is disabled or the driver unloaded, the device does not exist. A
//! scenario accepts exactly these failures in that window ([`is_absent_error`]):
//!
//! * opening a connection fails with [`BackendError::Open`] whose error is "not found"
//!   (Windows: `ERROR_FILE_NOT_FOUND` / `ERROR_PATH_NOT_FOUND`, the symbolic link is gone),
//!   or, on Windows, `ERROR_ACCESS_DENIED` (a device being deleted: `STATUS_DELETE_PENDING`),
//!   `ERROR_NO_SUCH_DEVICE` or `ERROR_DEVICE_NOT_CONNECTED`;
//! * a request on a connection opened before completes with one of [`ABSENT_STATUSES`].
//!
//! Anything else (another status, a malformed answer, a request that does not complete) is
//! a defect. Which of these a Windows build really produces depends on the front end (the
//! WDM build has no `PnP` device to disable; the KMDF build has not run yet): check the
//! list on the VM (`tests/vm/README.md`) and narrow it once observed.

use std::{
    fmt, io,
    io::Read,
    process::{Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use hotswap_sample_core::{DriverVersion, NtStatus, StatsInfo, worker::WORKER_PERIOD_100NS};

use crate::{
    backend::{Backend, BackendError},
    client::{Client, ClientError},
};

/// `STATUS_NO_SUCH_DEVICE`.
pub const STATUS_NO_SUCH_DEVICE: NtStatus = NtStatus(0xC000_000E_u32.cast_signed());
/// `STATUS_DELETE_PENDING`.
pub const STATUS_DELETE_PENDING: NtStatus = NtStatus(0xC000_0056_u32.cast_signed());
/// `STATUS_DEVICE_REMOVED`.
pub const STATUS_DEVICE_REMOVED: NtStatus = NtStatus(0xC000_02B6_u32.cast_signed());

/// The statuses a request may complete with when the device went away under an open
/// connection (module docs).
pub const ABSENT_STATUSES: [NtStatus; 4] = [
    STATUS_NO_SUCH_DEVICE,
    STATUS_DELETE_PENDING,
    STATUS_DEVICE_REMOVED,
    NtStatus::INVALID_DEVICE_STATE,
];

/// Whether `error` is the documented failure of a request to an absent (disabled or
/// unloaded) device (module docs).
#[must_use]
pub fn is_absent_error(error: &ClientError) -> bool {
    match error {
        ClientError::Status(status) => ABSENT_STATUSES.contains(status),
        ClientError::Backend(BackendError::Open { source, .. }) => is_absent_open_error(source),
        ClientError::Backend(_) | ClientError::Request(_) | ClientError::Protocol(_) => false,
    }
}

/// Whether opening the device failed because it is absent.
fn is_absent_open_error(error: &io::Error) -> bool {
    // ERROR_ACCESS_DENIED (5) while the device is being deleted, ERROR_NO_SUCH_DEVICE (433),
    // ERROR_DEVICE_NOT_CONNECTED (1167). On other systems these numbers mean other things,
    // and only the fake (which uses `NotFound`) runs there.
    const WINDOWS_ABSENT: [i32; 3] = [5, 433, 1167];
    error.kind() == io::ErrorKind::NotFound
        || (cfg!(windows)
            && error
                .raw_os_error()
                .is_some_and(|code| WINDOWS_ABSENT.contains(&code)))
}

/// Why a lab operation failed.
#[derive(Debug)]
pub enum LabError {
    /// This lab cannot do that (no command was given, or the build has no such operation):
    /// a scenario that needs it is skipped, not failed.
    Unsupported(String),
    /// A command could not be started, failed, or ran too long.
    Command {
        /// The command line.
        command: String,
        /// What happened (exit code, timeout, spawn error) and the end of its output.
        detail: String,
    },
    /// The lab's own failure (the fake's hand-over refused, …).
    Failed(String),
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(why) => write!(f, "not supported by this lab: {why}"),
            Self::Command { command, detail } => write!(f, "`{command}` {detail}"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for LabError {}

/// What a scenario runs against: connections to the driver plus the control operations.
///
/// Every operation returns when it is *done* as far as the lab can tell (the command
/// exited); scenarios then check the effect through the protocol themselves (a swap is
/// confirmed by `VERSION`, a disable by the device being absent), with bounded polling, so a
/// lab needs no knowledge of what the scenarios check.
///
/// Implementations must be usable from several threads (`Sync`): scenarios send requests
/// from worker threads while the main thread swaps or disables.
pub trait Lab: Send + Sync {
    /// What this lab runs against, for reports ("in-memory fake (not a driver)", …).
    fn describe(&self) -> String;

    /// Opens a new connection to the driver.
    ///
    /// * Windows: `CreateFileW` on `\\.\HotSwapSample` ([`crate::backend::windows::DeviceBackend`]).
    /// * Host: a connection to the device of the image running in the host kernel.
    ///
    /// # Errors
    /// [`BackendError`]; while the device is absent, the documented one ([`is_absent_error`]).
    fn connect(&self) -> Result<Box<dyn Backend>, BackendError>;

    /// Hot-swaps the loaded driver to `version` (v1 or v2) *without* unloading it: the
    /// driver's state (counters, worker thread, open handles) must survive.
    ///
    /// * Windows: runs the swap command (`--swap-command`, `{version}` replaced by `v1` or
    ///   `v2`). How Windows starts a hot swap is not publicly documented; see
    ///   `tests/vm/README.md` for what `tests/vm/swap.ps1` does instead.
    /// * Host: maps the other image and runs its `DriverEntry` in swap mode.
    ///
    /// # Errors
    /// [`LabError`]; [`LabError::Unsupported`] if this lab cannot swap.
    fn swap_to(&self, version: DriverVersion) -> Result<(), LabError>;

    /// Disables the device: afterwards it is absent (`PnP` removes it; the driver unloads when
    /// its last device goes, so the counters start again at enable).
    ///
    /// * Windows: `pnputil /disable-device <instance id>` or `--disable-command`; the WDM
    ///   build has no device node, so there this is unsupported.
    /// * Host: removes the device as `PnP` would, or unsupported.
    ///
    /// # Errors
    /// [`LabError`]; [`LabError::Unsupported`] if this lab cannot disable.
    fn disable(&self) -> Result<(), LabError>;

    /// Enables the device again after [`Self::disable`]: the driver loads (fresh state) and
    /// the device answers again.
    ///
    /// * Windows: `pnputil /enable-device <instance id>` or `--enable-command`.
    ///
    /// # Errors
    /// [`LabError`]; [`LabError::Unsupported`] if this lab cannot enable.
    fn enable(&self) -> Result<(), LabError>;

    /// Unloads the driver (its `DriverUnload` runs: worker stopped, device deleted).
    /// Scenarios close their connections first: Windows defers the unload of a driver whose
    /// device still has open handles.
    ///
    /// * Windows: `--unload-command` (WDM: `sc stop HotSwapSampleWdm`; KMDF: remove the
    ///   device node).
    /// * Host: runs the image's `DriverUnload` and unmaps it.
    ///
    /// # Errors
    /// [`LabError`]; [`LabError::Unsupported`] if this lab cannot unload.
    fn unload(&self) -> Result<(), LabError>;

    /// Loads the driver again after [`Self::unload`], from scratch (fresh counters, a new
    /// worker thread), as whichever build is installed.
    ///
    /// * Windows: `--reload-command` (WDM: `sc start HotSwapSampleWdm`).
    /// * Host: maps the image and runs its `DriverEntry` as a first load.
    ///
    /// # Errors
    /// [`LabError`]; [`LabError::Unsupported`] if this lab cannot reload.
    fn reload(&self) -> Result<(), LabError>;

    /// The period of the driver's hot-swappable worker thread (500 ms for the real driver),
    /// so that scenarios know how long to wait for its count to move.
    fn worker_period(&self) -> Duration {
        worker_period_of_the_driver()
    }

    /// `STATS` on a new connection: the driver's counters, among them the worker's count.
    ///
    /// # Errors
    /// [`ClientError`] of the connection or the request.
    fn stats(&self) -> Result<(DriverVersion, StatsInfo), ClientError> {
        let reply = Client::new(self.connect()?).stats()?;
        Ok((reply.driver_version, reply.value))
    }
}

/// The worker period the sample driver uses (`WORKER_PERIOD_100NS`, a relative time in
/// 100 ns units).
#[must_use]
pub fn worker_period_of_the_driver() -> Duration {
    Duration::from_nanos(WORKER_PERIOD_100NS.unsigned_abs().saturating_mul(100))
}

/// The commands of a [`CommandLab`]; `None`: the operation is unsupported.
///
/// A command is one line, split into words at whitespace; a word in double quotes may
/// contain spaces (`"C:\Program Files\…"`); nothing else is interpreted (backslashes are
/// kept, no shell runs). `{version}` in any word is replaced by `v1` or `v2` (the
/// version's `Display`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabCommands {
    /// Swap to `{version}`.
    pub swap: Option<String>,
    /// Disable the device.
    pub disable: Option<String>,
    /// Enable the device.
    pub enable: Option<String>,
    /// Unload the driver.
    pub unload: Option<String>,
    /// Load the driver again.
    pub reload: Option<String>,
}

impl LabCommands {
    /// Fills in `pnputil /disable-device ID` and `pnputil /enable-device ID` where no
    /// disable or enable command was given.
    #[must_use]
    pub fn with_instance_id(mut self, instance_id: Option<&str>) -> Self {
        if let Some(id) = instance_id {
            let quoted = format!("\"{id}\"");
            self.disable
                .get_or_insert_with(|| format!("pnputil /disable-device {quoted}"));
            self.enable
                .get_or_insert_with(|| format!("pnputil /enable-device {quoted}"));
        }
        self
    }
}

/// Splits a command line into words (see [`LabCommands`]).
///
/// # Errors
/// A message if a quote is not closed or the line is empty.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(format!("unclosed quote in `{line}`"));
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("empty command".to_owned());
    }
    Ok(words)
}

/// Opens connections for a [`CommandLab`].
pub type Connector = Box<dyn Fn() -> Result<Box<dyn Backend>, BackendError> + Send + Sync>;

/// A lab whose operations run external commands, one at a time, each with a time limit.
///
/// On Windows, `hotswapctl scenarios` builds it with the device backend and the commands
/// of the command line (`tests/vm/run-scenarios.ps1` passes them). It compiles and is tested
/// everywhere; only the connector it is given is Windows-specific.
pub struct CommandLab {
    connector: Connector,
    commands: LabCommands,
    timeout: Duration,
    description: String,
    worker_period: Duration,
    /// The commands run, with their durations, for the report.
    log: Mutex<Vec<String>>,
}

impl fmt::Debug for CommandLab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandLab")
            .field("commands", &self.commands)
            .field("timeout", &self.timeout)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl CommandLab {
    /// A lab connecting with `connector`, running `commands`, each allowed `timeout`.
    #[must_use]
    pub fn new(
        connector: Connector,
        commands: LabCommands,
        timeout: Duration,
        description: String,
    ) -> Self {
        Self {
            connector,
            commands,
            timeout,
            description,
            worker_period: worker_period_of_the_driver(),
            log: Mutex::new(Vec::new()),
        }
    }

    /// The commands run so far, one line each (`… exited 0 after 1.2s`).
    #[must_use]
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn run(
        &self,
        what: &str,
        command: Option<&String>,
        version: Option<DriverVersion>,
    ) -> Result<(), LabError> {
        let Some(line) = command else {
            return Err(LabError::Unsupported(format!("no {what} command given")));
        };
        let line = match version {
            Some(version) => line.replace("{version}", &version.to_string()),
            None => line.clone(),
        };
        let started = Instant::now();
        let result = run_command(&line, self.timeout);
        let outcome = match &result {
            Ok(()) => "succeeded".to_owned(),
            Err(error) => error.to_string(),
        };
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!(
                "{what}: `{line}` {outcome} ({:.2?})",
                started.elapsed()
            ));
        result
    }
}

impl Lab for CommandLab {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn connect(&self) -> Result<Box<dyn Backend>, BackendError> {
        (self.connector)()
    }

    fn swap_to(&self, version: DriverVersion) -> Result<(), LabError> {
        self.run("swap", self.commands.swap.as_ref(), Some(version))
    }

    fn disable(&self) -> Result<(), LabError> {
        self.run("disable", self.commands.disable.as_ref(), None)
    }

    fn enable(&self) -> Result<(), LabError> {
        self.run("enable", self.commands.enable.as_ref(), None)
    }

    fn unload(&self) -> Result<(), LabError> {
        self.run("unload", self.commands.unload.as_ref(), None)
    }

    fn reload(&self) -> Result<(), LabError> {
        self.run("reload", self.commands.reload.as_ref(), None)
    }

    fn worker_period(&self) -> Duration {
        self.worker_period
    }
}

/// The last `limit` bytes of `bytes`, as text.
fn tail(bytes: &[u8], limit: usize) -> String {
    let start = bytes.len().saturating_sub(limit);
    String::from_utf8_lossy(bytes.get(start..).unwrap_or_default())
        .trim()
        .to_owned()
}

/// Runs `line` (split with [`split_command`]) and waits at most `timeout`; the child is
/// killed when it runs longer.
///
/// # Errors
/// [`LabError::Command`] when the line does not parse, the program cannot be started,
/// exits with a failure, or runs longer than `timeout`.
pub fn run_command(line: &str, timeout: Duration) -> Result<(), LabError> {
    let failed = |detail: String| LabError::Command {
        command: line.to_owned(),
        detail,
    };
    let words = split_command(line).map_err(&failed)?;
    let (program, args) = words
        .split_first()
        .ok_or_else(|| failed("is empty".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("could not be started: {error}")))?;
    // Drain both pipes on their own threads so that a chatty command cannot block on a full
    // pipe while we wait for it.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("ran longer than {timeout:.0?} and was killed"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(error) => break Err(format!("could not be waited for: {error}")),
        }
    };
    let output: Vec<u8> = readers
        .into_iter()
        .flat_map(|reader| reader.join().unwrap_or_default())
        .collect();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(failed(format!(
            "failed ({status}); output: {}",
            tail(&output, 1500)
        ))),
        Err(detail) => Err(failed(detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_into_words_with_quotes() {
        assert_eq!(
            split_command(r"powershell -File tests\vm\swap.ps1 -Version {version}").unwrap(),
            [
                "powershell",
                "-File",
                r"tests\vm\swap.ps1",
                "-Version",
                "{version}"
            ]
        );
        assert_eq!(
            split_command(r#"pnputil /disable-device "ROOT\SAMPLE\0000"  "a b""#).unwrap(),
            ["pnputil", "/disable-device", r"ROOT\SAMPLE\0000", "a b"]
        );
        assert_eq!(split_command(r#"x """#).unwrap(), ["x", ""]);
        assert!(split_command("  ").is_err());
        assert!(split_command(r#"x "open"#).is_err());
    }

    #[test]
    fn an_instance_id_gives_pnputil_commands_unless_others_are_given() {
        let commands = LabCommands::default().with_instance_id(Some(r"ROOT\SAMPLE\0000"));
        assert_eq!(
            commands.disable.as_deref(),
            Some(r#"pnputil /disable-device "ROOT\SAMPLE\0000""#)
        );
        assert_eq!(
            split_command(commands.enable.as_deref().unwrap()).unwrap(),
            ["pnputil", "/enable-device", r"ROOT\SAMPLE\0000"]
        );
        let own = LabCommands {
            disable: Some("mine".into()),
            ..LabCommands::default()
        }
        .with_instance_id(Some("X"));
        assert_eq!(own.disable.as_deref(), Some("mine"));
        assert_eq!(
            LabCommands::default().with_instance_id(None),
            LabCommands::default()
        );
    }

    #[test]
    fn the_driver_worker_period_is_half_a_second() {
        assert_eq!(worker_period_of_the_driver(), Duration::from_millis(500));
    }

    #[test]
    fn absent_errors_are_the_documented_ones() {
        let open = |kind| {
            ClientError::Backend(BackendError::Open {
                path: "x".into(),
                source: io::Error::from(kind),
            })
        };
        assert!(is_absent_error(&open(io::ErrorKind::NotFound)));
        assert!(!is_absent_error(&open(io::ErrorKind::InvalidInput)));
        assert!(is_absent_error(&ClientError::Status(STATUS_DELETE_PENDING)));
        assert!(!is_absent_error(&ClientError::Status(
            NtStatus::UNSUCCESSFUL
        )));
        assert!(!is_absent_error(&ClientError::Backend(BackendError::Io(
            io::Error::from(io::ErrorKind::NotFound)
        ))));
    }

    #[cfg(unix)]
    #[test]
    fn commands_run_with_the_version_and_report_failures() {
        use std::sync::Arc;

        use crate::fake::FakeDevice;

        let device = FakeDevice::new(DriverVersion::V1);
        let connector: Connector = {
            let device = Arc::clone(&device);
            Box::new(move || Ok(Box::new(device.connect()) as Box<dyn Backend>))
        };
        let lab = CommandLab::new(
            connector,
            LabCommands {
                swap: Some(r#"sh -c "test {version} = v2""#.into()),
                disable: Some(r#"sh -c "echo nope >&2; exit 3""#.into()),
                enable: Some("sleep 5".into()),
                unload: Some("/nonexistent/program".into()),
                reload: None,
            },
            Duration::from_millis(300),
            "test".into(),
        );
        lab.swap_to(DriverVersion::V2).unwrap();
        let error = lab.swap_to(DriverVersion::V1).unwrap_err().to_string();
        assert!(
            error.contains("test v1 = v2") && error.contains("failed"),
            "{error}"
        );
        let error = lab.disable().unwrap_err().to_string();
        assert!(
            error.contains("exit status: 3") && error.contains("nope"),
            "{error}"
        );
        let started = Instant::now();
        let error = lab.enable().unwrap_err().to_string();
        assert!(error.contains("was killed"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            lab.unload()
                .unwrap_err()
                .to_string()
                .contains("could not be started")
        );
        assert!(matches!(lab.reload(), Err(LabError::Unsupported(_))));
        assert_eq!(lab.log().len(), 5);
        assert!(lab.connect().is_ok());
        assert_eq!(lab.stats().unwrap().0, DriverVersion::V1);
    }
}
