//! `IoCreateDriverProxyExtension` (`docs/ddi.md#iocreatedriverproxyextension`) and
//! `IoGetDriverProxyExtensionFromDriverObject`
//! (`docs/ddi.md#iogetdriverproxyextensionfromdriverobject`): one extension per driver object, the
//! documented failures on demand, and a failed call changes nothing. Through the library
//! (`HotSwap::new`, `HotSwap::from_driver_object`), creation also allocates the driver's
//! endpoint record (a driver-object extension) and a take-over requires it.

mod common;

use driver_proxy::{CreateError, HotSwap, NtStatus, Unavailable, sys};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{self, DriverFeatures, EndpointKey, ExtensionControl};

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

/// `IoGetDriverProxyExtensionFromDriverObject`: the extension `storage` owns, if any.
fn owned_extension(storage: &mut HostDriverObject) -> Option<sys::PDRIVER_PROXY_EXTENSION> {
    // SAFETY: a live driver object.
    let raw = unsafe {
        driver_proxy_host::kernel::IoGetDriverProxyExtensionFromDriverObject(storage.as_raw())
    };
    (!raw.is_null()).then_some(raw)
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
    let (status, out) = raw_create(storage.as_raw(), 0);
    assert_eq!(status, sys::STATUS_RESOURCE_IN_USE);
    assert_eq!(out, SENTINEL, "the out-pointer is not written");
    assert_eq!(
        owned_extension(&mut storage),
        first.raw_extension(),
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
    assert!(owned_extension(&mut storage).is_none());
    common::hotswap(&mut storage);
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
    assert!(owned_extension(&mut storage).is_none());
}

#[test]
fn a_driver_without_driver_proxy_gets_status_not_supported_and_nothing_is_created() {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Disabled);
    let (status, out) = raw_create(storage.as_raw(), 0);
    assert_eq!(status, sys::STATUS_NOT_SUPPORTED);
    assert_eq!(out, SENTINEL);
    // The library asks for the features first and does not try to create.
    let hotswap = HotSwap::new(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    assert!(owned_extension(&mut storage).is_none());
}

#[test]
fn a_driver_excluded_by_registry_policy_gets_status_driver_blocked() {
    let mut storage = HostDriverObject::new();
    storage.control().set_features(DriverFeatures::Blocked);
    let (status, out) = raw_create(storage.as_raw(), 0);
    assert_eq!(status, sys::STATUS_DRIVER_BLOCKED);
    assert_eq!(out, SENTINEL);
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
fn get_extension_from_driver_object_returns_null_when_it_owns_none_and_for_null() {
    let mut storage = HostDriverObject::new();
    assert!(owned_extension(&mut storage).is_none());
    let hotswap = HotSwap::from_driver_object(driver(&mut storage)).unwrap();
    assert_eq!(hotswap.unavailable(), Some(Unavailable::FeatureDisabled));
    // SAFETY: null is a valid input (it owns no extension).
    let raw = unsafe {
        driver_proxy_host::kernel::IoGetDriverProxyExtensionFromDriverObject(std::ptr::null_mut())
    };
    assert!(raw.is_null());
}

/// An extension created without this crate (no endpoint record) cannot be taken over: nothing
/// it registered could be checked.
#[test]
fn an_extension_created_without_the_endpoint_record_is_not_taken_over() {
    let mut storage = HostDriverObject::new();
    let (status, raw) = raw_create(storage.as_raw(), 0);
    assert_eq!(status, sys::STATUS_SUCCESS);
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
    let mut block = std::ptr::null_mut();
    // SAFETY: a live driver object; `block` is a valid local.
    let status = unsafe {
        driver_proxy_host::kernel::IoAllocateDriverObjectExtension(
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
    let (status, _) = raw_create(storage.as_raw(), 0);
    assert_eq!(status, sys::STATUS_SUCCESS);
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
    let raw = storage.as_raw();
    common::hotswap(&mut storage);
    storage.control().delete();
    // SAFETY: `raw` is still a live allocation (the storage), now a driver object without an
    // extension.
    let found =
        unsafe { driver_proxy_host::kernel::IoGetDriverProxyExtensionFromDriverObject(raw) };
    assert!(found.is_null());
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
