//! [`CommandLab`]: the lab whose operations run external commands, one line each
//! ([`LabCommands`]: split into words by [`split_command`], run with a time limit by
//! [`run_command`]). The Windows VM suite (`tests/vm/`) gives `hotswapctl scenarios` its
//! scripts and `pnputil` / `sc` lines as these commands.

use std::{
    fmt,
    io::Read,
    process::{Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use hotswap_sample_core::DriverVersion;

use super::{Lab, LabError, worker_period_of_the_driver};
use crate::backend::{Backend, BackendError};

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
