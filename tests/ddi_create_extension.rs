//! `IoCreateDriverProxyExtension` (`docs/ddi.md#iocreatedriverproxyextension`) and
//! `IoGetDriverProxyExtensionFromDriverObject`
//! (`docs/ddi.md#iogetdriverproxyextensionfromdriverobject`): one extension per driver object, the
//! documented failures on demand, and a failed call changes nothing, as the library sees them
//! (`HotSwap::new`, `HotSwap::from_driver_object`): creation also allocates the driver's
//! endpoint record (a driver-object extension) and a take-over requires it. What the routines
//! answer to raw arguments the library never passes is tested on the host kernel itself
//! (`host/tests/kernel_proxy.rs`).

mod common;

use driver_proxy::{CreateError, HotSwap, NtStatus, Unavailable, sys};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{self, DriverFeatures, EndpointKey, ExtensionControl};

use common::driver;

/// The extension `storage` owns, if any (the host kernel's view).
fn owned_extension(storage: &mut HostDriverObject) -> Option<sys::PDRIVER_PROXY_EXTENSION> {
    storage
        .control()
        .extension()
        .map(|control| control.as_raw())
}

/// `IoCreateDriverProxyExtension` called as a driver that does not use this library would:
/// through the library's reading of the routine. Returns the new extension.
fn create_without_the_library(storage: &mut HostDriverObject) -> sys::PDRIVER_PROXY_EXTENSION {
    // SAFETY: the routine's own type.
    let create: sys::PFN_IoCreateDriverProxyExtension =
        unsafe { common::routine(sys::names::IO_CREATE_DRIVER_PROXY_EXTENSION) };
    let mut out = std::ptr::null_mut();
    // SAFETY: a live driver object; `out` is a valid local.
    let status = unsafe {
        create(
            storage.as_raw(),
            sys::DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong: 0 },
            &raw mut out,
        )
    };
    assert_eq!(status, sys::STATUS_SUCCESS);
    out
}

#[test]
fn create_succeeds_and_the_extension_is_found_from_its_driver_object() {
    let mut storage = HostDriverObject::new();
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    let raw = hotswap.raw_extension().expect("hot-swap is available");
    assert_eq!(owned_extension(&mut storage), Some(raw));
    assert!(ExtensionControl::from_raw(raw).is_some());
    let next_image = HotSwap::from_driver_object(driver(&mut storage)).unwrap();
    assert!(next_image.is_hot_swappable());
    assert_eq!(
        next_image.raw_extension(),
        Some(raw),
        "a new image of the driver finds the same extension"
    );
}

#[test]
fn second_create_for_the_same_driver_object_returns_status_resource_in_use() {
    let mut storage = HostDriverObject::new();
    let first = HotSwap::new(driver(&mut storage)).unwrap();
    let error = HotSwap::new(driver(&mut storage)).unwrap_err();
    assert_eq!(error, CreateError::AlreadyExists);
    assert_eq!(NtStatus::from(error), NtStatus::RESOURCE_IN_USE);
    assert_eq!(
        owned_extension(&mut storage),
        first.raw_extension(),
        "the first extension stays"
    );
}

#[test]
fn a_driver_without_driver_proxy_falls_back_and_nothing_is_created() {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Disabled);
    // The library asks for the features first and does not try to create.
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    assert!(owned_extension(&mut storage).is_none());
}

#[test]
fn status_not_supported_on_demand_makes_the_library_fall_back_once() {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .fail_next_create(sys::STATUS_NOT_SUPPORTED);
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::NotSupported));
    assert!(!hotswap.is_hot_swappable());
    assert!(hotswap.raw_extension().is_none());
    assert!(owned_extension(&mut storage).is_none());
    common::hotswap(&mut storage); // the failure was one shot
}

#[test]
fn status_driver_blocked_on_demand_makes_the_library_fall_back() {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .fail_next_create(sys::STATUS_DRIVER_BLOCKED);
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::DriverBlocked));
    assert!(owned_extension(&mut storage).is_none());
}

#[test]
fn status_insufficient_resources_is_an_error_and_creates_nothing() {
    let mut storage = HostDriverObject::new();
    storage.control().fail_allocation(1);
    let error = HotSwap::new(driver(&mut storage)).unwrap_err();
    assert_eq!(error, CreateError::InsufficientResources);
    assert_eq!(error.status(), NtStatus::INSUFFICIENT_RESOURCES);
    assert!(owned_extension(&mut storage).is_none());
    common::hotswap(&mut storage); // the fault was one shot
}

/// The endpoint record is a driver-object extension (`IoAllocateDriverObjectExtension`),
/// allocated before the DriverProxy extension: when that allocation fails, `HotSwap::new`
/// fails with the same documented error and creates nothing.
#[test]
fn when_the_endpoint_record_cannot_be_allocated_creation_is_insufficient_resources() {
    let mut storage = HostDriverObject::new();
    control::fail_pool_allocation(1);
    assert_eq!(
        HotSwap::new(driver(&mut storage)).unwrap_err(),
        CreateError::InsufficientResources
    );
    assert!(owned_extension(&mut storage).is_none());
    assert_eq!(storage.control().driver_object_extensions(), 0);
    common::hotswap(&mut storage);
    assert_eq!(
        storage.control().driver_object_extensions(),
        1,
        "one block: the endpoint record"
    );
}

/// A kernel whose `IoAllocateDriverObjectExtension` refuses (Wine 8's is a stub answering
/// `STATUS_NOT_IMPLEMENTED`): without its endpoint record the library cannot check lookups, so
/// `HotSwap::new` falls back and says why ([`Unavailable::RecordRefused`]), creating no
/// DriverProxy extension; worker threads, which need no driver-object extension, still run
/// (as the library's fallback threads). Only `STATUS_INSUFFICIENT_RESOURCES` stays an error.
#[test]
fn a_kernel_refusing_the_endpoint_records_storage_means_fallback_record_refused() {
    // STATUS_NOT_IMPLEMENTED (Wine 8), and any other refusal (STATUS_ACCESS_DENIED).
    for status in [sys::STATUS_NOT_IMPLEMENTED, 0xC000_0022_u32.cast_signed()] {
        let mut storage = HostDriverObject::new();
        storage
            .control()
            .refuse_driver_object_extensions(Some(status));
        let hotswap = HotSwap::new(driver(&mut storage)).expect("fallback is not an error");
        let reason = Unavailable::RecordRefused(NtStatus(status));
        assert_eq!(hotswap.unavailable(), Some(reason));
        assert_eq!(NtStatus::from(reason), NtStatus::NOT_SUPPORTED);
        assert!(!hotswap.is_hot_swappable());
        assert!(owned_extension(&mut storage).is_none(), "nothing created");
        assert_eq!(storage.control().driver_object_extensions(), 0);
        assert_eq!(hotswap.worker_threads(), Ok(()), "workers need no record");
        assert_eq!(
            HotSwap::from_driver_object(driver(&mut storage))
                .unwrap()
                .unavailable(),
            Some(Unavailable::FeatureDisabled),
            "no extension to take over"
        );
    }
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .refuse_driver_object_extensions(Some(sys::STATUS_INSUFFICIENT_RESOURCES));
    assert_eq!(
        HotSwap::new(driver(&mut storage)).unwrap_err(),
        CreateError::InsufficientResources,
        "out of resources is an error, not a refusal"
    );
    storage.control().refuse_driver_object_extensions(None);
    common::hotswap(&mut storage);
    assert_eq!(storage.control().driver_object_extensions(), 1);
}

#[test]
fn from_driver_object_falls_back_when_the_driver_object_owns_no_extension() {
    let mut storage = HostDriverObject::new();
    assert!(owned_extension(&mut storage).is_none());
    let hotswap = HotSwap::from_driver_object(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    assert!(hotswap.raw_extension().is_none());
}

/// An extension created without this crate (no endpoint record) cannot be taken over: nothing
/// it registered could be checked.
#[test]
fn an_extension_created_without_the_endpoint_record_is_not_taken_over() {
    let mut storage = HostDriverObject::new();
    let raw = create_without_the_library(&mut storage);
    let error = HotSwap::from_driver_object(driver(&mut storage)).unwrap_err();
    assert_eq!(error, CreateError::RecordMissing);
    assert_eq!(NtStatus::from(error), NtStatus::REVISION_MISMATCH);
    assert_eq!(owned_extension(&mut storage), Some(raw));
}

/// The record's identification address among the driver object's extensions ("DPRXREC1"):
/// the same in every image and version of the crate that shares its layout.
const RECORD_KEY: usize = 0x4450_5258_5245_4331;

#[test]
fn a_record_of_another_layout_is_refused_by_new_and_by_from_driver_object() {
    let mut storage = HostDriverObject::new();
    // SAFETY: the routine's own type.
    let allocate: sys::PFN_IoAllocateDriverObjectExtension =
        unsafe { common::routine(sys::kernel_names::IO_ALLOCATE_DRIVER_OBJECT_EXTENSION) };
    let mut block = std::ptr::null_mut();
    // SAFETY: a live driver object; `block` is a valid local.
    let status = unsafe {
        allocate(
            storage.as_raw(),
            RECORD_KEY as sys::PVOID,
            64,
            &raw mut block,
        )
    };
    assert_eq!(status, sys::STATUS_SUCCESS);
    // SAFETY: a fresh 64-byte block: a magic of another layout.
    unsafe { block.cast::<u64>().write(u64::from_le_bytes(*b"DPrxRec0")) };
    assert_eq!(
        HotSwap::new(driver(&mut storage)).unwrap_err(),
        CreateError::IncompatibleRecord
    );
    assert!(owned_extension(&mut storage).is_none(), "nothing created");
    create_without_the_library(&mut storage);
    assert_eq!(
        HotSwap::from_driver_object(driver(&mut storage)).unwrap_err(),
        CreateError::IncompatibleRecord
    );
}

#[test]
fn the_extension_is_released_with_its_owning_driver_object() {
    let mut storage = HostDriverObject::new();
    let driver_control = storage.control();
    let handle = common::hotswap(&mut storage).raw_extension().unwrap();
    assert!(ExtensionControl::from_raw(handle).is_some());
    assert_eq!(driver_control.driver_object_extensions(), 1);
    drop(storage);
    assert!(ExtensionControl::from_raw(handle).is_none());
    assert_eq!(
        driver_control.driver_object_extensions(),
        0,
        "the endpoint record goes with it"
    );
}

#[test]
fn a_new_driver_object_at_a_recycled_address_starts_without_an_extension() {
    let mut storage = HostDriverObject::new();
    common::hotswap(&mut storage);
    storage.control().delete();
    assert!(owned_extension(&mut storage).is_none());
    assert_eq!(
        HotSwap::from_driver_object(driver(&mut storage))
            .unwrap()
            .unavailable(),
        Some(Unavailable::FeatureDisabled)
    );
    assert_eq!(storage.control().driver_object_extensions(), 0);
    common::hotswap(&mut storage); // a fresh driver object
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
        HotSwap::new(driver(&mut storage)).unwrap_err(),
        CreateError::InsufficientResources
    );
    assert!(owned_extension(&mut storage).is_none());
    let hotswap = common::hotswap(&mut storage);
    assert_eq!(
        hotswap.wrap(times_two as Op).unwrap().get()(4),
        8,
        "declarations kept"
    );
}
