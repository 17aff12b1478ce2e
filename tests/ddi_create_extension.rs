//! `IoCreateDriverProxyExtension` (DDI reference §4.13) and
//! `IoGetDriverProxyExtensionFromDriverObject` (§4.14): one extension per driver object, the
//! documented failures on demand, and a failed call changes nothing.

mod common;

use driver_proxy::{CreateError, Extension, HotSwap, NtStatus, Unavailable, sys};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{DriverFeatures, EndpointKey, ExtensionControl};

use common::driver;

/// A value no call writes: an untouched out-pointer keeps it.
const SENTINEL: sys::PDRIVER_PROXY_EXTENSION = 0x5EED_0000_usize as sys::PDRIVER_PROXY_EXTENSION;

/// `IoCreateDriverProxyExtension` with raw arguments; the status and the out value.
fn raw_create(
    driver: sys::PDRIVER_OBJECT,
    flags: u32,
) -> (sys::NTSTATUS, sys::PDRIVER_PROXY_EXTENSION) {
    let mut out = SENTINEL;
    // SAFETY: `out` is a valid local; the driver object is null or alive.
    let status = unsafe {
        driver_proxy_host::kernel::IoCreateDriverProxyExtension(
            driver,
            sys::DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong: flags },
            &raw mut out,
        )
    };
    (status, out)
}

fn from_driver_object(storage: &mut HostDriverObject) -> Option<Extension> {
    Extension::from_driver_object(driver(storage)).unwrap()
}

#[test]
fn create_succeeds_and_the_extension_is_found_from_its_driver_object() {
    let mut storage = HostDriverObject::new();
    let extension = Extension::create(driver(&mut storage)).unwrap();
    let found = from_driver_object(&mut storage).expect("owned");
    assert_eq!(found.as_raw(), extension.as_raw());
    assert!(ExtensionControl::from_raw(extension.as_raw()).is_some());
}

#[test]
fn second_create_for_the_same_driver_object_returns_status_resource_in_use() {
    let mut storage = HostDriverObject::new();
    let first = Extension::create(driver(&mut storage)).unwrap();
    assert_eq!(
        Extension::create(driver(&mut storage)).unwrap_err(),
        CreateError::AlreadyExists
    );
    let (status, out) = raw_create(storage.as_raw(), 0);
    assert_eq!(status, sys::STATUS_RESOURCE_IN_USE);
    assert_eq!(out, SENTINEL, "the out-pointer is not written");
    assert_eq!(
        from_driver_object(&mut storage).unwrap().as_raw(),
        first.as_raw(),
        "the first extension stays"
    );
}

#[test]
fn flags_other_than_zero_return_status_invalid_parameter_and_create_nothing() {
    let mut storage = HostDriverObject::new();
    for flags in [1, 0x8000_0000, u32::MAX] {
        let (status, out) = raw_create(storage.as_raw(), flags);
        assert_eq!(status, sys::STATUS_INVALID_PARAMETER, "{flags:#x}");
        assert_eq!(out, SENTINEL);
    }
    assert!(from_driver_object(&mut storage).is_none());
    Extension::create(driver(&mut storage)).expect("a later valid call succeeds");
}

#[test]
fn a_null_owning_driver_object_returns_status_invalid_parameter() {
    let (status, out) = raw_create(std::ptr::null_mut(), 0);
    assert_eq!(status, sys::STATUS_INVALID_PARAMETER);
    assert_eq!(out, SENTINEL);
}

#[test]
fn a_null_out_pointer_returns_status_invalid_parameter_and_creates_nothing() {
    let mut storage = HostDriverObject::new();
    // SAFETY: the null out-pointer is the bad input under test; it is rejected, never written.
    let status = unsafe {
        driver_proxy_host::kernel::IoCreateDriverProxyExtension(
            storage.as_raw(),
            sys::DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong: 0 },
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, sys::STATUS_INVALID_PARAMETER);
    assert!(from_driver_object(&mut storage).is_none());
}

#[test]
fn a_driver_without_driver_proxy_gets_status_not_supported_and_nothing_is_created() {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Disabled);
    assert_eq!(
        Extension::create(driver(&mut storage)).unwrap_err(),
        CreateError::NotSupported
    );
    assert!(from_driver_object(&mut storage).is_none());
}

#[test]
fn a_driver_excluded_by_registry_policy_gets_status_driver_blocked() {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Blocked);
    let (status, out) = raw_create(storage.as_raw(), 0);
    assert_eq!(status, sys::STATUS_DRIVER_BLOCKED);
    assert_eq!(out, SENTINEL);
    assert!(from_driver_object(&mut storage).is_none());
}

#[test]
fn status_not_supported_on_demand_makes_the_library_fall_back_once() {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .fail_next_create(sys::STATUS_NOT_SUPPORTED);
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::NotSupported));
    assert!(from_driver_object(&mut storage).is_none());
    Extension::create(driver(&mut storage)).expect("the failure was one shot");
}

#[test]
fn status_driver_blocked_on_demand_makes_the_library_fall_back() {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .fail_next_create(sys::STATUS_DRIVER_BLOCKED);
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::DriverBlocked));
    assert!(from_driver_object(&mut storage).is_none());
}

#[test]
fn status_insufficient_resources_is_an_error_and_creates_nothing() {
    let mut storage = HostDriverObject::new();
    storage.control().fail_allocation(1);
    let error = HotSwap::new(driver(&mut storage)).unwrap_err();
    assert_eq!(error, CreateError::InsufficientResources);
    assert_eq!(error.status(), NtStatus::INSUFFICIENT_RESOURCES);
    assert!(from_driver_object(&mut storage).is_none());
    Extension::create(driver(&mut storage)).expect("the fault was one shot");
}

#[test]
fn get_extension_from_driver_object_returns_null_when_it_owns_none_and_for_null() {
    let mut storage = HostDriverObject::new();
    assert!(from_driver_object(&mut storage).is_none());
    let hotswap = HotSwap::from_driver_object(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    // SAFETY: null is a valid input (it owns no extension).
    let raw = unsafe {
        driver_proxy_host::kernel::IoGetDriverProxyExtensionFromDriverObject(std::ptr::null_mut())
    };
    assert!(raw.is_null());
}

#[test]
fn the_extension_is_released_with_its_owning_driver_object() {
    let mut storage = HostDriverObject::new();
    let handle = Extension::create(driver(&mut storage)).unwrap().as_raw();
    assert!(ExtensionControl::from_raw(handle).is_some());
    drop(storage);
    assert!(ExtensionControl::from_raw(handle).is_none());
}

#[test]
fn a_new_driver_object_at_a_recycled_address_starts_without_an_extension() {
    let mut storage = HostDriverObject::new();
    let raw = storage.as_raw();
    Extension::create(driver(&mut storage)).unwrap();
    storage.control().delete();
    // SAFETY: `raw` is still a live allocation (the storage), now a driver object without an
    // extension.
    let found =
        unsafe { driver_proxy_host::kernel::IoGetDriverProxyExtensionFromDriverObject(raw) };
    assert!(found.is_null());
    Extension::create(driver(&mut storage)).expect("a fresh driver object");
}

type Op = extern "system" fn(u64) -> u64;
extern "system" fn times_two(x: u64) -> u64 {
    x * 2
}
extern "system" fn times_three(x: u64) -> u64 {
    x * 3
}

#[test]
fn v2_wrappers_of_every_declared_endpoint_exist_as_soon_as_create_succeeds() {
    let mut storage = HostDriverObject::new();
    let hotswap = common::image_hotswap(
        &mut storage,
        &[times_two as Op as usize, times_three as Op as usize],
    );
    let two = hotswap.wrap(times_two as Op).unwrap();
    let three = hotswap.wrap(times_three as Op).unwrap();
    assert_ne!(two.address(), times_two as Op as usize);
    assert_ne!(two.address(), three.address());
    assert_eq!((two.get()(21), three.get()(14)), (42, 42));
    let control = common::extension(&hotswap);
    assert_eq!(control.endpoint_count(), 2);
    assert_eq!(
        control.wrapper(EndpointKey::Ordinal(1)),
        Some(three.address())
    );
}

#[test]
fn declared_endpoints_count_as_allocations_of_the_creation() {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .declare_image_endpoints(&[times_two as Op as usize])
        .unwrap();
    storage.control().fail_allocation(2);
    assert_eq!(
        Extension::create(driver(&mut storage)).unwrap_err(),
        CreateError::InsufficientResources
    );
    assert!(from_driver_object(&mut storage).is_none());
    let hotswap = common::hotswap(&mut storage);
    assert_eq!(
        hotswap.wrap(times_two as Op).unwrap().get()(4),
        8,
        "declarations kept"
    );
}
