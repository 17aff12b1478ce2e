//! Real `.sys` images as running drivers: the PE loader ([`crate::image`]) maps an image and
//! binds its imports to the Microsoft x64 entry points of the model ([`crate::wdm`]); the I/O
//! manager model runs its `DriverEntry` and sends it requests; a second image of the same
//! driver takes it over by a real hot swap; unload runs `DriverUnload` and checks for leaks.
//!
//! # Image hot swap
//!
//! [`ImageDriver::swap_to`] maps the incoming image, then calls its `DriverEntry` against the
//! **same driver object** (the swap mode of the WDM sample, `sample/wdm/src/main.rs`). The
//! incoming code re-registers the endpoint ids the driver registered at first load with
//! `IoRegisterDriverProxyEndpoints` and a phased callback: **endpoints are matched by V1 id**,
//! and the kernel runs the swap protocol inside that call (drain of the outgoing code, hand-over
//! in `ProxyStalled` while new calls are held, repoint, release). Then:
//!
//! * **Success**: every wrapper now forwards to the incoming image, and the drain waited for
//!   every call in the outgoing one, so nothing runs in it and nothing handed out points into
//!   it. The outgoing image is unmapped at once, which on this host means *retired*: its
//!   range stays reserved with no access, so a call that still reaches it (a stale function
//!   pointer the driver kept, a thread it started outside DriverProxy) aborts the process
//!   with `host kernel: call into unmapped image <name> at RVA …` instead of running stale
//!   code or someone else's. Calls through a wrapper to the retired implementation are also
//!   caught by the engine's poisoning.
//! * **Incomplete** (the entry succeeded but did not re-register every endpoint, so some
//!   still forward into the outgoing image): an error; neither image is unmapped, since code
//!   of both is reachable.
//! * **Failure** (the entry returned an error: a phased callback failed, the drain timed out,
//!   the image is not of this driver): the kernel rolled the swap back, the outgoing image
//!   keeps serving, and the incoming image is unmapped without running its `DriverUnload` (it
//!   registered nothing that survives the rollback). A failing entry must leave the driver
//!   object as it found it: a routine of its own it stored there (`DriverUnload`, a
//!   `MajorFunction` slot) points into the unmapped image, and the first call through it
//!   aborts the process naming that image.
//!
//! Swaps are serialised; requests may run on other threads meanwhile.
//!
//! # Lifetime
//!
//! [`ImageDriver::unload`] runs the serving image's `DriverUnload` (through its wrapper),
//! checks that nothing was left behind, and unmaps the image. A driver dropped without
//! unloading stays loaded for the rest of the process, and so does its image (its worker
//! thread and devices still use it).

use std::fmt;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use driver_proxy::NtStatus;

use crate::image::{ImportRef, LoadError, LoadedImage};
use crate::kernel::control::{DriverControl, DriverFeatures, EndpointKey, ExtensionControl};
use crate::wdm::{self, Closed, Driver, FileHandle, Leaks, UnloadError};

/// Why an image could not be loaded, started or swapped to.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImageDriverError {
    /// The file could not be read.
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The loader refused the image (it names what is wrong).
    Load {
        /// The image's file name.
        image: String,
        /// What is wrong.
        source: LoadError,
    },
    /// `DriverEntry` of a first load failed with this status; the image was unmapped.
    Entry {
        /// The image's file name.
        image: String,
        /// The status it returned.
        status: NtStatus,
    },
    /// The incoming image's `DriverEntry` (swap mode) failed with this status: the swap was
    /// rolled back, the outgoing image keeps serving, the incoming one was unmapped.
    SwapRefused {
        /// The image that keeps serving.
        serving: String,
        /// The image that was refused.
        incoming: String,
        /// The status its entry returned.
        status: NtStatus,
    },
    /// `DriverUnload` left things behind; the image stays mapped (what is left may use it).
    Unload {
        /// The image's file name.
        image: String,
        /// What was left.
        leaks: Box<Leaks>,
    },
    /// The incoming image's `DriverEntry` succeeded, but endpoints still forward into the
    /// outgoing image (the incoming one did not re-register them): the driver now runs code
    /// of both, so neither image is unmapped.
    IncompleteSwap {
        /// The image still partly serving.
        outgoing: String,
        /// The image now serving the other endpoints.
        incoming: String,
        /// The endpoints still in the outgoing image.
        endpoints: Vec<EndpointKey>,
    },
    /// The driver set no `DriverUnload` and cannot be unloaded.
    NoUnloadRoutine {
        /// The image's file name.
        image: String,
    },
    /// Handles (connections) to the driver's devices were still open when it was to be
    /// unloaded, and stayed open: the driver stays loaded.
    HandlesOpen {
        /// The image's file name.
        image: String,
        /// How many.
        open: usize,
    },
}

impl ImageDriverError {
    /// What an unload left behind, for [`ImageDriverError::Unload`].
    #[must_use]
    pub fn leaks(&self) -> Option<&Leaks> {
        match self {
            Self::Unload { leaks, .. } => Some(leaks),
            _ => None,
        }
    }

    /// The status a failed `DriverEntry` returned ([`ImageDriverError::Entry`],
    /// [`ImageDriverError::SwapRefused`]).
    #[must_use]
    pub fn entry_status(&self) -> Option<NtStatus> {
        match self {
            Self::Entry { status, .. } | Self::SwapRefused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ImageDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::Load { image, source } => write!(f, "cannot load {image}: {source}"),
            Self::Entry { image, status } => write!(f, "DriverEntry of {image} failed: {status}"),
            Self::SwapRefused {
                serving,
                incoming,
                status,
            } => write!(
                f,
                "swap from {serving} to {incoming} refused: its DriverEntry returned {status}; {serving} keeps serving"
            ),
            Self::Unload { image, leaks } => write!(f, "unload of {image}: {leaks}"),
            Self::IncompleteSwap {
                outgoing,
                incoming,
                endpoints,
            } => write!(
                f,
                "swap from {outgoing} to {incoming} incomplete: {incoming} did not re-register {endpoints:?}, which still run in {outgoing}; both images stay mapped"
            ),
            Self::NoUnloadRoutine { image } => {
                write!(f, "{image} set no DriverUnload: it cannot be unloaded")
            }
            Self::HandlesOpen { image, open } => write!(
                f,
                "{open} handle(s) to the devices of {image} still open: it stays loaded"
            ),
        }
    }
}

impl std::error::Error for ImageDriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Load { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How [`ImageDriver::load_with`] starts a driver: its service name and registry path, and
/// what the DriverProxy model says to it before its `DriverEntry` runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// The service name: the driver object is `\Driver\<service>`.
    pub service: String,
    /// The registry path handed to `DriverEntry` (default:
    /// `\Registry\Machine\System\CurrentControlSet\Services\<service>`).
    pub registry_path: Option<String>,
    /// What `IoGetDriverProxyFeatures` answers for the driver (default: enabled): e.g.
    /// [`DriverFeatures::Disabled`] to test the driver's fallback.
    pub features: Option<DriverFeatures>,
    /// Makes the driver's first `IoCreateDriverProxyExtension` fail with this status.
    pub fail_extension_creation: Option<crate::ddi::NTSTATUS>,
    /// The drain timeout of its swaps (default 5 s).
    pub drain_timeout: Option<Duration>,
}

impl LoadOptions {
    /// The defaults for service `service`.
    #[must_use]
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            ..Self::default()
        }
    }

    /// Hands `registry_path` to `DriverEntry`.
    #[must_use]
    pub fn registry_path(mut self, registry_path: &str) -> Self {
        self.registry_path = Some(registry_path.to_owned());
        self
    }

    /// What `IoGetDriverProxyFeatures` answers for the driver.
    #[must_use]
    pub fn features(mut self, features: DriverFeatures) -> Self {
        self.features = Some(features);
        self
    }

    /// The driver's first `IoCreateDriverProxyExtension` fails with `status`.
    #[must_use]
    pub fn fail_extension_creation(mut self, status: crate::ddi::NTSTATUS) -> Self {
        self.fail_extension_creation = Some(status);
        self
    }

    /// The drain timeout of the driver's swaps.
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    fn configure(&self, control: DriverControl) {
        if let Some(features) = self.features {
            control.set_features(features);
        }
        if let Some(status) = self.fail_extension_creation {
            control.fail_next_create(status);
        }
        if let Some(timeout) = self.drain_timeout {
            control.set_drain_timeout(timeout);
        }
    }
}

/// What one image hot swap did and cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSwap {
    /// The image that served before.
    pub from: String,
    /// The image serving now.
    pub to: String,
    /// Wall time of the incoming `DriverEntry` (mapping excluded): the whole swap as the
    /// loader sees it.
    pub entry: Duration,
    /// How long the kernel waited for calls in the outgoing image to drain.
    pub drain: Duration,
    /// How long new calls were held (drain, `ProxyStalled`, repoint).
    pub stall: Duration,
}

/// A driver running from a mapped `.sys` image, swappable to another image of itself.
///
/// No `Drop` of its own: dropped without [`unload`](Self::unload), the [`Driver`] stays loaded
/// (its own drop leaves it so) and the serving image stays mapped (`ManuallyDrop`).
pub struct ImageDriver {
    driver: Driver,
    /// The image serving now; the lock also serialises swaps. Unmapped only by a swap away
    /// from it or a clean unload.
    serving: Mutex<ManuallyDrop<LoadedImage>>,
    /// The images this driver was swapped away from, in order (all retired).
    retired: Mutex<Vec<String>>,
}

impl AsRef<Driver> for ImageDriver {
    fn as_ref(&self) -> &Driver {
        &self.driver
    }
}

impl fmt::Debug for ImageDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageDriver")
            .field("driver", &self.driver.name())
            .field("serving", &self.serving_image())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds an import to the model's Microsoft x64 entry point of that name.
fn bind(import: &ImportRef<'_>) -> Option<usize> {
    wdm::win64_routine(import.dll, import.name)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// Reads and maps the image at `path`, binding its imports.
fn map(path: &Path) -> Result<LoadedImage, ImageDriverError> {
    let bytes = std::fs::read(path).map_err(|source| ImageDriverError::Read {
        path: path.to_owned(),
        source,
    })?;
    let image = file_name(path);
    LoadedImage::load(&bytes, &image, bind)
        .map_err(|source| ImageDriverError::Load { image, source })
}

impl ImageDriver {
    /// Maps the image at `path` and starts it as the driver `service` (registry path
    /// `\Registry\Machine\System\CurrentControlSet\Services\<service>`): `DriverEntry` runs on
    /// this thread.
    ///
    /// # Errors
    /// [`ImageDriverError::Read`], [`ImageDriverError::Load`], or
    /// [`ImageDriverError::Entry`] (the image is unmapped again).
    pub fn load(path: &Path, service: &str) -> Result<Self, ImageDriverError> {
        Self::load_with(path, &LoadOptions::new(service))
    }

    /// [`ImageDriver::load`] with [`LoadOptions`]: the registry path, and the DriverProxy
    /// model's features and faults for the driver, applied before its `DriverEntry` runs.
    ///
    /// # Errors
    /// As [`ImageDriver::load`].
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Self, ImageDriverError> {
        let image = map(path)?;
        let service = options.service.as_str();
        let registry_path = options.registry_path.clone().unwrap_or_else(|| {
            format!("\\Registry\\Machine\\System\\CurrentControlSet\\Services\\{service}")
        });
        let size = u32::try_from(image.size()).unwrap_or(u32::MAX);
        // SAFETY: the entry point of a mapped driver image whose imports are bound to the
        // model's Microsoft x64 entry points; the image stays mapped while the driver runs.
        let started = unsafe {
            Driver::start_image_with(
                service,
                &registry_path,
                image.entry_point(),
                image.base(),
                size,
                &mut |driver| options.configure(driver.control()),
            )
        };
        match started {
            Ok(driver) => Ok(Self {
                driver,
                serving: Mutex::new(ManuallyDrop::new(image)),
                retired: Mutex::new(Vec::new()),
            }),
            Err(status) => {
                // As Windows unloads the image of a driver whose entry failed. A thread the
                // failed entry left running would then run into the retired image and abort
                // the process loudly, naming it: the driver's bug, not hidden.
                let name = image.name().to_owned();
                image.unmap();
                Err(ImageDriverError::Entry {
                    image: name,
                    status,
                })
            }
        }
    }

    /// Hot-swaps the driver to the image at `path` (module docs): maps it, runs its
    /// `DriverEntry` in swap mode on this thread, and on success retires the outgoing image.
    ///
    /// # Errors
    /// [`ImageDriverError::Read`] and [`ImageDriverError::Load`] (nothing changed);
    /// [`ImageDriverError::SwapRefused`] (rolled back: the outgoing image keeps serving);
    /// [`ImageDriverError::IncompleteSwap`] (the swap happened for some endpoints only: both
    /// images stay mapped, the outgoing one stays the "serving" image of this value, and later
    /// swaps or the unload go through it).
    pub fn swap_to(&self, path: &Path) -> Result<ImageSwap, ImageDriverError> {
        let incoming = map(path)?;
        let mut serving = lock(&self.serving);
        let extension = self.extension();
        let swaps_before = extension.as_ref().map(ExtensionControl::swaps_completed);
        let began = Instant::now();
        // SAFETY: as in `load`; the driver object is this driver's, as swap mode requires.
        let status = unsafe { self.driver.call_entry_again(incoming.entry_point()) };
        let entry = began.elapsed();
        if !status.is_success() {
            let refused = incoming.name().to_owned();
            incoming.unmap();
            return Err(ImageDriverError::SwapRefused {
                serving: serving.name().to_owned(),
                incoming: refused,
                status,
            });
        }
        let left_behind: Vec<EndpointKey> = extension
            .as_ref()
            .map(ExtensionControl::implementations)
            .unwrap_or_default()
            .into_iter()
            .filter(|&(_, implementation)| serving.contains(implementation))
            .map(|(key, _)| key)
            .collect();
        if !left_behind.is_empty() {
            let outgoing = serving.name().to_owned();
            let incoming_name = incoming.name().to_owned();
            // Both stay mapped for the rest of the process: code of each is reachable.
            std::mem::forget(incoming);
            return Err(ImageDriverError::IncompleteSwap {
                outgoing,
                incoming: incoming_name,
                endpoints: left_behind,
            });
        }
        let report = extension
            .filter(|e| Some(e.swaps_completed()) != swaps_before)
            .and_then(|e| e.last_swap());
        let outgoing = std::mem::replace(&mut *serving, ManuallyDrop::new(incoming));
        let from = outgoing.name().to_owned();
        ManuallyDrop::into_inner(outgoing).unmap();
        lock(&self.retired).push(from.clone());
        Ok(ImageSwap {
            from,
            to: serving.name().to_owned(),
            entry,
            drain: report.as_ref().map_or(Duration::ZERO, |r| r.drain),
            stall: report.as_ref().map_or(Duration::ZERO, |r| r.stall),
        })
    }

    /// The file name of the image serving now.
    #[must_use]
    pub fn serving_image(&self) -> String {
        lock(&self.serving).name().to_owned()
    }

    /// The entry point (`DriverEntry`) of the image serving now.
    #[must_use]
    pub fn serving_entry_point(&self) -> usize {
        lock(&self.serving).entry_point()
    }

    /// Whether `address` lies in the image serving now.
    #[must_use]
    pub fn serving_contains(&self, address: usize) -> bool {
        lock(&self.serving).contains(address)
    }

    /// The images swapped away from, oldest first (all retired: a call into one aborts).
    #[must_use]
    pub fn retired_images(&self) -> Vec<String> {
        lock(&self.retired).clone()
    }

    /// The model's driver (its driver object, devices, requests).
    #[must_use]
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// The control of the driver's DriverProxy extension, if it created one.
    #[must_use]
    pub fn extension(&self) -> Option<ExtensionControl> {
        self.driver.control().extension()
    }

    /// Opens `path` on the driver's devices (see [`Driver::open`]).
    ///
    /// # Errors
    /// As [`Driver::open`].
    pub fn open(&self, path: &str) -> Result<FileHandle<'_>, NtStatus> {
        self.driver.open(path)
    }

    /// Opens `path` with a connection that owns a reference to the driver, for use on any
    /// thread without a borrow (a client backend).
    ///
    /// # Errors
    /// As [`Driver::open`].
    pub fn connect(self: &Arc<Self>, path: &str) -> Result<Connection, NtStatus> {
        let owner: Arc<dyn AsRef<Driver> + Send + Sync> = Arc::clone(self) as _;
        Ok(Connection {
            handle: Driver::open_shared(owner, path)?,
            driver: Arc::clone(self),
        })
    }

    /// Unloads the driver: `DriverUnload` of the serving image (through its wrapper), the
    /// leak check, then the image is unmapped.
    ///
    /// # Errors
    /// [`ImageDriverError::NoUnloadRoutine`] (still loaded: dropped, it stays loaded) or
    /// [`ImageDriverError::Unload`] (the image stays mapped).
    pub fn unload(self) -> Result<(), ImageDriverError> {
        let Self {
            driver, serving, ..
        } = self;
        let image =
            ManuallyDrop::into_inner(serving.into_inner().unwrap_or_else(PoisonError::into_inner));
        let name = image.name().to_owned();
        match driver.unload() {
            Ok(()) => {
                image.unmap();
                Ok(())
            }
            Err(UnloadError::Leaked(leaks)) => {
                std::mem::forget(image);
                Err(ImageDriverError::Unload {
                    image: name,
                    leaks: Box::new(leaks),
                })
            }
            Err(UnloadError::NoUnloadRoutine(driver)) => {
                // Still loaded: a dropped `Driver` stays loaded, and its image stays mapped.
                drop(driver);
                std::mem::forget(image);
                Err(ImageDriverError::NoUnloadRoutine { image: name })
            }
        }
    }
}

/// An open handle on a device of an [`ImageDriver`] that keeps the driver alive (the handle
/// holds a share of it): `Send`, no borrow. Dropping it closes the handle.
pub struct Connection {
    handle: FileHandle<'static>,
    driver: Arc<ImageDriver>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Sends `IRP_MJ_DEVICE_CONTROL` (see [`Driver::device_control`]): the completion status
    /// and `Information`.
    #[must_use]
    pub fn device_control(&self, code: u32, input: &[u8], output: &mut [u8]) -> (NtStatus, usize) {
        self.driver
            .driver
            .device_control(&self.handle, code, input, output)
    }

    /// Sends `IRP_MJ_READ` (see [`Driver::read`]): the completion status and `Information`.
    #[must_use]
    pub fn read(&self, buffer: &mut [u8], offset: u64) -> (NtStatus, usize) {
        self.driver.driver.read(&self.handle, buffer, offset)
    }

    /// Sends `IRP_MJ_WRITE` (see [`Driver::write`]): the completion status and `Information`.
    #[must_use]
    pub fn write(&self, data: &[u8], offset: u64) -> (NtStatus, usize) {
        self.driver.driver.write(&self.handle, data, offset)
    }

    /// Closes the connection: `IRP_MJ_CLEANUP`, `IRP_MJ_CLOSE` and their statuses (dropping
    /// it closes it too).
    #[allow(clippy::must_use_candidate)] // closing is done for its effect
    pub fn close(self) -> Closed {
        self.handle.close()
    }

    /// The driver this connection is open on.
    #[must_use]
    pub fn driver(&self) -> &Arc<ImageDriver> {
        &self.driver
    }
}
