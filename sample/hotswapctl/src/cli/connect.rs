//! Where requests go: the backend `--backend` chose, opened once per connection.

use std::{sync::Arc, time::Duration};

use hotswap_sample_core::DriverVersion;

use super::{BackendChoice, Cli};
use crate::{
    backend::{Backend, BackendError},
    fake::{FakeDevice, Swapper},
    locate::{Located, locate},
};

/// Opens connections to the chosen backend.
pub(super) enum Connector {
    /// The installed driver, at the path found once ([`device_path`]).
    Device(Located),
    /// The fake, and its background swapper if any (kept alive, stopped on drop).
    Fake {
        device: Arc<FakeDevice>,
        _swapper: Option<Swapper>,
    },
    /// The host kernel with the sample's images.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    Host(Arc<crate::host::HostLab>),
}

/// The path of the installed driver's device (`--device`, else its interface, else its
/// symbolic link), said on the standard error where the device backend exists.
pub(super) fn device_path(cli: &Cli) -> Located {
    let located = locate(cli.device.as_deref());
    if cfg!(windows) {
        eprintln!("hotswapctl: {located}");
    }
    located
}

/// `--backend device` where there is no device backend.
#[cfg(not(windows))]
pub(super) fn no_device_backend(path: &str) -> String {
    format!(
        "cannot open {path}: the device backend needs Windows (try --backend fake, an in-memory simulation)"
    )
}

/// `--backend host` where there is no host kernel.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub(super) fn no_host_kernel() -> String {
    "the host kernel (--backend host) runs x64 driver images on x86-64 Linux only".to_owned()
}

/// Loads v1 of the sample into the host kernel.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(super) fn host_lab(cli: &Cli) -> Result<Arc<crate::host::HostLab>, String> {
    crate::host::HostLab::new(&cli.images, DriverVersion::V1)
        .map(Arc::new)
        .map_err(|error| {
            format!("{error} (build the images with `cargo xtask build-driver`, or pass --images)")
        })
}

impl Connector {
    pub(super) fn new(cli: &Cli) -> Result<Self, BackendError> {
        Ok(match cli.backend {
            BackendChoice::Device => Self::Device(device_path(cli)),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            BackendChoice::Host => Self::Host(host_lab(cli).map_err(BackendError::Unavailable)?),
            #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
            BackendChoice::Host => return Err(BackendError::Unavailable(no_host_kernel())),
            BackendChoice::Fake => {
                let version =
                    DriverVersion::from_raw(cli.fake_version).unwrap_or(DriverVersion::V1);
                let device = FakeDevice::new(version);
                let swapper = (cli.fake_swap_every_ms > 0)
                    .then(|| device.spawn_swapper(Duration::from_millis(cli.fake_swap_every_ms)));
                Self::Fake {
                    device,
                    _swapper: swapper,
                }
            }
        })
    }

    pub(super) fn connect(&self) -> Result<Box<dyn Backend>, BackendError> {
        match self {
            #[cfg(windows)]
            Self::Device(located) => Ok(Box::new(crate::backend::windows::DeviceBackend::open(
                &located.path,
            )?)),
            #[cfg(not(windows))]
            Self::Device(located) => {
                Err(BackendError::Unavailable(no_device_backend(&located.path)))
            }
            Self::Fake { device, .. } => Ok(Box::new(device.connect())),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            Self::Host(lab) => Ok(Box::new(lab.open()?)),
        }
    }
}
