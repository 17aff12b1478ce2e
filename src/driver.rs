//! [`DriverObject`]: a checked, non-null reference to the driver's `DRIVER_OBJECT`.

use core::ptr::NonNull;

use crate::NullDriverObject;
use crate::sys;

/// The `DRIVER_OBJECT` of the driver, as passed to `DriverEntry`.
///
/// # Invariants
/// The pointer is non-null and designates a driver object that stays valid, with every
/// driver-object extension allocated for it (the endpoint record this crate keeps there), for
/// as long as any value derived from it is used. On
/// Windows this holds because no code of the driver runs after it unloads; a host that deletes
/// driver objects (tests) must not use handles of a deleted one.
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
    /// `raw`, if non-null, must be the driver's own `DRIVER_OBJECT`, and it must stay valid
    /// (with its driver-object extensions) for as long as the `DriverObject` or anything made
    /// from it (a [`crate::HotSwap`], wrappers, worker threads and their contexts) is used: on
    /// Windows, until the driver unloads.
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
