//! Host driver objects: storage with the size and alignment of a `DRIVER_OBJECT` (0x150
//! bytes on x64), zeroed, at a stable address, for tests to pass to the library.

use crate::kernel::control::DriverControl;

/// A zeroed `DRIVER_OBJECT` at a stable heap address, owned by the test. Dropping it deletes
/// the driver object in the model kernel: its DriverProxy extension is released and its
/// configuration forgotten ([`DriverControl::delete`]).
pub struct HostDriverObject {
    storage: Box<[u64; 0x150 / 8]>,
}

impl Default for HostDriverObject {
    fn default() -> Self {
        Self::new()
    }
}

impl HostDriverObject {
    /// A fresh, zeroed driver object.
    #[must_use]
    pub fn new() -> Self {
        Self {
            storage: Box::new([0; 0x150 / 8]),
        }
    }

    /// The `PDRIVER_OBJECT` to hand to the library or to the host's routines, as a pointer to
    /// the driver-object type of the caller's reading (inferred: `driver_proxy::sys::DRIVER_OBJECT`
    /// for the library, [`crate::ddi::DRIVER_OBJECT`] for the host's routines).
    #[must_use]
    pub fn as_raw<T>(&mut self) -> *mut T {
        self.storage.as_mut_ptr().cast()
    }

    /// The model kernel's control of this driver object (features, faults, its extension).
    #[must_use]
    pub fn control(&mut self) -> DriverControl {
        DriverControl::new(self.as_raw::<crate::ddi::DRIVER_OBJECT>())
    }
}

impl Drop for HostDriverObject {
    fn drop(&mut self) {
        self.control().delete();
    }
}
