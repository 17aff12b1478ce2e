//! One Wine session of the stage: a fresh `WINEPREFIX` under `target/wine/`, a persistent
//! `wineserver`, every command run with a time limit and its output kept in a file, and
//! everything stopped when the session ends, failure or not ([`Drop`]).
//!
//! Wine's system processes (`services.exe`, and `winedevice.exe`, which loads the driver)
//! are started by the first Wine program of a session (`wineboot --init` here) and inherit
//! its environment and its standard error: [`Session::start`] runs it with the log's debug
//! channels ([`LOG_CHANNELS`]) and its standard error going to `target/wine/wine.log`, so the
//! log holds what the driver printed (`DbgPrint`) and what Wine's kernel said about it.

use std::{
    fs::{self, File, OpenOptions},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// `WINEDEBUG` of the system processes: errors of every channel, the kernel's fixmes (which
/// name the routines a driver looked up and Wine lacks), the `DbgPrint` output
/// (`warn+debugstr`) and the modules loaded (`+loaddll`: where the image came from).
pub const LOG_CHANNELS: &str = "-all,err+all,fixme+ntoskrnl,warn+debugstr,+loaddll";

/// `WINEDEBUG` of the other programs (their standard error is kept per command).
const COMMAND_CHANNELS: &str = "-all,err+all";

/// `WINEDLLOVERRIDES` of every program: no Mono and no Gecko (no installer, no download).
const NO_MONO_GECKO: &str = "mscoree,mshtml=";

/// How long `wineboot --init` may take.
const BOOT_TIMEOUT: Duration = Duration::from_mins(3);

/// How a command of the session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The session's first program: the log's channels, standard error into the log.
    Boot,
    /// A Wine program: standard error kept in its own file.
    Program,
    /// The client: as [`Kind::Program`], with the client's DLL overrides.
    Client,
}

/// What a command printed.
#[derive(Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Whether it exited with status 0.
    pub success: bool,
}

impl Output {
    /// The output if the command succeeded.
    ///
    /// # Errors
    /// When it failed: the command and what it printed.
    pub fn ok(self) -> Result<Self> {
        if self.success {
            Ok(self)
        } else {
            bail!("{}", self.failure("failed"))
        }
    }

    /// `` `command` <what> ``, then what it printed.
    #[must_use]
    pub fn failure(&self, what: &str) -> String {
        let stderr: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| !is_wine32_notice(line))
            .collect();
        format!(
            "`{}` {what}\n--- its output ---\n{}\n--- its errors ---\n{}",
            self.command,
            self.stdout.trim_end(),
            stderr.join("\n")
        )
    }
}

/// Debian's `wine` script prints a notice about the missing 32-bit Wine on every run; the
/// stage needs only the 64-bit one.
fn is_wine32_notice(line: &str) -> bool {
    [
        "it looks like wine32 is missing",
        "multiarch needs to be enabled",
        "execute \"dpkg --add-architecture",
        "apt-get install wine32",
    ]
    .iter()
    .any(|notice| line.contains(notice))
}

/// A running Wine session (module docs).
#[derive(Debug)]
pub struct Session {
    prefix: PathBuf,
    outputs: PathBuf,
    log: PathBuf,
    client_overrides: Option<String>,
    commands: usize,
}

impl Session {
    /// Stops whatever a previous run left in `dir/prefix`, makes a fresh prefix there,
    /// starts a persistent `wineserver` and runs `wineboot --init` as the session's first
    /// program (module docs).
    ///
    /// # Errors
    /// When the prefix cannot be made or Wine does not start.
    pub fn start(dir: &Path) -> Result<Self> {
        let prefix = dir.join("prefix");
        if prefix.exists() {
            stop_server(&prefix);
        }
        for old in [prefix.clone(), dir.join("outputs")] {
            if old.exists() {
                fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
            }
        }
        let outputs = dir.join("outputs");
        fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
        fs::create_dir_all(&outputs)?;
        let log = dir.join("wine.log");
        File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut session = Self {
            prefix,
            outputs,
            log,
            client_overrides: None,
            commands: 0,
        };
        // From here on `Drop` stops the session.
        let started = Instant::now();
        // `wineboot --init` makes the prefix, with a wineserver of its own that ends after
        // it; waiting for that end keeps the session to one set of system processes.
        session
            .run("wineboot", &["--init"], BOOT_TIMEOUT, Kind::Program)?
            .ok()
            .context("Wine could not make its prefix")?;
        session.wineserver(&["-w"])?;
        // The session's wineserver lives until `Drop` kills it; the first program after it
        // starts the system processes with the log's channels.
        session.wineserver(&["-p"])?;
        session
            .run("wineboot", &[], BOOT_TIMEOUT, Kind::Boot)?
            .ok()
            .context("Wine did not start its system processes")?;
        println!(
            "xtask: wine: fresh prefix {} ready in {:.1?} (log: {})",
            session.prefix.display(),
            started.elapsed(),
            session.log.display()
        );
        Ok(session)
    }

    /// The prefix's `C:` drive.
    #[must_use]
    pub fn drive_c(&self) -> PathBuf {
        self.prefix.join("drive_c")
    }

    /// The log of the system processes (module docs).
    #[must_use]
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `WINEDLLOVERRIDES` entries added for the client's runs ([`Self::client`]) only.
    pub fn set_client_overrides(&mut self, overrides: &str) {
        self.client_overrides = Some(overrides.to_owned());
    }

    /// Runs the Wine program `program` (`sc`, `C:\…\x.exe`) with `args`, at most `timeout`.
    ///
    /// # Errors
    /// When it cannot be started or runs longer than `timeout` (it is then killed); a
    /// failed exit is the [`Output`]'s.
    pub fn wine(&mut self, program: &str, args: &[&str], timeout: Duration) -> Result<Output> {
        let mut all = vec![program];
        all.extend(args);
        self.run("wine", &all, timeout, Kind::Program)
    }

    /// [`Self::wine`] with the client's extra DLL overrides.
    ///
    /// # Errors
    /// As [`Self::wine`].
    pub fn client(&mut self, exe: &str, args: &[&str], timeout: Duration) -> Result<Output> {
        let mut all = vec![exe];
        all.extend(args);
        self.run("wine", &all, timeout, Kind::Client)
    }

    fn run(
        &mut self,
        executable: &str,
        args: &[&str],
        timeout: Duration,
        kind: Kind,
    ) -> Result<Output> {
        self.commands += 1;
        let command = format!("{executable} {}", args.join(" "));
        let base = self.outputs.join(format!("{:03}", self.commands));
        let (stdout_path, stderr_path) = (base.with_extension("out"), base.with_extension("err"));
        let logged = kind == Kind::Boot;
        let stdout = File::create(&stdout_path)?;
        let stderr = if logged {
            OpenOptions::new().append(true).open(&self.log)?
        } else {
            File::create(&stderr_path)?
        };
        let overrides = match (&self.client_overrides, kind) {
            (Some(extra), Kind::Client) => format!("{NO_MONO_GECKO};{extra}"),
            _ => NO_MONO_GECKO.to_owned(),
        };
        fs::write(base.with_extension("cmd"), &command)?;
        let child = self
            .command(executable)
            .args(args)
            .env(
                "WINEDEBUG",
                if logged {
                    LOG_CHANNELS
                } else {
                    COMMAND_CHANNELS
                },
            )
            .env("WINEDLLOVERRIDES", overrides)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting `{command}`"))?;
        let status = wait(child, timeout, &command)
            .with_context(|| format!("output in {}.*", base.display()))?;
        let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
        Ok(Output {
            stdout: read(&stdout_path),
            stderr: if logged {
                String::new()
            } else {
                read(&stderr_path)
            },
            command,
            success: status.success(),
        })
    }

    /// `program` with the session's environment: its prefix, 64-bit, no display (nothing
    /// may open a window), nothing of the caller's Wine settings.
    fn command(&self, program: &str) -> Command {
        command_for(&self.prefix, program)
    }

    /// `wineserver <args>`, at most a minute (`-p` returns at once, `-w` when the server
    /// has ended).
    fn wineserver(&self, args: &[&str]) -> Result<()> {
        let child = self
            .command("wineserver")
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .context("starting wineserver")?;
        let command = format!("wineserver {}", args.join(" "));
        let status = wait(child, Duration::from_mins(1), &command)?;
        if !status.success() {
            bail!("{command} failed ({status})");
        }
        Ok(())
    }
}

/// Waits for `child` at most `timeout`; kills it when it runs longer.
fn wait(mut child: Child, timeout: Duration, command: &str) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{command}` ran longer than {timeout:?} and was killed");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// `program` with the environment of a session on `prefix`.
fn command_for(prefix: &Path, program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env("WINEPREFIX", prefix)
        .env("WINEARCH", "win64")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WINELOADER")
        .env_remove("WINESERVER");
    command
}

/// Kills the wineserver of `prefix` and every process of it, waits until it is gone, then
/// ends (by id) any process still running with that prefix. Returns what it had to end.
fn stop_server(prefix: &Path) -> Vec<u32> {
    let _ = command_for(prefix, "wineserver")
        .arg("-k")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
    // `wineserver -w` returns when the server has ended; then no process of it may be left.
    if let Ok(child) = command_for(prefix, "wineserver")
        .arg("-w")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        let _ = wait(child, Duration::from_secs(20), "wineserver -w");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left = processes_of(prefix);
    while !left.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        left = processes_of(prefix);
    }
    for pid in &left {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    left
}

/// The processes whose environment names `prefix` as their `WINEPREFIX`: the session's
/// (every Wine process inherits it, the wineserver included).
fn processes_of(prefix: &Path) -> Vec<u32> {
    let needle = format!("WINEPREFIX={}", prefix.display());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .collect()
}

impl Drop for Session {
    fn drop(&mut self) {
        let left = stop_server(&self.prefix);
        if left.is_empty() {
            println!("xtask: wine: session stopped (wineserver -k), no process left");
        } else {
            println!(
                "xtask: wine: session stopped; {} process(es) outlived wineserver -k and were killed: {left:?}",
                left.len()
            );
        }
    }
}
