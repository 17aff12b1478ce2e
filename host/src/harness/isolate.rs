//! Bugchecks as test results: part of a test in a child process.

use std::process::{Command, ExitStatus};

/// The variable that tells a child which test it runs for.
const CHILD_VAR: &str = "DRIVER_PROXY_HARNESS_CHILD";

/// A bugcheck a child process reported (`host kernel BUGCHECK <code> <name> in <routine>:
/// <message>`, or the fault report `host kernel BUGCHECK 0x1E KMODE_EXCEPTION_NOT_HANDLED:
/// <message>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bugcheck {
    /// The bugcheck code (`0x44`, `0xC9`, …).
    pub code: u32,
    /// Its name (`MULTIPLE_IRP_COMPLETE_REQUESTS`, …).
    pub name: String,
    /// The routine that raised it (`IofCompleteRequest`, `I/O manager`, …); empty for a
    /// fault of the image's own code.
    pub routine: String,
    /// What happened.
    pub message: String,
}

/// How a child process of [`isolated`] ended.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (the host kernel's reports go there).
    pub stderr: String,
}

impl Outcome {
    /// The bugcheck the child reported, if any (the first).
    #[must_use]
    pub fn bugcheck(&self) -> Option<Bugcheck> {
        self.stderr.lines().find_map(parse_bugcheck)
    }

    /// Whether the child ran the isolated part to its end (it exited with success).
    #[must_use]
    pub fn completed(&self) -> bool {
        self.status.success()
    }

    /// The watchdog's report, if the child was stopped by it (`host kernel WATCHDOG: …`).
    #[must_use]
    pub fn watchdog(&self) -> Option<&str> {
        self.stderr
            .lines()
            .find_map(|line| line.strip_prefix("host kernel WATCHDOG: "))
    }
}

fn parse_bugcheck(line: &str) -> Option<Bugcheck> {
    let rest = line.strip_prefix("host kernel BUGCHECK ")?;
    let (code, rest) = rest.split_once(' ')?;
    let code =
        u32::from_str_radix(code.strip_prefix("0x").or(code.strip_prefix("0X"))?, 16).ok()?;
    if let Some((name, message)) = rest.split_once(": ")
        && !name.contains(' ')
    {
        return Some(Bugcheck {
            code,
            name: name.to_owned(),
            routine: String::new(),
            message: message.to_owned(),
        });
    }
    let (name, rest) = rest.split_once(" in ")?;
    let (routine, message) = rest.split_once(": ")?;
    Some(Bugcheck {
        code,
        name: name.to_owned(),
        routine: routine.to_owned(),
        message: message.to_owned(),
    })
}

/// Runs `body` in a child process and returns how it ended; the parent never runs `body`.
///
/// The child is this test binary again, running only the current test (found by the name
/// libtest gives the test's thread); inside it, this call runs `body` and exits the process
/// (status 0 when `body` returns). So everything the test does before this call runs in both
/// processes, and nothing after it runs in the child (one isolation per test: a child that
/// reaches another one stops with a panic). A bugcheck, a fault report or a
/// watchdog report stops the child, and the parent reads it from the [`Outcome`]:
///
/// ```no_run
/// # use driver_proxy_host::harness::{isolated, TestDriver, Images};
/// # let image = Images::find(".").path("my_driver.sys");
/// let outcome = isolated(|| {
///     let driver = TestDriver::load(&image, "Isolated").unwrap();
///     let handle = driver.open("\\\\.\\Isolated").unwrap();
///     let _ = handle.device_control(0x8000_2003, &[], &mut []); // completes twice
/// });
/// let bugcheck = outcome.bugcheck().expect("a bugcheck");
/// assert_eq!(bugcheck.code, 0x44);
/// ```
///
/// # Panics
/// When the test's name cannot be found (the call is not on a test's own thread: use
/// [`isolated_as`]) or the child cannot be started.
pub fn isolated(body: impl FnOnce()) -> Outcome {
    let name = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_owned)
        .expect("isolated() runs on a test's own thread (libtest names it after the test); use isolated_as(test_name, …) elsewhere");
    isolated_as(&name, body)
}

/// [`isolated`] for the test named `test` (its full path in the test binary, as
/// `cargo test -- --list` shows it).
///
/// # Panics
/// When the child cannot be started.
pub fn isolated_as(test: &str, body: impl FnOnce()) -> Outcome {
    match std::env::var(CHILD_VAR) {
        Ok(child) if child == test => {
            body();
            std::process::exit(0);
        }
        Ok(child) => not_this_child(&child),
        Err(_) => {}
    }
    let child = spawn(test, test);
    outcome(child.wait_with_output().expect("the child process"))
}

/// [`isolated`] for several cases at once: one child process per case, all running at the
/// same time; in the child for `case`, `body(case)` runs and the process exits. Returns each
/// case's [`Outcome`], in the order of `cases`. `label` names a case (distinct labels; they
/// travel in an environment variable).
///
/// Everything the test does before this call runs in every child too; `body` runs only in
/// the child of its case.
///
/// # Panics
/// As [`isolated`]; when two cases have the same label.
pub fn isolated_each<T>(
    cases: &[T],
    label: impl Fn(&T) -> String,
    body: impl Fn(&T),
) -> Vec<Outcome> {
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_owned)
        .expect("isolated_each() runs on a test's own thread (libtest names it after the test)");
    let labels: Vec<String> = cases.iter().map(&label).collect();
    for (i, one) in labels.iter().enumerate() {
        assert!(!labels[..i].contains(one), "two cases are labelled {one:?}");
    }
    if let Ok(child) = std::env::var(CHILD_VAR) {
        let Some(label) = child.strip_prefix(&format!("{test}\u{1f}")) else {
            not_this_child(&child);
        };
        let index = labels
            .iter()
            .position(|one| one == label)
            .unwrap_or_else(|| panic!("no case labelled {label:?}"));
        body(&cases[index]);
        std::process::exit(0);
    }
    let children: Vec<_> = labels
        .iter()
        .map(|label| spawn(&test, &format!("{test}\u{1f}{label}")))
        .collect();
    // Each child's output read on a thread of its own, so that no child blocks on a full pipe
    // while another is waited for.
    std::thread::scope(|scope| {
        let readers: Vec<_> = children
            .into_iter()
            .map(|child| scope.spawn(|| child.wait_with_output()))
            .collect();
        readers
            .into_iter()
            .map(|reader| {
                outcome(
                    reader
                        .join()
                        .expect("the reader thread")
                        .expect("the child process"),
                )
            })
            .collect()
    })
}

/// A child process reached an isolation it was not started for (two isolations in one test):
/// stop rather than start children of its own.
fn not_this_child(child: &str) -> ! {
    panic!(
        "this process is the isolated child {child:?} and reached another isolated call: use one isolated()/isolated_each() per test"
    );
}

/// Starts this test binary again, running only `test`, as the child `key`.
fn spawn(test: &str, key: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("a child process")
}

fn outcome(output: std::process::Output) -> Outcome {
    Outcome {
        status: output.status,
        stdout: String::from_utf8(output.stdout)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()),
        stderr: String::from_utf8(output.stderr)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bugcheck_lines_are_parsed() {
        assert_eq!(
            parse_bugcheck(
                "host kernel BUGCHECK 0x44 MULTIPLE_IRP_COMPLETE_REQUESTS in IofCompleteRequest: 0x1 completed twice"
            ),
            Some(Bugcheck {
                code: 0x44,
                name: "MULTIPLE_IRP_COMPLETE_REQUESTS".into(),
                routine: "IofCompleteRequest".into(),
                message: "0x1 completed twice".into(),
            })
        );
        assert_eq!(
            parse_bugcheck(
                "host kernel BUGCHECK 0xC9 DRIVER_VERIFIER_IOMANAGER_VIOLATION in I/O manager: MajorFunction[0xe] returned"
            )
            .map(|b| (b.code, b.routine)),
            Some((0xC9, "I/O manager".into()))
        );
        assert_eq!(
            parse_bugcheck(
                "host kernel BUGCHECK 0x1E KMODE_EXCEPTION_NOT_HANDLED: STATUS_ACCESS_VIOLATION (0xc0000005) in image a.sys at RVA 0x1000"
            )
            .map(|b| (b.code, b.name, b.routine)),
            Some((0x1E, "KMODE_EXCEPTION_NOT_HANDLED".into(), String::new()))
        );
        assert_eq!(
            parse_bugcheck("host kernel: call into unmapped image"),
            None
        );
    }
}
