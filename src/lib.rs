//! driver-proxy (crate docs below are completed with the host kernel).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]

mod driver;
mod endpoint;
mod error;
mod event;
mod extension;
mod features;
mod hotswap;
mod phase;
mod resolve;
pub mod status;
mod sync;
pub mod sys;
mod table;
mod worker;
mod wrapped;

pub use driver::DriverObject;
pub use endpoint::{Endpoint, MAX_ENDPOINT_ARITY, assert_endpoint};
pub use error::{
    CreateError, EventError, LookupError, NullDriverObject, RegisterError, Unavailable, WorkerError, WrapError,
};
pub use event::{Event, EventKind};
pub use extension::Extension;
pub use features::{Features, probe};
pub use hotswap::HotSwap;
pub use phase::{Phase, SwapCallback};
pub use status::{NtStatus, Severity};
pub use table::{EndpointEntry, EndpointId, EndpointTable};
pub use worker::{
    MAX_WORKER_EVENTS, Timeout, WaitMode, WaitReason, WaitType, WorkerRoutine, WorkerThread, WorkerThreadBuilder,
};
pub use wrapped::Wrapped;
