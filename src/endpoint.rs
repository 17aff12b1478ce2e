//! [`Endpoint`]: the function-pointer types that can be hot-swapped.
//!
//! An endpoint is any driver function that code outside the driver image can reach: dispatch
//! routines, DPC and worker routines, callbacks in interface tables. DriverProxy forwards a
//! call through a wrapper without knowing the signature, which works because on x64 and ARM64
//! the Microsoft convention gives every argument one register or one 8-byte stack slot
//! (anything larger is passed by reference), and V1 registration states how many there are.
//! [`Endpoint`] is implemented for `extern "system"` and `unsafe extern "system"` function
//! pointers of 0 to 12 arguments; its [`Endpoint::ARITY`] is V1's `ParameterCount`, derived from
//! the type and never typed by hand.
//!
//! Every argument and the return value must fit one 8-byte slot. That is checked at compile
//! time when an endpoint type is used with this crate (a post-monomorphisation error):
//!
//! ```compile_fail,E0080
//! # use driver_proxy::Endpoint;
//! #[repr(C)]
//! #[derive(Clone, Copy)]
//! struct Wide { low: u64, high: u64 } // 16 bytes: Win64 passes this by hidden reference
//! extern "system" fn takes_wide(_: Wide) {}
//! let f: extern "system" fn(Wide) = takes_wide;
//! driver_proxy::assert_endpoint(f); // error[E0080]: an argument is wider than 8 bytes
//! ```
//! ```compile_fail,E0080
//! # use driver_proxy::Endpoint;
//! extern "system" fn returns_wide() -> [u64; 2] { [0, 0] }
//! let f: extern "system" fn() -> [u64; 2] = returns_wide;
//! driver_proxy::assert_endpoint(f); // the return value is wider than 8 bytes
//! ```

use core::any::TypeId;
use core::mem::size_of;

use crate::sys;

mod sealed {
    /// Only the function-pointer types listed in this module implement [`super::Endpoint`].
    pub trait Sealed {}
}

/// A function-pointer type that DriverProxy can wrap: `extern "system" fn(A1, …, An) -> R`
/// or `unsafe extern "system" fn(…) -> R` with `n <= 12`, every argument and `R` at most
/// 8 bytes.
///
/// This trait is sealed: it cannot be implemented outside this crate.
///
/// A function item has a type of its own, not a function-pointer type: where the endpoint
/// type is not known from elsewhere (an [`crate::EndpointId`]), cast the item to its pointer
/// type (`device_control as Dispatch`). The compiler's error says so:
///
/// ```compile_fail,E0277
/// extern "system" fn double(x: u64) -> u64 { x * 2 }
/// // error[E0277]: `{fn item}` is not a DriverProxy endpoint type
/// //   note: a function item has its own type: cast it to its fn-pointer type, …
/// let _ = driver_proxy::assert_endpoint(double);
/// ```
/// ```
/// extern "system" fn double(x: u64) -> u64 { x * 2 }
/// type Double = extern "system" fn(u64) -> u64;
/// let _ = driver_proxy::assert_endpoint(double as Double);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a DriverProxy endpoint type",
    label = "expected an `extern \"system\" fn` pointer type here",
    note = "a function item has its own type: cast it to its fn-pointer type, e.g. `my_routine as MyRoutineType`",
    note = "endpoints are `extern \"system\" fn` or `unsafe extern \"system\" fn` pointers of 0 to 12 arguments"
)]
pub trait Endpoint: sealed::Sealed + Copy + Send + Sync + 'static {
    /// The number of parameters: V1's `ParameterCount`.
    const ARITY: u32;

    /// Evaluating this constant fails to compile when an argument or the return value does
    /// not fit one 8-byte slot. The crate evaluates it wherever an endpoint type is used.
    const FITS_SLOTS: ();

    /// The endpoint as the type-erased `DRIVER_PROXY_ENDPOINT_FUNCTION` pointer.
    ///
    /// IRQL: any.
    fn erase(self) -> sys::DRIVER_PROXY_ENDPOINT_FUNCTION;

    /// The typed pointer back from a type-erased one.
    ///
    /// IRQL: any.
    ///
    /// # Safety
    /// `erased` must be the address of code callable with this exact signature (the endpoint
    /// itself, or a DriverProxy wrapper of an endpoint of this type).
    unsafe fn unerase(erased: sys::DRIVER_PROXY_ENDPOINT_FUNCTION) -> Self;

    /// The code address.
    ///
    /// IRQL: any.
    fn address(self) -> usize {
        self.erase() as usize
    }

    /// An identifier of the exact function-pointer type, used to check V1 lookups by id.
    ///
    /// IRQL: any.
    #[must_use]
    fn type_id() -> TypeId {
        TypeId::of::<Self>()
    }

    /// A fingerprint of the type's name (64-bit FNV-1a of [`core::any::type_name`]), which
    /// another compilation of the same source computes alike. The endpoint record compares
    /// it when a new image re-registers an id registered by an earlier one, to catch a
    /// signature changed between versions by mistake. It is a check, not a proof: names are
    /// not guaranteed unique or stable across compiler versions (build every version of a
    /// driver with the same toolchain).
    ///
    /// IRQL: any.
    #[must_use]
    fn signature() -> u64 {
        fnv1a(core::any::type_name::<Self>().as_bytes())
    }
}

/// 64-bit FNV-1a.
pub(crate) const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
        i += 1;
    }
    hash
}

/// Checks at compile time that `F` is an endpoint type whose arguments and return value fit
/// the forwarding slots, and returns it unchanged (useful in `const` contexts and tests).
///
/// IRQL: any.
pub const fn assert_endpoint<F: Endpoint>(endpoint: F) -> F {
    let () = F::FITS_SLOTS;
    endpoint
}

/// Fails the build (in a `const` item) when `T` does not fit one 8-byte slot.
const fn fits_slot<T>() {
    assert!(
        size_of::<T>() <= 8,
        "a DriverProxy endpoint argument or return value is wider than 8 bytes (the Microsoft x64 convention passes it by hidden reference): pass a pointer instead"
    );
}

macro_rules! impl_endpoint {
    ($arity:literal; $($arg:ident),*) => {
        impl_endpoint!(@one $arity; extern "system" fn($($arg),*) -> R; $($arg),*);
        impl_endpoint!(@one $arity; unsafe extern "system" fn($($arg),*) -> R; $($arg),*);
    };
    (@one $arity:literal; $fn_ty:ty; $($arg:ident),*) => {
        impl<R: 'static, $($arg: 'static),*> sealed::Sealed for $fn_ty {}

        impl<R: 'static, $($arg: 'static),*> Endpoint for $fn_ty {
            const ARITY: u32 = $arity;
            const FITS_SLOTS: () = {
                $( fits_slot::<$arg>(); )*
                fits_slot::<R>();
            };

            #[inline]
            fn erase(self) -> sys::DRIVER_PROXY_ENDPOINT_FUNCTION {
                // SAFETY: both are non-null function pointers of the same size; the erased type
                // is only ever called after being turned back into this type (`unerase`).
                unsafe { core::mem::transmute::<Self, sys::DRIVER_PROXY_ENDPOINT_FUNCTION>(self) }
            }

            #[inline]
            unsafe fn unerase(erased: sys::DRIVER_PROXY_ENDPOINT_FUNCTION) -> Self {
                // SAFETY: the caller guarantees `erased` is callable with this signature.
                unsafe { core::mem::transmute::<sys::DRIVER_PROXY_ENDPOINT_FUNCTION, Self>(erased) }
            }
        }
    };
}

impl_endpoint!(0;);
impl_endpoint!(1; A1);
impl_endpoint!(2; A1, A2);
impl_endpoint!(3; A1, A2, A3);
impl_endpoint!(4; A1, A2, A3, A4);
impl_endpoint!(5; A1, A2, A3, A4, A5);
impl_endpoint!(6; A1, A2, A3, A4, A5, A6);
impl_endpoint!(7; A1, A2, A3, A4, A5, A6, A7);
impl_endpoint!(8; A1, A2, A3, A4, A5, A6, A7, A8);
impl_endpoint!(9; A1, A2, A3, A4, A5, A6, A7, A8, A9);
impl_endpoint!(10; A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
impl_endpoint!(11; A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
impl_endpoint!(12; A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);

/// The most parameters an [`Endpoint`] may have.
pub const MAX_ENDPOINT_ARITY: u32 = 12;

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::c_void;

    type S0 = extern "system" fn() -> u32;
    type S1 = extern "system" fn(u64) -> u64;
    type U2 = unsafe extern "system" fn(*mut c_void, i32) -> u8;
    type S4 = extern "system" fn(f64, u32, *const u8, f32);
    type U12 = unsafe extern "system" fn(
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    ) -> i64;

    #[test]
    fn arity_is_the_number_of_parameters_of_every_supported_signature() {
        assert_eq!(S0::ARITY, 0);
        assert_eq!(S1::ARITY, 1);
        assert_eq!(U2::ARITY, 2);
        assert_eq!(S4::ARITY, 4);
        assert_eq!(U12::ARITY, 12);
        // Every arity 0..=12, both safe and unsafe pointers, with mixed argument types.
        let got = [
            <extern "system" fn()>::ARITY,
            <extern "system" fn(u8)>::ARITY,
            <extern "system" fn(u8, u16)>::ARITY,
            <extern "system" fn(u8, u16, u32)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64, f32)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64, f32, f64)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64, f32, f64, usize)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64, f32, f64, usize, i8)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64, f32, f64, usize, i8, i16)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64, f32, f64, usize, i8, i16, i32)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64, f32, f64, usize, i8, i16, i32, i64)>::ARITY,
            <extern "system" fn(u8, u16, u32, u64, f32, f64, usize, i8, i16, i32, i64, isize)>::ARITY,
        ];
        assert_eq!(
            got,
            core::array::from_fn::<u32, 13, _>(|i| u32::try_from(i).unwrap())
        );
        assert_eq!(<unsafe extern "system" fn(u8, u8, u8)>::ARITY, 3);
        assert_eq!(
            <unsafe extern "system" fn(u8, u8, u8, u8, u8, u8, u8, u8, u8, u8, u8)>::ARITY,
            11
        );
        assert_eq!(MAX_ENDPOINT_ARITY, U12::ARITY);
    }

    extern "system" fn double(x: u64) -> u64 {
        x * 2
    }

    #[test]
    fn erasing_and_restoring_keeps_the_address_and_the_behaviour() {
        let f: S1 = assert_endpoint(double);
        let erased = f.erase();
        assert_eq!(erased as usize, f.address());
        // SAFETY: `erased` came from an endpoint of type S1.
        let back = unsafe { S1::unerase(erased) };
        assert_eq!(back(21), 42);
        assert_eq!(back.address(), f.address());
    }

    #[test]
    fn type_ids_distinguish_signatures_of_equal_arity() {
        assert_ne!(
            <extern "system" fn(u64) -> u64>::type_id(),
            <extern "system" fn(u32) -> u64>::type_id()
        );
        assert_ne!(
            <extern "system" fn(u64)>::type_id(),
            <unsafe extern "system" fn(u64)>::type_id()
        );
        assert_eq!(S1::type_id(), <extern "system" fn(u64) -> u64>::type_id());
    }

    #[test]
    fn signatures_fingerprint_the_type_name() {
        assert_eq!(
            S1::signature(),
            <extern "system" fn(u64) -> u64>::signature()
        );
        assert_ne!(
            S1::signature(),
            <extern "system" fn(u32) -> u64>::signature()
        );
        assert_ne!(
            <extern "system" fn(u64)>::signature(),
            <unsafe extern "system" fn(u64)>::signature()
        );
        // FNV-1a test vectors.
        assert_eq!(fnv1a(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xAF63_DC4C_8601_EC8C);
    }
}
