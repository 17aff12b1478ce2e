//! [`Wrapped`]: what a driver hands out instead of an endpoint.

use core::fmt;
use core::ops::Deref;

use crate::Endpoint;

/// A DriverProxy wrapper of an endpoint of type `F`, with `F`'s own type.
///
/// This is what the driver stores in every place the rest of the system calls it through:
/// the `MajorFunction` table, DPC and work-item routines, interface tables, worker threads.
/// Calling it costs exactly one indirect call, the same as calling the endpoint through a
/// function pointer: `Wrapped<F>` is `#[repr(transparent)]` over `F`, and the wrapper code the
/// kernel generated does the rest (counts the call in flight on the current version of the
/// driver and forwards it). `cargo xtask test` checks this in the disassembly of a release
/// build for `x86_64-pc-windows-msvc`.
///
/// A `Wrapped` is obtained from [`crate::HotSwap::wrapper`] (V1, by id) or
/// [`crate::HotSwap::wrap`] (V2, by endpoint), which check the driver's endpoint record: every
/// implementation a `Wrapped<F>` can ever forward to has the signature `F` (crate docs,
/// "Soundness"). Where hot-swap is unavailable, those return the endpoint itself as a
/// `Wrapped` (the *fallback*), so the driver has one code path. There is no other way to make
/// one.
///
/// ```
/// # use driver_proxy::{Wrapped, Endpoint};
/// assert_eq!(core::mem::size_of::<Wrapped<extern "system" fn(u64) -> u64>>(), 8);
/// ```
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wrapped<F: Endpoint> {
    function: F,
}

impl<F: Endpoint> Wrapped<F> {
    /// A wrapper handed back by the kernel for an endpoint of type `F`.
    ///
    /// # Safety
    /// `function` must be a DriverProxy wrapper of an endpoint of type `F`, or (fallback) the
    /// endpoint itself.
    #[inline]
    pub(crate) const unsafe fn new_unchecked(function: F) -> Self {
        Self { function }
    }

    /// The endpoint itself, where hot-swap is unavailable: calls go straight to the code and
    /// cannot be swapped.
    #[inline]
    pub(crate) fn fallback(endpoint: F) -> Self {
        let () = F::FITS_SLOTS;
        Self { function: endpoint }
    }

    /// The callable function pointer: call it, or store it where a C function pointer of this
    /// type is expected.
    ///
    /// IRQL: any.
    #[inline]
    #[must_use]
    pub const fn get(self) -> F {
        self.function
    }

    /// The wrapper's code address.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn address(self) -> usize {
        self.function.address()
    }
}

impl<F: Endpoint> Deref for Wrapped<F> {
    type Target = F;

    /// Lets `(*wrapped)(args)` call the wrapper.
    #[inline]
    fn deref(&self) -> &F {
        &self.function
    }
}

impl<F: Endpoint> fmt::Debug for Wrapped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wrapped({:#x})", self.address())
    }
}
