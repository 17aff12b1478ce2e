//! An in-memory fake of the sample driver, for testing the client's own logic.
//!
//! **This is not the driver and proves nothing about it.** It runs no driver code, no
//! DriverProxy wrapper and no kernel: it calls `hotswap-sample-core`'s dispatch and worker
//! functions directly, and models a hot swap with a read-write lock (requests hold it shared,
//! like calls in flight on a wrapper; a swap takes it exclusively, like the rundown held in
//! `ProxyStalled`, hands the state over with the core's export/import, and switches
//! version). It exists so that the stress accounting, the watch's change detection and the
//! scenarios' pass/fail criteria can be tested on any machine with a swap happening under
//! them. The driver itself is exercised by the Windows backend and by the in-process host
//! backend (`crate::host`), which runs the WDM sample's real `.sys` images.
//!
//! For the scenarios ([`crate::scenarios`]) the fake also models the device going away and
//! coming back ([`FakeLab`], an implementation of [`Lab`]):
//!
//! * **disable / unload**: the device is absent. Opening a connection fails with "not
//!   found" and a request on a connection opened before completes with
//!   `STATUS_DELETE_PENDING` (the documented errors, [`crate::lab::is_absent_error`]). The
//!   driver's state is gone (`PnP` unloads a driver with its last device).
//! * **enable / reload**: the device is present again with fresh counters, as the build that
//!   was loaded last.
//! * **worker**: [`FakeLab`] runs a real thread that ticks the worker routine every period
//!   while the device is present, and once more right after each swap (the driver's kick).
//!
//! [`FakeFault`] breaks the fake on purpose in one way, so that tests can check that each
//! scenario notices what it is meant to notice.

use std::{
    io,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use hotswap_sample_core::{
    Completion, DriverVersion, HandOverError, NtStatus, State, Wake, dispatch_device_control_as,
    worker_routine_as,
};

use crate::{
    backend::{Backend, BackendError},
    lab::{Lab, LabError, STATUS_DELETE_PENDING},
};

/// A defect the fake can be given on purpose ([`FakeDevice::with_fault`]), one at a time,
/// so that tests can check that a scenario fails with the right criterion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeFault {
    /// Each hand-over drops one request the outgoing build served.
    LoseCountOnSwap,
    /// Swaps are not counted (the incoming state keeps the outgoing swap count).
    SwapNotCounted,
    /// After a swap the device keeps answering as the outgoing build (as if the wrappers
    /// had not been repointed), though the swap reported success.
    StaleVersionAfterSwap,
    /// The worker's ticks are not handed over: the incoming build starts them from zero.
    WorkerCountLostOnSwap,
    /// The worker stops ticking at the first swap.
    WorkerStopsAfterSwap,
    /// `disable` reports success but the device keeps serving.
    DisableIgnored,
    /// While disabled, the device can still be opened and fails requests with
    /// `STATUS_UNSUCCESSFUL`, which is not the documented error.
    WrongStatusWhileDisabled,
    /// While disabled, the device can still be opened and a request blocks this long
    /// before failing.
    HangWhileDisabled(Duration),
    /// `unload` reports success but the device keeps serving.
    UnloadIgnored,
    /// `reload` keeps the unloaded driver's counters instead of starting afresh.
    ReloadKeepsState,
}

/// Whether the device exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    Present,
    Disabled,
    Unloaded,
}

/// The loaded "build": its version and its own state.
#[derive(Debug)]
struct Loaded {
    version: DriverVersion,
    /// The version the responses name (differs from `version` only with
    /// [`FakeFault::StaleVersionAfterSwap`]).
    answers_as: DriverVersion,
    state: State,
    presence: Presence,
    /// Set by [`FakeFault::WorkerStopsAfterSwap`].
    worker_stopped: bool,
}

/// The fake device, shared by every [`FakeBackend`] connected to it.
#[derive(Debug)]
pub struct FakeDevice {
    loaded: RwLock<Loaded>,
    fault: Option<FakeFault>,
}

impl FakeDevice {
    /// A device whose loaded build is `version`, with fresh counters.
    #[must_use]
    pub fn new(version: DriverVersion) -> Arc<Self> {
        Self::build(version, None)
    }

    /// As [`Self::new`], with a defect (for testing the scenarios).
    #[must_use]
    pub fn with_fault(version: DriverVersion, fault: FakeFault) -> Arc<Self> {
        Self::build(version, Some(fault))
    }

    fn build(version: DriverVersion, fault: Option<FakeFault>) -> Arc<Self> {
        Arc::new(Self {
            loaded: RwLock::new(Loaded {
                version,
                answers_as: version,
                state: State::new(),
                presence: Presence::Present,
                worker_stopped: false,
            }),
            fault,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Loaded> {
        self.loaded.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loaded build.
    #[must_use]
    pub fn version(&self) -> DriverVersion {
        self.read().version
    }

    /// Whether the device exists (not disabled, not unloaded).
    #[must_use]
    pub fn is_present(&self) -> bool {
        self.read().presence == Presence::Present
    }

    /// A new connection (like opening a handle), whether or not the device is present: its
    /// requests fail while the device is absent.
    #[must_use]
    pub fn connect(self: &Arc<Self>) -> FakeBackend {
        FakeBackend {
            device: Arc::clone(self),
        }
    }

    /// A new connection, refused with "not found" while the device is absent (as opening
    /// `\\.\HotSwapSample` fails once the symbolic link is gone).
    ///
    /// # Errors
    /// [`BackendError::Open`] with [`io::ErrorKind::NotFound`] while the device is absent.
    pub fn try_connect(self: &Arc<Self>) -> Result<FakeBackend, BackendError> {
        let presence = self.read().presence;
        let opens_anyway = presence == Presence::Disabled
            && matches!(
                self.fault,
                Some(FakeFault::WrongStatusWhileDisabled | FakeFault::HangWhileDisabled(_))
            );
        if presence == Presence::Present || opens_anyway {
            Ok(self.connect())
        } else {
            Err(BackendError::Open {
                path: "fake device".to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "the fake device is absent"),
            })
        }
    }

    /// Swaps to `version`: waits for requests in flight to finish and holds new ones (the
    /// exclusive lock), exports the outgoing state, imports it into a fresh state for the
    /// incoming build, and switches.
    ///
    /// # Errors
    /// The hand-over's error; the outgoing build then stays loaded, as after a rolled-back
    /// swap.
    pub fn swap_to(&self, version: DriverVersion) -> Result<(), HandOverError> {
        let mut loaded = self.write();
        let mut snapshot = loaded.state.export_handover(loaded.version);
        match self.fault {
            Some(FakeFault::LoseCountOnSwap) => {
                let served = match loaded.version {
                    DriverVersion::V1 => &mut snapshot.served_v1,
                    DriverVersion::V2 => &mut snapshot.served_v2,
                };
                *served = served.saturating_sub(1);
            }
            Some(FakeFault::SwapNotCounted) => {
                snapshot.swaps = snapshot.swaps.wrapping_sub(1);
            }
            Some(FakeFault::WorkerCountLostOnSwap) => {
                snapshot.worker_ticks_v1 = 0;
                snapshot.worker_ticks_v2 = 0;
            }
            Some(FakeFault::WorkerStopsAfterSwap) => loaded.worker_stopped = true,
            _ => {}
        }
        let incoming = State::new();
        incoming.import_handover(&snapshot)?;
        let answers_as = if self.fault == Some(FakeFault::StaleVersionAfterSwap) {
            loaded.answers_as
        } else {
            version
        };
        loaded.version = version;
        loaded.answers_as = answers_as;
        loaded.state = incoming;
        Ok(())
    }

    /// Runs the worker routine once for `wake`, as the loaded build; returns whether the
    /// worker would wait again. Nothing ticks while the device is absent.
    pub fn run_worker(&self, wake: Wake) -> bool {
        let loaded = self.read();
        if loaded.presence != Presence::Present || loaded.worker_stopped {
            return true;
        }
        worker_routine_as(loaded.version, &loaded.state, wake)
    }

    /// Disables the device (absent; the driver's state is dropped, as `PnP` unloads a driver
    /// with its last device).
    pub fn disable(&self) {
        if self.fault != Some(FakeFault::DisableIgnored) {
            let mut loaded = self.write();
            loaded.presence = Presence::Disabled;
            loaded.state = State::new();
        }
    }

    /// Enables the device again: present, fresh counters, the same build.
    pub fn enable(&self) {
        let mut loaded = self.write();
        if loaded.presence == Presence::Disabled {
            loaded.presence = Presence::Present;
            loaded.state = State::new();
            loaded.answers_as = loaded.version;
        }
    }

    /// Unloads the driver (absent).
    pub fn unload(&self) {
        if self.fault != Some(FakeFault::UnloadIgnored) {
            self.write().presence = Presence::Unloaded;
        }
    }

    /// Loads the driver again: present, fresh counters (unless
    /// [`FakeFault::ReloadKeepsState`]), the build loaded last.
    pub fn reload(&self) {
        let mut loaded = self.write();
        loaded.presence = Presence::Present;
        loaded.answers_as = loaded.version;
        loaded.worker_stopped = false;
        if self.fault != Some(FakeFault::ReloadKeepsState) {
            loaded.state = State::new();
        }
    }

    /// Starts a thread that swaps between v1 and v2 every `period` and runs a worker tick
    /// after each swap, until the returned handle is dropped.
    #[must_use]
    pub fn spawn_swapper(self: &Arc<Self>, period: Duration) -> Swapper {
        let device = Arc::clone(self);
        Swapper::spawn(period, move || {
            // A fresh state never refuses an import of a snapshot exported by the core.
            let _ = device.swap_to(device.version().other());
            device.run_worker(Wake::Timeout);
        })
    }
}

/// A background thread of the fake (the swapper of [`FakeDevice::spawn_swapper`], the
/// worker of [`FakeLab`]) running an action every period; stops when dropped.
#[derive(Debug)]
pub struct Swapper {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Swapper {
    fn spawn(period: Duration, mut action: impl FnMut() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(period);
                action();
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection to a [`FakeDevice`].
#[derive(Debug, Clone)]
pub struct FakeBackend {
    device: Arc<FakeDevice>,
}

impl Backend for FakeBackend {
    fn device_control(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Completion, BackendError> {
        let loaded = self.device.read();
        if loaded.presence == Presence::Present {
            return Ok(dispatch_device_control_as(
                loaded.answers_as,
                &loaded.state,
                code,
                input,
                output,
            ));
        }
        let disabled = loaded.presence == Presence::Disabled;
        drop(loaded);
        Ok(Completion::failed(match self.device.fault {
            Some(FakeFault::WrongStatusWhileDisabled) if disabled => NtStatus::UNSUCCESSFUL,
            Some(FakeFault::HangWhileDisabled(hang)) if disabled => {
                thread::sleep(hang);
                STATUS_DELETE_PENDING
            }
            _ => STATUS_DELETE_PENDING,
        }))
    }

    fn describe(&self) -> String {
        "in-memory fake (not a driver)".to_owned()
    }
}

/// The fake as a [`Lab`] for the scenarios: a [`FakeDevice`] plus a worker thread ticking
/// every `worker_period` while the device is present. **Not a driver** (module docs).
#[derive(Debug)]
pub struct FakeLab {
    device: Arc<FakeDevice>,
    worker_period: Duration,
    _worker: Swapper,
}

impl FakeLab {
    /// A lab over `device` whose worker ticks every `worker_period`.
    #[must_use]
    pub fn new(device: Arc<FakeDevice>, worker_period: Duration) -> Self {
        let ticking = Arc::clone(&device);
        let worker = Swapper::spawn(worker_period, move || {
            ticking.run_worker(Wake::Timeout);
        });
        Self {
            device,
            worker_period,
            _worker: worker,
        }
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> &Arc<FakeDevice> {
        &self.device
    }
}

impl Lab for FakeLab {
    fn describe(&self) -> String {
        "in-memory fake (not a driver)".to_owned()
    }

    fn connect(&self) -> Result<Box<dyn Backend>, BackendError> {
        Ok(Box::new(self.device.try_connect()?))
    }

    fn swap_to(&self, version: DriverVersion) -> Result<(), LabError> {
        if !self.device.is_present() {
            return Err(LabError::Failed("the fake device is absent".to_owned()));
        }
        self.device
            .swap_to(version)
            .map_err(|error| LabError::Failed(format!("hand-over refused: {error}")))?;
        // The driver sets its kick event after a swap: the worker ticks in the new code now.
        self.device.run_worker(Wake::Timeout);
        Ok(())
    }

    fn disable(&self) -> Result<(), LabError> {
        self.device.disable();
        Ok(())
    }

    fn enable(&self) -> Result<(), LabError> {
        self.device.enable();
        Ok(())
    }

    fn unload(&self) -> Result<(), LabError> {
        self.device.unload();
        Ok(())
    }

    fn reload(&self) -> Result<(), LabError> {
        self.device.reload();
        Ok(())
    }

    fn worker_period(&self) -> Duration {
        self.worker_period
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Client;

    #[test]
    fn swap_changes_the_answer_and_keeps_the_counts() {
        let device = FakeDevice::new(DriverVersion::V1);
        let mut client = Client::new(device.connect());
        assert_eq!(client.transform(b"abc").unwrap().value, b"ABC");
        assert!(device.run_worker(Wake::Timeout));
        device.swap_to(DriverVersion::V2).unwrap();
        let reply = client.transform(b"abc").unwrap();
        assert_eq!(
            (reply.driver_version, reply.value.as_slice()),
            (DriverVersion::V2, &b"nop"[..])
        );
        let stats = client.stats().unwrap().value;
        assert_eq!((stats.served_v1, stats.served_v2, stats.swaps), (1, 2, 1));
        assert_eq!(stats.worker_ticks_v1, 1);
    }

    #[test]
    fn an_absent_device_refuses_connections_and_fails_open_ones() {
        let device = FakeDevice::new(DriverVersion::V1);
        let mut open = Client::new(device.connect());
        device.disable();
        assert!(!device.is_present());
        let error = device.try_connect().unwrap_err();
        assert!(crate::lab::is_absent_error(&error.into()));
        assert_eq!(
            open.version().unwrap_err().status(),
            Some(STATUS_DELETE_PENDING)
        );
        device.enable();
        assert_eq!(open.stats().unwrap().value.served, 1, "fresh counters");
        device.unload();
        assert!(device.try_connect().is_err());
        device.reload();
        assert!(device.try_connect().is_ok());
    }
}
