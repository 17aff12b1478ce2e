//! driver-proxy (crate docs are written with the safe API).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]

pub mod status;
pub mod sys;

pub use status::{NtStatus, Severity};
