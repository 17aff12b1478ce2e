//! Two functions that `cargo xtask test` disassembles in a release build for
//! `x86_64-pc-windows-msvc`: a call through `Wrapped<F>` must compile to exactly the same
//! instructions as a call through a plain `F`, with one indirect call.
#![no_std]

use driver_proxy::Wrapped;

/// The endpoint signature of the probe.
pub type Handler = extern "system" fn(u64) -> u64;

/// Calls through a wrapper (the result is used, so the call is not a tail jump).
#[unsafe(no_mangle)]
pub extern "system" fn probe_call_wrapped(wrapper: Wrapped<Handler>, argument: u64) -> u64 {
    wrapper.get()(argument).wrapping_add(1)
}

/// The same through a plain function pointer: the baseline.
#[unsafe(no_mangle)]
pub extern "system" fn probe_call_plain(function: Handler, argument: u64) -> u64 {
    function(argument).wrapping_add(1)
}
