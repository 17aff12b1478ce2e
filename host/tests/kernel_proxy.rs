//! The seven DriverProxy routines of the host kernel called directly, with the host's own
//! reading of the DDI (`driver_proxy_host::ddi`) and raw arguments: every row of the table in
//! `host/src/kernel/mod.rs` that the library's typed API cannot reach (null pointers, flags,
//! duplicate ids, a first registration without a callback, callback statuses, start contexts
//! built by hand), and what the routines answer besides what the library makes of it.
//!
//! The library's behaviour on top of the same routines is tested by the root `tests/ddi_*.rs`;
//! `ddi_readings.rs` checks that the two readings of the DDI agree.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod common;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use driver_proxy_host::kernel::control::{self, DriverFeatures, EndpointKey, ExtensionControl};
use driver_proxy_host::{HostDriverObject, ddi, kernel};

type Op = extern "system" fn(u64) -> u64;
type Op2 = extern "system" fn(u64, u64) -> u64;

extern "system" fn v1(x: u64) -> u64 {
    x + 1
}
extern "system" fn v2(x: u64) -> u64 {
    x + 2
}
extern "system" fn other(x: u64) -> u64 {
    x + 100
}
extern "system" fn add(a: u64, b: u64) -> u64 {
    a + b
}
extern "system" fn never_registered(x: u64) -> u64 {
    x
}

fn code(f: Op) -> usize {
    f as usize
}

/// `f` as the type-erased `DRIVER_PROXY_ENDPOINT_FUNCTION`.
fn erase<F: Copy>(f: F) -> ddi::DRIVER_PROXY_ENDPOINT_FUNCTION {
    assert_eq!(size_of::<F>(), size_of::<usize>());
    // SAFETY: a function pointer (size checked), only carried as an address.
    unsafe { core::mem::transmute_copy::<F, ddi::DRIVER_PROXY_ENDPOINT_FUNCTION>(&f) }
}

/// A value no call writes: an untouched out-pointer keeps it.
const SENTINEL: ddi::PDRIVER_PROXY_EXTENSION = 0x5EED_0000_usize as ddi::PDRIVER_PROXY_EXTENSION;

/// `IoGetDriverProxyFeatures` with the flags pre-filled with `fill`; `AsUlong` after the call.
fn features(driver: ddi::PDRIVER_OBJECT, fill: u32) -> u32 {
    let mut flags = ddi::DRIVER_PROXY_FEATURE_FLAGS { AsUlong: fill };
    // SAFETY: `flags` is a valid local; the driver object is null or alive.
    unsafe { kernel::IoGetDriverProxyFeatures(driver, &raw mut flags) };
    flags.as_ulong()
}

/// `IoCreateDriverProxyExtension` with raw arguments; the status and the out value.
fn create(
    driver: ddi::PDRIVER_OBJECT,
    flags: u32,
) -> (ddi::NTSTATUS, ddi::PDRIVER_PROXY_EXTENSION) {
    let mut out = SENTINEL;
    // SAFETY: `out` is a valid local; the driver object is null or alive.
    let status = unsafe {
        kernel::IoCreateDriverProxyExtension(
            driver,
            ddi::DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong: flags },
            &raw mut out,
        )
    };
    (status, out)
}

/// A new extension for `storage`.
fn created(storage: &mut HostDriverObject) -> ddi::PDRIVER_PROXY_EXTENSION {
    let (status, extension) = create(storage.as_raw(), 0);
    assert_eq!(status, ddi::STATUS_SUCCESS);
    extension
}

/// `IoGetDriverProxyExtensionFromDriverObject`: the extension `storage` owns, if any.
fn owned(storage: &mut HostDriverObject) -> Option<ddi::PDRIVER_PROXY_EXTENSION> {
    // SAFETY: a live driver object.
    let raw = unsafe { kernel::IoGetDriverProxyExtensionFromDriverObject(storage.as_raw()) };
    (!raw.is_null()).then_some(raw)
}

/// An endpoint of one parameter.
fn entry(id: u32, function: Op) -> ddi::DRIVER_PROXY_ENDPOINT_INFORMATION {
    ddi::DRIVER_PROXY_ENDPOINT_INFORMATION {
        Id: id,
        EndpointFunction: Some(erase(function)),
        ParameterCount: 1,
    }
}

/// `IoRegisterDriverProxyEndpoints` with raw arguments.
fn register(
    extension: ddi::PDRIVER_PROXY_EXTENSION,
    entries: &mut [ddi::DRIVER_PROXY_ENDPOINT_INFORMATION],
    callback: ddi::PDRIVER_PROXY_REGISTER_CALLBACK,
) -> ddi::NTSTATUS {
    // SAFETY: the array holds `len` entries; the extension is null or live; the callbacks of
    // this file need no context.
    unsafe {
        kernel::IoRegisterDriverProxyEndpoints(
            extension,
            entries.as_mut_ptr(),
            u32::try_from(entries.len()).unwrap(),
            callback,
            std::ptr::null_mut(),
        )
    }
}

/// A new extension for `storage` with `entries` registered (a first registration, no
/// callback), and its control.
fn registered(
    storage: &mut HostDriverObject,
    entries: &mut [ddi::DRIVER_PROXY_ENDPOINT_INFORMATION],
) -> (ddi::PDRIVER_PROXY_EXTENSION, ExtensionControl) {
    let extension = created(storage);
    assert_eq!(register(extension, entries, None), ddi::STATUS_SUCCESS);
    (extension, ExtensionControl::from_raw(extension).unwrap())
}

/// `IoGetDriverProxyEndpointWrapper`: the wrapper's address, if any.
fn wrapper_by_id(extension: ddi::PDRIVER_PROXY_EXTENSION, id: u32) -> Option<usize> {
    // SAFETY: the extension is null or live.
    unsafe { kernel::IoGetDriverProxyEndpointWrapper(extension, id) }.map(|f| f as usize)
}

/// `IofGetDriverProxyWrapperFromEndpoint` with raw arguments, `*Wrapper` starting non-null;
/// the status and the wrapper's address.
fn lookup(
    extension: ddi::PDRIVER_PROXY_EXTENSION,
    endpoint: ddi::PDRIVER_PROXY_ENDPOINT_FUNCTION,
) -> (ddi::NTSTATUS, Option<usize>) {
    let mut wrapper = Some(erase(never_registered as Op));
    // SAFETY: `wrapper` is a valid local; the extension is null or live.
    let status = unsafe {
        kernel::IofGetDriverProxyWrapperFromEndpoint(extension, endpoint, &raw mut wrapper)
    };
    (status, wrapper.map(|f| f as usize))
}

/// Asserts that id 1 is still implemented by `v1`: the failed call changed nothing.
fn assert_1_is_still_v1(control: &ExtensionControl) {
    assert_eq!(
        control.implementation(EndpointKey::Id(1)),
        Some(code(v1)),
        "id 1 is still implemented by v1"
    );
}

/// `IoGetDriverProxyFeatures` (`docs/ddi.md#iogetdriverproxyfeatures`).
mod features {
    use super::*;

    #[test]
    fn the_whole_flags_ulong_is_written_so_reserved_bits_read_zero() {
        let mut on = HostDriverObject::new();
        let mut off = HostDriverObject::new();
        off.control().set_features(DriverFeatures::Disabled);
        assert_eq!(features(on.as_raw(), 0xFFFF_FFFE), 1);
        assert_eq!(features(off.as_raw(), 0xFFFF_FFFF), 0);
        assert_eq!(features(std::ptr::null_mut(), 0xFFFF_FFFE), 1);
        let flags = ddi::DRIVER_PROXY_FEATURE_FLAGS { AsUlong: 1 };
        // SAFETY: every member is the same 4 bytes.
        let bits = unsafe { flags.Bits };
        assert_eq!(
            (bits.Enabled(), bits.Reserved()),
            (1, 0),
            "Enabled is bit 0"
        );
    }

    #[test]
    fn a_deleted_driver_object_forgets_its_features() {
        let mut storage = HostDriverObject::new();
        let raw = storage.as_raw();
        let control = storage.control();
        control.set_features(DriverFeatures::Disabled);
        assert_eq!(features(raw, 0), 0);
        control.delete();
        assert_eq!(features(raw, 0), 1);
    }
}

/// `IoCreateDriverProxyExtension` and `IoGetDriverProxyExtensionFromDriverObject`
/// (`docs/ddi.md#iocreatedriverproxyextension`, `#iogetdriverproxyextensionfromdriverobject`).
mod create_extension {
    use super::*;

    #[test]
    fn create_succeeds_and_the_extension_is_found_from_its_driver_object() {
        let mut storage = HostDriverObject::new();
        let extension = created(&mut storage);
        assert_ne!(extension, SENTINEL);
        assert_eq!(owned(&mut storage), Some(extension));
        assert_eq!(
            storage.control().extension().map(|c| c.as_raw()),
            Some(extension)
        );
    }

    #[test]
    fn second_create_for_the_same_driver_object_returns_status_resource_in_use() {
        let mut storage = HostDriverObject::new();
        let first = created(&mut storage);
        let (status, out) = create(storage.as_raw(), 0);
        assert_eq!(status, ddi::STATUS_RESOURCE_IN_USE);
        assert_eq!(out, SENTINEL, "the out-pointer is not written");
        assert_eq!(
            owned(&mut storage),
            Some(first),
            "the first extension stays"
        );
    }

    #[test]
    fn flags_other_than_zero_return_status_invalid_parameter_and_create_nothing() {
        let mut storage = HostDriverObject::new();
        for flags in [1, 0x8000_0000, u32::MAX] {
            let (status, out) = create(storage.as_raw(), flags);
            assert_eq!(status, ddi::STATUS_INVALID_PARAMETER, "{flags:#x}");
            assert_eq!(out, SENTINEL);
        }
        assert!(owned(&mut storage).is_none());
        created(&mut storage);
    }

    #[test]
    fn a_null_owning_driver_object_returns_status_invalid_parameter() {
        let (status, out) = create(std::ptr::null_mut(), 0);
        assert_eq!(status, ddi::STATUS_INVALID_PARAMETER);
        assert_eq!(out, SENTINEL);
    }

    #[test]
    fn a_null_out_pointer_returns_status_invalid_parameter_and_creates_nothing() {
        let mut storage = HostDriverObject::new();
        // SAFETY: the null out-pointer is the bad input under test; it is rejected, never
        // written.
        let status = unsafe {
            kernel::IoCreateDriverProxyExtension(
                storage.as_raw(),
                ddi::DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong: 0 },
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status, ddi::STATUS_INVALID_PARAMETER);
        assert!(owned(&mut storage).is_none());
    }

    #[test]
    fn a_driver_without_driver_proxy_gets_status_not_supported_and_nothing_is_created() {
        let mut storage = HostDriverObject::new();
        storage.control().set_features(DriverFeatures::Disabled);
        let (status, out) = create(storage.as_raw(), 0);
        assert_eq!(status, ddi::STATUS_NOT_SUPPORTED);
        assert_eq!(out, SENTINEL);
        assert!(owned(&mut storage).is_none());
    }

    #[test]
    fn a_driver_excluded_by_registry_policy_reports_enabled_0_and_gets_status_driver_blocked() {
        let mut storage = HostDriverObject::new();
        storage.control().set_features(DriverFeatures::Blocked);
        assert_eq!(features(storage.as_raw(), 0), 0);
        let (status, out) = create(storage.as_raw(), 0);
        assert_eq!(status, ddi::STATUS_DRIVER_BLOCKED);
        assert_eq!(out, SENTINEL);
        assert!(owned(&mut storage).is_none());
    }

    #[test]
    fn a_failure_on_demand_is_returned_once_and_creates_nothing() {
        let mut storage = HostDriverObject::new();
        for status in [
            ddi::STATUS_NOT_SUPPORTED,
            ddi::STATUS_INSUFFICIENT_RESOURCES,
        ] {
            storage.control().fail_next_create(status);
            assert_eq!(create(storage.as_raw(), 0), (status, SENTINEL));
            assert!(owned(&mut storage).is_none());
        }
        storage.control().fail_allocation(1);
        assert_eq!(
            create(storage.as_raw(), 0),
            (ddi::STATUS_INSUFFICIENT_RESOURCES, SENTINEL)
        );
        created(&mut storage);
    }

    #[test]
    fn get_extension_from_driver_object_returns_null_when_it_owns_none_and_for_null() {
        let mut storage = HostDriverObject::new();
        assert!(owned(&mut storage).is_none());
        // SAFETY: null is a valid input (it owns no extension).
        let raw =
            unsafe { kernel::IoGetDriverProxyExtensionFromDriverObject(std::ptr::null_mut()) };
        assert!(raw.is_null());
    }

    #[test]
    fn a_new_driver_object_at_a_recycled_address_starts_without_an_extension() {
        let mut storage = HostDriverObject::new();
        created(&mut storage);
        storage.control().delete();
        assert!(owned(&mut storage).is_none());
        created(&mut storage);
    }

    #[test]
    fn v2_wrappers_of_every_declared_endpoint_exist_as_soon_as_create_succeeds() {
        let mut storage = HostDriverObject::new();
        storage
            .control()
            .declare_image_endpoints(&[code(v1), code(v2)])
            .unwrap();
        let extension = created(&mut storage);
        let (status, one) = lookup(extension, Some(erase(v1 as Op)));
        assert_eq!(status, ddi::STATUS_SUCCESS);
        let (_, two) = lookup(extension, Some(erase(v2 as Op)));
        let (one, two) = (one.unwrap(), two.unwrap());
        assert_ne!(one, two);
        assert_ne!(one, code(v1), "a wrapper, not the endpoint");
        // SAFETY: the wrappers of `Op` endpoints.
        let call = |w: usize| unsafe { core::mem::transmute::<usize, Op>(w) }(40);
        assert_eq!((call(one), call(two)), (41, 42));
    }
}

/// `IoRegisterDriverProxyEndpoints` (V1, `docs/ddi.md#ioregisterdriverproxyendpoints`).
mod register_endpoints {
    use super::*;

    #[test]
    fn a_first_registration_without_a_callback_publishes_the_new_ids_without_the_swap_protocol() {
        let mut storage = HostDriverObject::new();
        let (extension, control) = registered(&mut storage, &mut [entry(1, v1), entry(2, other)]);
        assert_eq!(control.endpoint_count(), 2);
        assert_eq!(
            control.swaps_completed(),
            0,
            "no callback, no swap protocol"
        );
        let wrapper = wrapper_by_id(extension, 1).expect("a wrapper of id 1");
        assert_eq!(control.wrapper(EndpointKey::Id(1)), Some(wrapper));
        assert_ne!(wrapper, code(v1));
        assert_ne!(Some(wrapper), wrapper_by_id(extension, 2));
        // SAFETY: the wrapper of an `Op` endpoint.
        let call = unsafe { std::mem::transmute::<usize, Op>(wrapper) };
        assert_eq!(call(1), 2);
    }

    static PHASES: Mutex<Vec<ddi::DRIVER_PROXY_REGISTER_CALLBACK_PHASE>> = Mutex::new(Vec::new());

    unsafe extern "system" fn record_phase(
        phase: ddi::DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
        _: ddi::PVOID,
    ) -> ddi::NTSTATUS {
        PHASES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(phase);
        ddi::STATUS_SUCCESS
    }

    #[test]
    fn registering_an_existing_id_again_runs_the_phases_and_repoints_the_same_wrapper() {
        let mut storage = HostDriverObject::new();
        let (extension, control) = registered(&mut storage, &mut [entry(1, v1)]);
        let before = wrapper_by_id(extension, 1).unwrap();
        assert_eq!(
            register(extension, &mut [entry(1, v2)], Some(record_phase)),
            ddi::STATUS_SUCCESS
        );
        assert_eq!(
            *PHASES.lock().unwrap_or_else(PoisonError::into_inner),
            [
                ddi::DriverProxyRegisterCallbackPreProcess,
                ddi::DriverProxyRegisterCallbackProxyStalled,
                ddi::DriverProxyRegisterCallbackPostProcess
            ]
        );
        assert_eq!(
            wrapper_by_id(extension, 1),
            Some(before),
            "the wrapper stays valid"
        );
        assert_eq!(control.implementation(EndpointKey::Id(1)), Some(code(v2)));
        // SAFETY: the wrapper of an `Op` endpoint.
        assert_eq!(unsafe { std::mem::transmute::<usize, Op>(before) }(40), 42);
        assert_eq!(control.swaps_completed(), 1);
    }

    unsafe extern "system" fn stalled_says_timeout(
        phase: ddi::DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
        _: ddi::PVOID,
    ) -> ddi::NTSTATUS {
        if phase == ddi::DriverProxyRegisterCallbackProxyStalled {
            ddi::STATUS_TIMEOUT // a success code, but not STATUS_SUCCESS
        } else {
            ddi::STATUS_SUCCESS
        }
    }

    #[test]
    fn a_callback_status_other_than_success_aborts_and_a_non_error_one_is_returned_as_unsuccessful()
    {
        let mut storage = HostDriverObject::new();
        let (extension, control) = registered(&mut storage, &mut [entry(1, v1)]);
        let status = register(extension, &mut [entry(1, v2)], Some(stalled_says_timeout));
        assert_eq!(status, ddi::STATUS_UNSUCCESSFUL);
        assert_1_is_still_v1(&control);
        assert_eq!(control.swaps_failed(), 1);
    }

    #[test]
    fn a_changed_parameter_count_anywhere_in_the_array_returns_status_invalid_parameter_3_and_changes_nothing()
     {
        let mut storage = HostDriverObject::new();
        let (extension, control) = registered(&mut storage, &mut [entry(1, v1), entry(2, other)]);
        let generation = control.generation();
        // A valid replacement and a new id come first; the bad entry is the last one.
        let mut entries = [
            entry(1, v2),
            entry(3, other),
            ddi::DRIVER_PROXY_ENDPOINT_INFORMATION {
                Id: 2,
                EndpointFunction: Some(erase(add as Op2)),
                ParameterCount: 2,
            },
        ];
        assert_eq!(
            register(extension, &mut entries, Some(record_phase_never)),
            ddi::STATUS_INVALID_PARAMETER_3
        );
        assert_1_is_still_v1(&control);
        assert_eq!(
            control.implementation(EndpointKey::Id(2)),
            Some(code(other))
        );
        assert_eq!(wrapper_by_id(extension, 3), None);
        assert_eq!(control.generation(), generation);
        assert_eq!(control.endpoint_count(), 2);
    }

    unsafe extern "system" fn record_phase_never(
        _: ddi::DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
        _: ddi::PVOID,
    ) -> ddi::NTSTATUS {
        panic!("validated before any phase");
    }

    #[test]
    fn a_null_extension_returns_status_invalid_parameter() {
        assert_eq!(
            register(std::ptr::null_mut(), &mut [entry(1, v1)], None),
            ddi::STATUS_INVALID_PARAMETER
        );
    }

    #[test]
    fn a_null_array_or_a_count_of_zero_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let extension = created(&mut storage);
        assert_eq!(
            register(extension, &mut [], None),
            ddi::STATUS_INVALID_PARAMETER
        );
        // SAFETY: a null array is the bad input under test; it is rejected, never read.
        let status = unsafe {
            kernel::IoRegisterDriverProxyEndpoints(
                extension,
                std::ptr::null_mut(),
                1,
                None,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status, ddi::STATUS_INVALID_PARAMETER);
        assert_eq!(
            ExtensionControl::from_raw(extension)
                .unwrap()
                .endpoint_count(),
            0
        );
    }

    #[test]
    fn the_same_id_twice_in_one_call_returns_status_invalid_parameter_and_changes_nothing() {
        let mut storage = HostDriverObject::new();
        let (extension, control) = registered(&mut storage, &mut [entry(1, v1)]);
        let mut entries = [entry(1, v2), entry(5, other), entry(5, v1)];
        assert_eq!(
            register(extension, &mut entries, None),
            ddi::STATUS_INVALID_PARAMETER
        );
        assert_1_is_still_v1(&control);
        assert_eq!(control.implementation(EndpointKey::Id(5)), None);
        assert_eq!(control.endpoint_count(), 1);
    }

    #[test]
    fn a_null_endpoint_function_returns_status_invalid_parameter_and_changes_nothing() {
        let mut storage = HostDriverObject::new();
        let (extension, control) = registered(&mut storage, &mut [entry(1, v1)]);
        let mut entries = [entry(1, v2), entry(6, other)];
        entries[1].EndpointFunction = None;
        assert_eq!(
            register(extension, &mut entries, None),
            ddi::STATUS_INVALID_PARAMETER
        );
        assert_1_is_still_v1(&control);
        assert_eq!(control.endpoint_count(), 1);
    }
}

/// `IoGetDriverProxyEndpointWrapper` (V1) and `IofGetDriverProxyWrapperFromEndpoint` (V2)
/// (`docs/ddi.md#iogetdriverproxyendpointwrapper`, `#iofgetdriverproxywrapperfromendpoint`).
mod wrapper_lookup {
    use super::*;

    #[test]
    fn lookup_by_an_id_never_registered_returns_null() {
        let mut storage = HostDriverObject::new();
        let (extension, _) = registered(&mut storage, &mut [entry(1, v1)]);
        assert!(wrapper_by_id(extension, 1).is_some());
        assert_eq!(wrapper_by_id(extension, 77), None);
    }

    #[test]
    fn lookup_by_id_with_a_null_extension_returns_null() {
        assert_eq!(wrapper_by_id(std::ptr::null_mut(), 1), None);
    }

    #[test]
    fn lookup_by_endpoint_finds_a_v1_endpoint_with_the_same_wrapper_as_by_id() {
        let mut storage = HostDriverObject::new();
        let (extension, _) = registered(&mut storage, &mut [entry(1, v1)]);
        assert_eq!(
            lookup(extension, Some(erase(v1 as Op))),
            (ddi::STATUS_SUCCESS, wrapper_by_id(extension, 1))
        );
    }

    #[test]
    fn after_a_swap_lookup_by_endpoint_finds_the_new_implementation_and_not_the_retired_one() {
        let mut storage = HostDriverObject::new();
        let (extension, _) = registered(&mut storage, &mut [entry(1, v1)]);
        let wrapper = wrapper_by_id(extension, 1);
        assert_eq!(
            register(extension, &mut [entry(1, v2)], None),
            ddi::STATUS_SUCCESS
        );
        assert_eq!(
            lookup(extension, Some(erase(v2 as Op))),
            (ddi::STATUS_SUCCESS, wrapper)
        );
        assert_eq!(
            lookup(extension, Some(erase(v1 as Op))),
            (ddi::STATUS_NOT_FOUND, None)
        );
    }

    #[test]
    fn an_endpoint_never_registered_returns_status_not_found_and_a_null_wrapper() {
        let mut storage = HostDriverObject::new();
        let extension = created(&mut storage);
        let (status, out) = lookup(extension, Some(erase(never_registered as Op)));
        assert_eq!(status, ddi::STATUS_NOT_FOUND);
        assert!(out.is_none(), "*Wrapper is set to NULL");
    }

    #[test]
    fn a_wrapper_is_not_itself_an_endpoint() {
        let mut storage = HostDriverObject::new();
        let (extension, _) = registered(&mut storage, &mut [entry(1, v1)]);
        let wrapper = wrapper_by_id(extension, 1).unwrap();
        assert_eq!(
            lookup(extension, Some(erase(wrapper))),
            (ddi::STATUS_NOT_FOUND, None)
        );
    }

    #[test]
    fn a_null_extension_returns_status_invalid_parameter_and_a_null_wrapper() {
        assert_eq!(
            lookup(std::ptr::null_mut(), Some(erase(v1 as Op))),
            (ddi::STATUS_INVALID_PARAMETER, None)
        );
    }

    #[test]
    fn a_null_endpoint_returns_status_invalid_parameter_and_a_null_wrapper() {
        let mut storage = HostDriverObject::new();
        let extension = created(&mut storage);
        assert_eq!(
            lookup(extension, None),
            (ddi::STATUS_INVALID_PARAMETER, None)
        );
    }

    #[test]
    fn a_null_wrapper_pointer_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let extension = created(&mut storage);
        // SAFETY: a null out-pointer is the bad input under test; it is rejected, never written.
        let status = unsafe {
            kernel::IofGetDriverProxyWrapperFromEndpoint(
                extension,
                Some(erase(v1 as Op)),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status, ddi::STATUS_INVALID_PARAMETER);
    }

    #[test]
    fn image_endpoints_are_found_by_endpoint_but_not_by_id() {
        let mut storage = HostDriverObject::new();
        storage
            .control()
            .declare_image_endpoints(&[code(v1), code(other)])
            .unwrap();
        let extension = created(&mut storage);
        let (status, found) = lookup(extension, Some(erase(v1 as Op)));
        assert_eq!(status, ddi::STATUS_SUCCESS);
        let control = ExtensionControl::from_raw(extension).unwrap();
        assert_eq!(control.wrapper(EndpointKey::Ordinal(0)), found);
        assert_eq!(
            wrapper_by_id(extension, 0),
            None,
            "V1 ids and .shsept ordinals are separate"
        );
    }
}

/// `IoDriverProxyCreateHotSwappableWorkerThread`
/// (`docs/ddi.md#iodriverproxycreatehotswappableworkerthread`) with start contexts built by
/// hand: what the library's typed API makes impossible.
mod worker_thread {
    use super::*;

    /// What a raw worker routine saw: the wait status of every call.
    struct RawLog {
        calls: Mutex<Vec<ddi::NTSTATUS>>,
        stop_on: ddi::NTSTATUS,
        max_calls: usize,
    }

    impl RawLog {
        fn new(stop_on: ddi::NTSTATUS, max_calls: usize) -> &'static Self {
            Box::leak(Box::new(Self {
                calls: Mutex::new(Vec::new()),
                stop_on,
                max_calls,
            }))
        }

        fn calls(&self) -> Vec<ddi::NTSTATUS> {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        fn len(&self) -> usize {
            self.calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        }
    }

    /// # Safety
    /// `context` is a `RawLog`.
    unsafe extern "system" fn raw_worker(
        context: ddi::PVOID,
        status: ddi::NTSTATUS,
    ) -> ddi::BOOLEAN {
        // SAFETY: every test passes a leaked RawLog.
        let log = unsafe { &*context.cast::<RawLog>() };
        let mut calls = log.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.push(status);
        ddi::BOOLEAN::from(status != log.stop_on && calls.len() < log.max_calls)
    }

    /// The V1 id of `raw_worker`.
    const RAW_WORKER: u32 = 2;

    /// A new extension with `raw_worker` registered under `RAW_WORKER` (two parameters), and
    /// its wrapper.
    pub(super) fn registered_raw(
        storage: &mut HostDriverObject,
    ) -> (
        ddi::PDRIVER_PROXY_EXTENSION,
        ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE,
    ) {
        let mut entries = [ddi::DRIVER_PROXY_ENDPOINT_INFORMATION {
            Id: RAW_WORKER,
            EndpointFunction: Some(erase(
                raw_worker as ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE,
            )),
            ParameterCount: 2,
        }];
        let (extension, _) = registered(storage, &mut entries);
        let wrapper = wrapper_by_id(extension, RAW_WORKER).unwrap();
        // SAFETY: the wrapper forwards to `raw_worker`, of this type.
        let routine = unsafe {
            core::mem::transmute::<usize, ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE>(wrapper)
        };
        (extension, routine)
    }

    /// Raw `KEVENT` storage initialised by the kernel.
    pub(super) fn event(kind: ddi::EVENT_TYPE, signalled: bool) -> ddi::PKEVENT {
        let storage: &'static mut ddi::KEVENT = Box::leak(Box::new(ddi::KEVENT::zeroed()));
        let raw: ddi::PKEVENT = storage;
        // SAFETY: fresh, leaked (never moving) KEVENT storage.
        unsafe { kernel::KeInitializeEvent(raw, kind, u8::from(signalled)) };
        raw
    }

    /// `KeSetEvent`.
    fn set(event: ddi::PKEVENT) {
        // SAFETY: an initialised event.
        unsafe { kernel::KeSetEvent(event, ddi::IO_NO_INCREMENT, ddi::FALSE) };
    }

    /// A start context with room for `N` events.
    #[repr(C)]
    pub(super) struct RawStart<const N: usize> {
        pub(super) header: ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
        events: [ddi::PKEVENT; N],
    }

    fn raw_start<const N: usize>(
        routine: ddi::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE,
        context: &'static RawLog,
        events: [ddi::PKEVENT; N],
    ) -> RawStart<N> {
        RawStart {
            header: ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
                WorkerRoutine: routine,
                Context: std::ptr::from_ref(context).cast_mut().cast(),
                WaitType: ddi::WaitAny,
                WaitReason: ddi::Executive,
                WaitMode: ddi::KernelMode,
                Altertable: ddi::FALSE,
                HasTimeout: ddi::FALSE,
                Timeout: ddi::LARGE_INTEGER::from_quad(0),
                EventCount: u32::try_from(N).unwrap(),
                Events: [],
            },
            events,
        }
    }

    /// A start context valid in every field: `routine`, one signalled notification event,
    /// `WaitAny`, kernel mode. Each test of bad input breaks one thing.
    pub(super) fn valid_start(routine: ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE) -> RawStart<1> {
        raw_start(
            Some(routine),
            RawLog::new(0, 1),
            [event(ddi::NotificationEvent, true)],
        )
    }

    /// `IoDriverProxyCreateHotSwappableWorkerThread` with raw arguments.
    pub(super) fn create_worker<const N: usize>(
        extension: ddi::PDRIVER_PROXY_EXTENSION,
        handle: ddi::PHANDLE,
        start: Option<&mut RawStart<N>>,
        client_id: ddi::PCLIENT_ID,
    ) -> ddi::NTSTATUS {
        let start = start.map_or(std::ptr::null_mut(), |s| (&raw mut s.header));
        // SAFETY: every pointer is null or valid for the call; the events and context are
        // leaked.
        unsafe {
            kernel::IoDriverProxyCreateHotSwappableWorkerThread(
                extension,
                handle,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                client_id,
                start,
            )
        }
    }

    #[test]
    fn the_start_context_is_copied_so_the_caller_may_free_it_at_once() {
        let mut storage = HostDriverObject::new();
        let (extension, routine) = registered_raw(&mut storage);
        let (work, stop) = (
            event(ddi::SynchronizationEvent, false),
            event(ddi::SynchronizationEvent, false),
        );
        let log = RawLog::new(ddi::STATUS_WAIT_1, usize::MAX);
        // Boxed, so that it can be freed right after the call.
        let mut start = Box::new(raw_start(Some(routine), log, [work, stop]));
        let mut handle = std::ptr::null_mut();
        let mut client_id = ddi::CLIENT_ID {
            UniqueProcess: std::ptr::null_mut(),
            UniqueThread: std::ptr::null_mut(),
        };
        let status = create_worker(
            extension,
            &raw mut handle,
            Some(&mut *start),
            &raw mut client_id,
        );
        assert_eq!(status, ddi::STATUS_SUCCESS);
        assert_eq!(
            client_id.UniqueProcess as usize,
            std::process::id() as usize
        );
        assert!(!client_id.UniqueThread.is_null());
        // Scribble over the caller's copy and free it, as acpi.sys does right after the call.
        // SAFETY: `start` is a live allocation of its own size.
        unsafe {
            std::ptr::from_mut(&mut *start)
                .cast::<u8>()
                .write_bytes(0xCC, size_of::<RawStart<2>>());
        }
        drop(start);
        set(work);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while log.len() < 1 {
            assert!(std::time::Instant::now() < deadline, "the first call");
            std::thread::sleep(Duration::from_millis(1));
        }
        set(stop);
        let thread = control::thread(handle).expect("an open thread handle");
        assert!(
            thread.wait(Duration::from_secs(5)),
            "the thread did not end"
        );
        // SAFETY: an open handle, closed once.
        assert_eq!(unsafe { kernel::ZwClose(handle) }, ddi::STATUS_SUCCESS);
        assert_eq!(log.calls(), [ddi::STATUS_WAIT_0, ddi::STATUS_WAIT_1]);
    }

    /// Asserts that creating a worker with `start` returns `STATUS_INVALID_PARAMETER` and
    /// starts no thread.
    fn assert_invalid<const N: usize>(
        extension: ddi::PDRIVER_PROXY_EXTENSION,
        start: Option<&mut RawStart<N>>,
    ) {
        let mut handle = std::ptr::null_mut();
        assert_eq!(
            create_worker(extension, &raw mut handle, start, std::ptr::null_mut()),
            ddi::STATUS_INVALID_PARAMETER
        );
        assert!(handle.is_null(), "no handle written");
        if let Some(control) = ExtensionControl::from_raw(extension) {
            assert_eq!(control.worker_threads(), 0);
        }
    }

    #[test]
    fn a_null_start_context_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (extension, _) = registered_raw(&mut storage);
        assert_invalid::<1>(extension, None);
    }

    #[test]
    fn a_null_worker_routine_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (extension, _) = registered_raw(&mut storage);
        let mut start = raw_start(
            None,
            RawLog::new(0, 1),
            [event(ddi::NotificationEvent, false)],
        );
        assert_invalid(extension, Some(&mut start));
    }

    #[test]
    fn zero_events_return_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (extension, routine) = registered_raw(&mut storage);
        let mut start = raw_start::<0>(Some(routine), RawLog::new(0, 1), []);
        assert_invalid(extension, Some(&mut start));
    }

    #[test]
    fn more_than_64_events_return_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (extension, routine) = registered_raw(&mut storage);
        let events = std::array::from_fn::<_, 65, _>(|_| event(ddi::NotificationEvent, false));
        let mut start = raw_start(Some(routine), RawLog::new(0, 1), events);
        assert_invalid(extension, Some(&mut start));
    }

    #[test]
    fn a_routine_that_is_not_a_wrapper_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (extension, _) = registered_raw(&mut storage);
        let log = RawLog::new(0, 1);
        let mut start = raw_start(Some(raw_worker), log, [event(ddi::NotificationEvent, true)]);
        assert_invalid(extension, Some(&mut start));
        assert_eq!(log.len(), 0, "never called");
    }

    #[test]
    fn a_wrapper_of_another_extension_returns_status_invalid_parameter() {
        let (mut first, mut second) = (HostDriverObject::new(), HostDriverObject::new());
        let (_, routine) = registered_raw(&mut first);
        let (extension, _) = registered_raw(&mut second);
        assert_invalid(extension, Some(&mut valid_start(routine)));
    }

    #[test]
    fn the_wrapper_of_an_endpoint_registered_with_another_parameter_count_returns_status_invalid_parameter()
     {
        let mut storage = HostDriverObject::new();
        let (extension, _) = registered(&mut storage, &mut [entry(5, v1)]);
        let address = wrapper_by_id(extension, 5).unwrap();
        // SAFETY: only passed to the kernel, which rejects it without calling it.
        let routine = unsafe {
            core::mem::transmute::<usize, ddi::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE>(address)
        };
        assert_invalid(extension, Some(&mut valid_start(routine)));
    }

    #[test]
    fn an_event_that_is_not_initialised_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (extension, routine) = registered_raw(&mut storage);
        let fresh: &'static mut ddi::KEVENT = Box::leak(Box::new(ddi::KEVENT::zeroed()));
        let mut start = raw_start(
            Some(routine),
            RawLog::new(0, 1),
            [event(ddi::NotificationEvent, true), fresh],
        );
        assert_invalid(extension, Some(&mut start));
        let mut start = raw_start(Some(routine), RawLog::new(0, 1), [std::ptr::null_mut()]);
        assert_invalid(extension, Some(&mut start));
    }

    #[test]
    fn an_unknown_wait_type_or_wait_mode_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (extension, routine) = registered_raw(&mut storage);
        let mut start = valid_start(routine);
        start.header.WaitType = 2;
        assert_invalid(extension, Some(&mut start));
        start.header.WaitType = ddi::WaitAny;
        start.header.WaitMode = 2;
        assert_invalid(extension, Some(&mut start));
    }

    #[test]
    fn a_null_extension_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (_, routine) = registered_raw(&mut storage);
        assert_invalid(std::ptr::null_mut(), Some(&mut valid_start(routine)));
    }

    #[test]
    fn a_null_thread_handle_pointer_returns_status_invalid_parameter() {
        let mut storage = HostDriverObject::new();
        let (extension, routine) = registered_raw(&mut storage);
        let log = RawLog::new(0, 1);
        let mut start = raw_start(Some(routine), log, [event(ddi::NotificationEvent, true)]);
        let status = create_worker(
            extension,
            std::ptr::null_mut(),
            Some(&mut start),
            std::ptr::null_mut(),
        );
        assert_eq!(status, ddi::STATUS_INVALID_PARAMETER);
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(log.len(), 0, "no thread ran");
    }
}

/// The system-wide switch (`docs/ddi.md#concepts`: "configured and not globally disabled"),
/// process-wide state: switched off in a child process of its own.
mod system_switch {
    use super::worker_thread::{create_worker, registered_raw, valid_start};
    use super::*;

    const TEST: &str = "system_switch::switched_off_features_creation_and_worker_threads_say_so_while_existing_wrappers_keep_working";

    #[test]
    fn switched_off_features_creation_and_worker_threads_say_so_while_existing_wrappers_keep_working()
     {
        match common::child_scenario().as_deref() {
            None => {
                let output = common::run_child(TEST, "switched off");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(
                    String::from_utf8_lossy(&output.stdout).contains("1 passed"),
                    "the child ran this test"
                );
                assert!(control::system_enabled(), "only the child switched it off");
            }
            Some("switched off") => {
                let mut storage = HostDriverObject::new();
                let (extension, routine) = registered_raw(&mut storage);
                let mut other_driver = HostDriverObject::new();
                let (ops, _) = registered(&mut other_driver, &mut [entry(1, v1)]);
                control::set_system_enabled(false);
                assert!(!control::system_enabled());
                assert_eq!(features(std::ptr::null_mut(), 0xFFFF_FFFF), 0);
                let mut fresh = HostDriverObject::new();
                assert_eq!(features(fresh.as_raw(), 0), 0);
                assert_eq!(
                    create(fresh.as_raw(), 0),
                    (ddi::STATUS_NOT_SUPPORTED, SENTINEL)
                );
                assert!(owned(&mut fresh).is_none(), "nothing created");
                let mut handle = std::ptr::null_mut();
                let status = create_worker(
                    extension,
                    &raw mut handle,
                    Some(&mut valid_start(routine)),
                    std::ptr::null_mut(),
                );
                assert_eq!(status, ddi::STATUS_NOT_SUPPORTED);
                assert!(handle.is_null());
                let wrapper = wrapper_by_id(ops, 1).expect("lookups still work");
                // SAFETY: the wrapper of an `Op` endpoint.
                let call = unsafe { std::mem::transmute::<usize, Op>(wrapper) };
                assert_eq!(call(41), 42, "an existing wrapper keeps working");
            }
            Some(_) => {}
        }
    }
}
