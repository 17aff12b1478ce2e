//! An in-memory fake of the sample driver, for testing the client's own logic.
//!
//! **This is not the driver and proves nothing about it.** It runs no driver code, no
//! DriverProxy wrapper and no kernel: it calls `hotswap-sample-core`'s dispatch and worker
//! functions directly, and models a hot swap with a read-write lock (requests hold it shared,
//! like calls in flight on a wrapper; a swap takes it exclusively, like the rundown held in
//! `ProxyStalled`, hands the state over with the core's export/import, and switches
//! version). It exists so that the stress accounting and the watch's change detection can be
//! tested on any machine with a swap happening under them. The driver itself is exercised by
//! the Windows backend and, once written, the in-process host backend.

use std::{
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use hotswap_sample_core::{
    Completion, DriverVersion, HandOverError, NtStatus, State, dispatch_device_control_as,
    worker_routine_as,
};

use crate::backend::{Backend, BackendError};

/// The loaded "build": its version and its own state.
#[derive(Debug)]
struct Loaded {
    version: DriverVersion,
    state: State,
}

/// The fake device, shared by every [`FakeBackend`] connected to it.
#[derive(Debug)]
pub struct FakeDevice {
    loaded: RwLock<Loaded>,
}

impl FakeDevice {
    /// A device whose loaded build is `version`, with fresh counters.
    #[must_use]
    pub fn new(version: DriverVersion) -> Arc<Self> {
        Arc::new(Self {
            loaded: RwLock::new(Loaded {
                version,
                state: State::new(),
            }),
        })
    }

    /// The loaded build.
    #[must_use]
    pub fn version(&self) -> DriverVersion {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .version
    }

    /// A new connection (like opening a handle).
    #[must_use]
    pub fn connect(self: &Arc<Self>) -> FakeBackend {
        FakeBackend {
            device: Arc::clone(self),
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
        let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        let snapshot = loaded.state.export_handover(loaded.version);
        let incoming = State::new();
        incoming.import_handover(&snapshot)?;
        *loaded = Loaded {
            version,
            state: incoming,
        };
        Ok(())
    }

    /// Runs the worker routine once with `wait_status`, as the loaded build; returns whether
    /// the worker would wait again.
    pub fn run_worker(&self, wait_status: NtStatus) -> bool {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        worker_routine_as(loaded.version, &loaded.state, wait_status)
    }

    /// Starts a thread that swaps between v1 and v2 every `period` and runs a worker tick
    /// after each swap, until the returned handle is dropped.
    #[must_use]
    pub fn spawn_swapper(self: &Arc<Self>, period: Duration) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let device = Arc::clone(self);
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                thread::sleep(period);
                // A fresh state never refuses an import of a snapshot exported by the core.
                let _ = device.swap_to(device.version().other());
                device.run_worker(NtStatus::TIMEOUT);
            }
        });
        Swapper {
            stop,
            thread: Some(thread),
        }
    }
}

/// The background swapper of [`FakeDevice::spawn_swapper`]; stops when dropped.
#[derive(Debug)]
pub struct Swapper {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
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
        let loaded = self
            .device
            .loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(dispatch_device_control_as(
            loaded.version,
            &loaded.state,
            code,
            input,
            output,
        ))
    }

    fn describe(&self) -> String {
        "in-memory fake (not a driver)".to_owned()
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
        assert!(device.run_worker(NtStatus::TIMEOUT));
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
}
