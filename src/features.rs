//! The feature probe: `IoGetDriverProxyFeatures`.

use crate::resolve::exports;
use crate::{DriverObject, Unavailable, sys};

/// What `IoGetDriverProxyFeatures` reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    raw: sys::DRIVER_PROXY_FEATURE_FLAGS,
}

impl Features {
    /// Bit 0, `Enabled`: the DriverProxy routines can succeed for the driver asked about.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn enabled(self) -> bool {
        self.raw.Enabled()
    }

    /// The whole `DRIVER_PROXY_FEATURE_FLAGS` value (bits 1–31 are reserved).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn raw(self) -> u32 {
        self.raw.AsUlong
    }
}

/// Asks whether DriverProxy can be used by `driver`, or (with `None`) by drivers in general on
/// this system.
///
/// IRQL: `PASSIVE_LEVEL` on the first call into this crate (run-time resolution); any IRQL
/// afterwards (`IoGetDriverProxyFeatures` itself runs at any IRQL).
///
/// # Errors
/// [`Unavailable::ExportMissing`] when the kernel does not export `IoGetDriverProxyFeatures`.
pub fn probe(driver: Option<DriverObject>) -> Result<Features, Unavailable> {
    let get_features = exports()
        .proxy
        .get_features
        .ok_or(Unavailable::ExportMissing(
            sys::names::IO_GET_DRIVER_PROXY_FEATURES.ascii,
        ))?;
    Ok(query(get_features, driver))
}

/// Calls the resolved `IoGetDriverProxyFeatures` for `driver` (or drivers in general).
pub(crate) fn query(
    get_features: sys::PFN_IoGetDriverProxyFeatures,
    driver: Option<DriverObject>,
) -> Features {
    // Zero-initialised before the call, as the DDI asks.
    let mut flags = sys::DRIVER_PROXY_FEATURE_FLAGS::default();
    let raw_driver = driver.map_or(core::ptr::null_mut(), DriverObject::as_raw);
    // SAFETY: the routine was resolved under this name with this signature; `raw_driver` is
    // null (documented as "drivers in general") or a live driver object (type invariant);
    // `flags` is a valid local.
    unsafe { get_features(raw_driver, &raw mut flags) };
    Features { raw: flags }
}
