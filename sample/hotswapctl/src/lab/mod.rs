//! What a scenario runs against: the [`Lab`] trait, the control operations a scenario needs
//! beyond sending requests (swap, disable, enable, unload, reload), and the labs that
//! implement it. [`CommandLab`] (module [`command`]) is the lab whose operations run external
//! commands (the Windows VM suite, `tests/vm/`); the others live with what they drive.
//!
//! | lab | where | what its operations do |
//! |---|---|---|
//! | [`crate::fake::FakeLab`] | everywhere | change an in-memory fake of the driver; **not a driver**, it only tests the scenarios' own logic |
//! | [`CommandLab`] | built everywhere, meant for Windows | run the commands given on the command line (`pnputil`, `sc`, `tests/vm/*.ps1`); requests go to the installed driver through `crate::backend::windows::DeviceBackend` |
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

use std::{fmt, io, time::Duration};

use hotswap_sample_core::{DriverVersion, NtStatus, StatsInfo, worker::WORKER_PERIOD_100NS};

use crate::{
    backend::{Backend, BackendError},
    client::{Client, ClientError},
};

pub mod command;

pub use command::{CommandLab, Connector, LabCommands, run_command, split_command};

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
    /// * Windows: `CreateFileW` on `\\.\HotSwapSample` (`crate::backend::windows::DeviceBackend`).
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
