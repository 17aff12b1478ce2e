//! The in-process host kernel: the WDM sample's real `.sys` images (x64) running in this
//! process on `driver-proxy-host`, as a [`Backend`] and a [`Lab`].
//!
//! Nothing here simulates the driver: [`HostLab`] maps `hotswap_sample_v1.sys` or
//! `hotswap_sample_v2.sys` (written by `cargo xtask build-driver`), runs its `DriverEntry`,
//! and every request is an `IRP_MJ_DEVICE_CONTROL` sent by the model's I/O manager to the
//! dispatch routine the image registered: a DriverProxy wrapper in front of the image's
//! machine code. A swap maps the other image and runs its `DriverEntry` in swap mode on the
//! same driver object (`sample/wdm` crate docs), which re-registers the driver's endpoints
//! and hands its state over in `ProxyStalled`; the outgoing image is then retired.
//!
//! # The lab's operations
//!
//! | operation | what it does here |
//! |---|---|
//! | `connect` | opens `\\.\HotSwapSample` on the loaded driver (`IRP_MJ_CREATE`); while no driver is loaded, fails as "not found" |
//! | `swap_to` | hot swap to that build's image; nothing if it already serves |
//! | `disable` | what `PnP` removal does to the sample's device: new opens fail at once, the lab waits (bounded) for open handles to close, then the driver unloads (its `DriverUnload`, leak check, image unmapped) |
//! | `enable`, `reload` | a first load of the build that served last, fresh state |
//! | `unload` | as `disable` |
//!
//! The host runs x86-64 images only, on x86-64 Linux: this module exists there only, and
//! elsewhere `hotswapctl --backend host` says so.

use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    thread,
    time::{Duration, Instant},
};

use driver_proxy_host::image_driver::{Connection, ImageDriver, ImageDriverError, ImageSwap};
use hotswap_sample_core::{
    Completion, DriverVersion,
    names::{WDM_SERVICE_NAME, WIN32_DEVICE_PATH},
};

use crate::{
    backend::{Backend, BackendError},
    lab::{Lab, LabError},
};

/// The file name of `version`'s image in the directory `cargo xtask build-driver` writes.
#[must_use]
pub fn image_file_name(version: DriverVersion) -> &'static str {
    match version {
        DriverVersion::V1 => "hotswap_sample_v1.sys",
        DriverVersion::V2 => "hotswap_sample_v2.sys",
    }
}

/// One connection: an open handle on the sample's device in the host kernel.
pub struct HostBackend {
    connection: Connection,
}

impl fmt::Debug for HostBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBackend")
            .field("connection", &self.connection)
            .finish()
    }
}

impl Backend for HostBackend {
    fn device_control(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Completion, BackendError> {
        let (status, information) = self.connection.device_control(code, input, output);
        Ok(Completion {
            status,
            information,
        })
    }

    fn describe(&self) -> String {
        format!(
            "{WIN32_DEVICE_PATH} of {} in the host kernel",
            self.connection.driver().serving_image()
        )
    }
}

/// What the lab holds.
struct Loaded {
    /// The driver, while loaded.
    driver: Option<Arc<ImageDriver>>,
    /// The build serving now, or that served last.
    version: DriverVersion,
}

/// The sample driver's images on the host kernel, as a [`Lab`].
pub struct HostLab {
    images: PathBuf,
    loaded: Mutex<Loaded>,
    swaps: Mutex<Vec<ImageSwap>>,
    /// How long `disable`/`unload` wait for open handles to close.
    close_timeout: Duration,
}

impl fmt::Debug for HostLab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostLab")
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn failed(error: &ImageDriverError) -> LabError {
    LabError::Failed(error.to_string())
}

impl HostLab {
    /// Loads `version`'s image from `images` (the directory of `cargo xtask build-driver`'s
    /// x64 images, `target/drivers/amd64`) as the driver `HotSwapSampleWdm`.
    ///
    /// # Errors
    /// The image is missing, the loader refused it, or its `DriverEntry` failed; on a host
    /// other than x86-64 Linux, the loader's "not supported" error.
    pub fn new(images: &Path, version: DriverVersion) -> Result<Self, ImageDriverError> {
        let driver = ImageDriver::load(&images.join(image_file_name(version)), WDM_SERVICE_NAME)?;
        Ok(Self {
            images: images.to_owned(),
            loaded: Mutex::new(Loaded {
                driver: Some(Arc::new(driver)),
                version,
            }),
            swaps: Mutex::new(Vec::new()),
            close_timeout: Duration::from_secs(10),
        })
    }

    /// The path of `version`'s image.
    #[must_use]
    pub fn image_path(&self, version: DriverVersion) -> PathBuf {
        self.images.join(image_file_name(version))
    }

    /// The swaps done so far, oldest first.
    #[must_use]
    pub fn swaps(&self) -> Vec<ImageSwap> {
        lock(&self.swaps).clone()
    }

    /// The driver, while loaded.
    #[must_use]
    pub fn driver(&self) -> Option<Arc<ImageDriver>> {
        lock(&self.loaded).driver.clone()
    }

    /// Opens a connection (a concrete [`HostBackend`]).
    ///
    /// # Errors
    /// [`BackendError::Open`] "not found" while no driver is loaded, or the status of a failed
    /// open.
    pub fn open(&self) -> Result<HostBackend, BackendError> {
        let driver = self.driver().ok_or_else(|| BackendError::Open {
            path: WIN32_DEVICE_PATH.to_owned(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "no driver loaded in the host kernel",
            ),
        })?;
        let connection =
            driver
                .connect(WIN32_DEVICE_PATH)
                .map_err(|status| BackendError::Open {
                    path: WIN32_DEVICE_PATH.to_owned(),
                    source: io::Error::new(io::ErrorKind::NotFound, status.to_string()),
                })?;
        Ok(HostBackend { connection })
    }

    /// Hot-swaps the loaded driver to `version`'s image; `Ok(None)` if that build already
    /// serves.
    ///
    /// # Errors
    /// `Err(None)` if no driver is loaded; otherwise the image driver's error (a refused swap
    /// leaves the serving build as it was).
    pub fn swap_image(
        &self,
        version: DriverVersion,
    ) -> Result<Option<ImageSwap>, Option<ImageDriverError>> {
        let mut loaded = lock(&self.loaded);
        let driver = loaded.driver.clone().ok_or(None)?;
        if loaded.version == version {
            return Ok(None);
        }
        let swap = driver.swap_to(&self.image_path(version))?;
        loaded.version = version;
        lock(&self.swaps).push(swap.clone());
        Ok(Some(swap))
    }

    /// Takes the driver out (new opens now fail), waits for its open handles to close, and
    /// unloads it. The driver's build is kept for a later load.
    fn remove(&self) -> Result<(), LabError> {
        let Some(mut driver) = lock(&self.loaded).driver.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + self.close_timeout;
        let driver = loop {
            match Arc::try_unwrap(driver) {
                Ok(driver) => break driver,
                Err(shared) if Instant::now() < deadline => {
                    driver = shared;
                    thread::sleep(Duration::from_millis(1));
                }
                Err(shared) => {
                    let open = Arc::strong_count(&shared) - 1;
                    lock(&self.loaded).driver = Some(shared);
                    return Err(LabError::Failed(format!(
                        "{open} handle(s) still open after {:?}: the driver stays loaded",
                        self.close_timeout
                    )));
                }
            }
        };
        driver.unload().map_err(|error| failed(&error))
    }

    /// Loads the build that served last, from scratch.
    fn load_again(&self) -> Result<(), LabError> {
        let mut loaded = lock(&self.loaded);
        if loaded.driver.is_some() {
            return Err(LabError::Failed("the driver is already loaded".to_owned()));
        }
        let path = self.image_path(loaded.version);
        let driver = ImageDriver::load(&path, WDM_SERVICE_NAME).map_err(|error| failed(&error))?;
        loaded.driver = Some(Arc::new(driver));
        Ok(())
    }
}

impl Lab for HostLab {
    fn describe(&self) -> String {
        format!(
            "the WDM sample's .sys images ({}) in the in-process host kernel",
            self.images.display()
        )
    }

    fn connect(&self) -> Result<Box<dyn Backend>, BackendError> {
        Ok(Box::new(self.open()?))
    }

    fn swap_to(&self, version: DriverVersion) -> Result<(), LabError> {
        match self.swap_image(version) {
            Ok(_) => Ok(()),
            Err(None) => Err(LabError::Failed("no driver loaded to swap".to_owned())),
            Err(Some(error)) => Err(failed(&error)),
        }
    }

    fn disable(&self) -> Result<(), LabError> {
        self.remove()
    }

    fn enable(&self) -> Result<(), LabError> {
        self.load_again()
    }

    fn unload(&self) -> Result<(), LabError> {
        self.remove()
    }

    fn reload(&self) -> Result<(), LabError> {
        self.load_again()
    }
}
