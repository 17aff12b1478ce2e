//! Handing a wrapper to the framework: from the endpoint type `driver-proxy` wraps to the
//! callback type `wdk-sys` declares, checked at compile time.
//!
//! `driver-proxy` implements `Endpoint` for `extern "system"` function pointers; `wdk-sys`
//! (bindgen over the WDF headers) types every WDF callback as
//! `Option<unsafe extern "C" fn(…) -> …>`. On the targets a driver builds for (x86-64 and ARM64
//! Windows) the two are one calling convention (Rust distinguishes them only on 32-bit x86),
//! so a wrapper is handed over unchanged, retyped by a transmute. Two things keep that
//! transmute honest:
//!
//! * [`ToC`] is the only place it happens, and it is generic over the parameters: it maps
//!   `unsafe extern "system" fn(A1, …, An) -> R` to `unsafe extern "C" fn(A1, …, An) -> R`, the
//!   same parameter and return types, so it can change nothing but the calling-convention
//!   name.
//! * every callback type handed out is compared with `wdk-sys`'s own at compile time
//!   ([`same_type`], used in `crate::endpoints`): `Option<<EvtX as ToC>::C>` must *be*
//!   `PFN_WDF_X`. A `wdk-sys` whose callback type differs from the endpoint type in any
//!   parameter or in the return type stops the build there, instead of a transmute silently
//!   reinterpreting the wrapper.

use driver_proxy::{Endpoint, Wrapped};

#[cfg(not(all(windows, any(target_arch = "x86_64", target_arch = "aarch64"))))]
compile_error!("\"system\" and \"C\" are one convention only on x86-64 and ARM64 Windows");

/// An `unsafe extern "system"` function pointer type and the `unsafe extern "C"` function
/// pointer type with exactly its parameters and return type (module docs).
pub trait ToC: Copy {
    /// The same function pointer type with the `"C"` calling convention.
    type C: Copy;

    /// The same code address, retyped.
    fn to_c(self) -> Self::C;
}

/// [`ToC`] for the arities the driver's callbacks have.
macro_rules! to_c {
    ($($arg:ident),*) => {
        impl<R, $($arg),*> ToC for unsafe extern "system" fn($($arg),*) -> R {
            type C = unsafe extern "C" fn($($arg),*) -> R;

            #[inline]
            fn to_c(self) -> Self::C {
                // SAFETY: both types list the same parameters and return type (one generic
                // list for both), and on this target "system" is "C" (module docs and the
                // `compile_error!` above): the same code is called the same way.
                unsafe { core::mem::transmute::<Self, Self::C>(self) }
            }
        }
    };
}

to_c!(A1);
to_c!(A1, A2);
to_c!(A1, A2, A3, A4, A5);

/// Implemented for `T: Same<T>` only: `A: Same<B>` holds exactly when `A` and `B` are one
/// type.
pub trait Same<T> {}

impl<T> Same<T> for T {}

/// Compiles only when `A` and `B` are the same type: `const _: () = same_type::<A, B>();`.
pub const fn same_type<A, B>()
where
    A: Same<B>,
{
}

/// The wrapper as the framework's callback type (`PFN_WDF_…`, which [`same_type`] checks
/// where each callback type is declared).
#[must_use]
pub fn callback<F: Endpoint + ToC>(wrapper: Wrapped<F>) -> Option<F::C> {
    Some(wrapper.get().to_c())
}
