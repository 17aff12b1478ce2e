//! [`DriverObject`]: a checked, non-null reference to the driver's `DRIVER_OBJECT`.

use core::ptr::NonNull;

use crate::NullDriverObject;
use crate::sys;

/// The `DRIVER_OBJECT` of the driver, as passed to `DriverEntry`.
///
/// # Invariants
/// The pointer is non-null and designates a driver object that stays valid until the driver
/// unloads. No Rust code of the driver runs after its image is unloaded, so every value
/// holding a `DriverObject` is gone by then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverObject {
    raw: NonNull<sys::DRIVER_OBJECT>,
}

// SAFETY: a DRIVER_OBJECT is a kernel object shared by every thread of the system; this type
// only passes its address to kernel routines documented as callable from any thread.
unsafe impl Send for DriverObject {}
// SAFETY: as above; `&DriverObject` gives no access to the object's contents.
unsafe impl Sync for DriverObject {}

impl DriverObject {
    /// Wraps the pointer `DriverEntry` received. A `wdk_sys::PDRIVER_OBJECT` converts with
    /// `.cast()`.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`NullDriverObject`] when `raw` is null.
    ///
    /// # Safety
    /// `raw`, if non-null, must be the driver's own `DRIVER_OBJECT`, valid until it unloads.
    pub unsafe fn from_raw(raw: sys::PDRIVER_OBJECT) -> Result<Self, NullDriverObject> {
        NonNull::new(raw)
            .map(|raw| Self { raw })
            .ok_or(NullDriverObject)
    }

    /// The raw pointer, for calls this crate does not wrap.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn as_raw(self) -> sys::PDRIVER_OBJECT {
        self.raw.as_ptr()
    }
}
