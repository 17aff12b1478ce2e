//! On a kernel without the DriverProxy exports (every Windows before 24H2; here the host
//! kernel with its seven DriverProxy exports hidden), a driver built on driver-proxy still
//! loads and runs: wrappers are the endpoints themselves, registration is a no-op, and the API
//! says why.
//!
//! The library resolves its routines once per process, on its first call, so every test
//! starts with [`kernel_without_driver_proxy`], which hides the exports before anything else
//! in this binary can call the library.

use std::sync::Once;

use driver_proxy::{
    CreateError, DriverObject, EndpointEntry, EndpointId, EndpointTable, Extension, HotSwap,
    LookupError, Phase, Unavailable, probe, sys,
};
use driver_proxy_host::HostDriverObject;

type Handler = extern "system" fn(u64, u64) -> u64;
extern "system" fn add(a: u64, b: u64) -> u64 {
    a + b
}
const ADD: EndpointId<Handler> = EndpointId::new(7);

/// Hides the DriverProxy exports, once per process, before the library's first call.
fn kernel_without_driver_proxy() {
    static HIDE: Once = Once::new();
    HIDE.call_once(|| {
        for name in [
            sys::names::IO_GET_DRIVER_PROXY_FEATURES,
            sys::names::IO_CREATE_DRIVER_PROXY_EXTENSION,
            sys::names::IO_GET_DRIVER_PROXY_EXTENSION_FROM_DRIVER_OBJECT,
            sys::names::IO_REGISTER_DRIVER_PROXY_ENDPOINTS,
            sys::names::IO_GET_DRIVER_PROXY_ENDPOINT_WRAPPER,
            sys::names::IOF_GET_DRIVER_PROXY_WRAPPER_FROM_ENDPOINT,
            sys::names::IO_DRIVER_PROXY_CREATE_HOT_SWAPPABLE_WORKER_THREAD,
        ] {
            driver_proxy_host::hide_export(name.ascii);
        }
    });
}

fn driver(storage: &mut HostDriverObject) -> DriverObject {
    // SAFETY: the host driver object outlives every use in the test.
    unsafe { DriverObject::from_raw(storage.as_raw()) }.unwrap()
}

#[test]
fn a_missing_features_export_means_hot_swap_unavailable_not_a_failed_load() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).expect("fallback is not an error");
    assert_eq!(
        hotswap.unavailable(),
        Some(Unavailable::ExportMissing("IoGetDriverProxyFeatures"))
    );
    assert!(hotswap.extension().is_none());
    assert_eq!(
        probe(None),
        Err(Unavailable::ExportMissing("IoGetDriverProxyFeatures"))
    );
}

#[test]
fn fallback_wrap_returns_the_endpoint_itself() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let wrapped = hotswap.wrap(add as Handler).unwrap();
    assert_eq!(wrapped.address(), add as Handler as usize);
    assert_eq!(wrapped.get()(40, 2), 42);
}

#[test]
fn fallback_registration_succeeds_without_calling_back_and_lookup_by_id_gives_the_endpoint() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let table = EndpointTable::new([EndpointEntry::new(ADD, add as Handler)]).unwrap();
    let mut phases = Vec::new();
    let mut callback = |phase: Phase| {
        phases.push(phase);
        Ok(())
    };
    hotswap.register(&table, Some(&mut callback)).unwrap();
    assert!(phases.is_empty(), "nothing is swapped in fallback");
    let wrapped = hotswap.wrapper(&table, ADD).unwrap();
    assert_eq!(wrapped.address(), add as Handler as usize);
    assert_eq!(wrapped.get()(1, 2), 3);
    assert_eq!(
        hotswap.wrapper(&table, EndpointId::<Handler>::new(8)),
        Err(LookupError::UnknownId(8))
    );
}

#[test]
fn creating_an_extension_directly_names_the_missing_export() {
    kernel_without_driver_proxy();
    let mut storage = HostDriverObject::new();
    assert_eq!(
        Extension::create(driver(&mut storage)).unwrap_err(),
        CreateError::ExportMissing("IoCreateDriverProxyExtension")
    );
}

#[test]
fn a_null_driver_object_is_a_documented_error() {
    kernel_without_driver_proxy();
    // SAFETY: null is the bad input under test; it is rejected, never dereferenced.
    let error = unsafe { DriverObject::from_raw(std::ptr::null_mut()) }.unwrap_err();
    assert_eq!(error.status(), driver_proxy::NtStatus::INVALID_PARAMETER);
}
