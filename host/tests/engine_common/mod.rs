//! Shared helpers of the `engine_*` tests (`mod engine_common;`): a wrapper as a typed
//! function pointer, code addresses. Child processes: `common`.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::missing_panics_doc,
    clippy::must_use_candidate
)]

use driver_proxy_host::engine::{Engine, WrapperId};

/// The wrapper `id` of `engine` as a function pointer of type `F`.
///
/// # Safety
///
/// `F` must be a function-pointer type matching the implementations the wrapper forwards to.
pub unsafe fn wrapper<F: Copy>(engine: &Engine, id: WrapperId) -> F {
    assert_eq!(core::mem::size_of::<F>(), core::mem::size_of::<usize>());
    let address = engine.wrapper_address(id);
    // SAFETY: F is a function pointer type (size checked); the caller vouches for the type.
    unsafe { core::mem::transmute_copy::<usize, F>(&address) }
}

/// Code address of a function item or pointer.
#[macro_export]
macro_rules! code {
    ($f:expr) => {
        $f as *const () as usize
    };
}
