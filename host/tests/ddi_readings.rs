//! Two readings of the same DDI compared: the library's bindings (`driver_proxy::sys`) and the
//! host kernel's own transcription (`driver_proxy_host::ddi`), both written from
//! `docs/ddi.md` and Microsoft Learn, each with its own layout assertions. The host implements
//! its routines with its reading and the library calls them with its own, so a transcription
//! error on one side would pass every behaviour test that only ever sees one reading; here it
//! is a disagreement:
//!
//! * size, alignment and every field offset of each DriverProxy structure and union (and of
//!   the general NT structures both declare), and the start context's size for every event
//!   count;
//! * the value of every status code and enum constant both name, and the meaning of the
//!   feature flags' `Enabled` bit;
//! * the export names, and that each name resolves, through the library's static import of
//!   `MmGetSystemRoutineAddress`, to the host routine of that name;
//! * each routine's parameter count, parameter sizes and return size.

#![allow(non_snake_case)]

use std::collections::BTreeSet;
use std::mem::{align_of, offset_of, size_of};

use driver_proxy::sys;
use driver_proxy_host::{ddi, kernel};

/// Asserts that the type `$t` has the same size and alignment in both readings.
macro_rules! same_layout {
    ($($t:ident),* $(,)?) => {
        $(
            assert_eq!(
                (size_of::<sys::$t>(), align_of::<sys::$t>()),
                (size_of::<ddi::$t>(), align_of::<ddi::$t>()),
                concat!("size and alignment of ", stringify!($t))
            );
        )*
    };
}

/// Asserts that each field of `$t` is at the same offset in both readings.
macro_rules! same_offsets {
    ($t:ident { $($field:ident),* $(,)? }) => {
        $(
            assert_eq!(
                offset_of!(sys::$t, $field),
                offset_of!(ddi::$t, $field),
                concat!("offset of ", stringify!($t), "::", stringify!($field))
            );
        )*
    };
}

/// Asserts that each constant has the same size and value in both readings.
macro_rules! same_values {
    ($($name:ident),* $(,)?) => {
        $(
            assert_eq!(
                size_of_val(&sys::$name),
                size_of_val(&ddi::$name),
                concat!("type size of ", stringify!($name))
            );
            assert_eq!(
                i128::from(sys::$name),
                i128::from(ddi::$name),
                concat!("value of ", stringify!($name))
            );
        )*
    };
}

#[test]
fn every_driver_proxy_structure_and_union_has_the_same_layout() {
    same_layout!(
        DRIVER_PROXY_FEATURE_FLAGS,
        DRIVER_PROXY_EXTENSION_CREATION_FLAGS,
        DRIVER_PROXY_ENDPOINT_INFORMATION,
        DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
        PDRIVER_PROXY_EXTENSION,
        PDRIVER_PROXY_ENDPOINT_FUNCTION,
        PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION,
        PDRIVER_PROXY_ENDPOINT_INFORMATION,
        DRIVER_PROXY_ENDPOINT_FUNCTION_ID,
        DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
        PDRIVER_PROXY_REGISTER_CALLBACK,
        PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE,
        PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    );
    same_offsets!(DRIVER_PROXY_FEATURE_FLAGS { AsUlong });
    same_offsets!(DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong });
    same_offsets!(DRIVER_PROXY_ENDPOINT_INFORMATION {
        Id,
        EndpointFunction,
        ParameterCount
    });
    same_offsets!(DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
        WorkerRoutine,
        Context,
        WaitType,
        WaitReason,
        WaitMode,
        Altertable,
        HasTimeout,
        Timeout,
        EventCount,
        Events,
    });
    for events in 0..=64 {
        assert_eq!(
            sys::worker_start_context_size(events),
            ddi::start_context_size(events),
            "a start context with {events} events"
        );
    }
    assert_eq!(
        sys::WORKER_START_CONTEXT_EVENTS_OFFSET,
        ddi::start_context_size(0)
    );
}

#[test]
fn the_general_nt_structures_both_declare_have_the_same_layout() {
    same_layout!(
        NTSTATUS,
        ULONG,
        LONG,
        USHORT,
        BOOLEAN,
        CCHAR,
        PVOID,
        HANDLE,
        PHANDLE,
        ACCESS_MASK,
        WCHAR,
        LARGE_INTEGER,
        UNICODE_STRING,
        PUNICODE_STRING,
        PDRIVER_OBJECT,
        KEVENT,
        PKEVENT,
        OBJECT_ATTRIBUTES,
        POBJECT_ATTRIBUTES,
        CLIENT_ID,
        PCLIENT_ID,
        WAIT_TYPE,
        KWAIT_REASON,
        KPROCESSOR_MODE,
        EVENT_TYPE,
        KPRIORITY,
        POOL_FLAGS,
        POOL_TYPE,
        PKSTART_ROUTINE,
    );
    same_offsets!(UNICODE_STRING {
        Length,
        MaximumLength,
        Buffer
    });
    same_offsets!(LARGE_INTEGER { QuadPart });
    same_offsets!(OBJECT_ATTRIBUTES {
        Length,
        RootDirectory,
        ObjectName,
        Attributes,
        SecurityDescriptor,
        SecurityQualityOfService,
    });
    same_offsets!(CLIENT_ID {
        UniqueProcess,
        UniqueThread
    });
}

#[test]
fn every_status_code_both_name_has_the_same_value() {
    let library: Vec<(&str, i32)> = sys::KNOWN_STATUS_CODES
        .iter()
        .map(|&(code, name)| (name, code))
        .chain([("STATUS_WAIT_0", sys::STATUS_WAIT_0)])
        .collect();
    let mut compared = BTreeSet::new();
    for &(name, host) in ddi::STATUS_CODES {
        if let Some(&(_, value)) = library.iter().find(|(n, _)| *n == name) {
            assert_eq!(
                value, host,
                "{name}: the library says {value:#x}, the host {host:#x}"
            );
            compared.insert(name);
        }
    }
    // Every code of `docs/ddi.md#status-codes` is named by both.
    for name in [
        "STATUS_SUCCESS",
        "STATUS_WAIT_0",
        "STATUS_WAIT_1",
        "STATUS_WAIT_63",
        "STATUS_USER_APC",
        "STATUS_ALERTED",
        "STATUS_TIMEOUT",
        "STATUS_UNSUCCESSFUL",
        "STATUS_INVALID_PARAMETER",
        "STATUS_INSUFFICIENT_RESOURCES",
        "STATUS_NOT_SUPPORTED",
        "STATUS_INVALID_PARAMETER_3",
        "STATUS_NOT_FOUND",
        "STATUS_DRIVER_ENTRYPOINT_NOT_FOUND",
        "STATUS_DRIVER_BLOCKED",
        "STATUS_RESOURCE_IN_USE",
    ] {
        assert!(compared.contains(name), "{name} is not named by both");
    }
    for index in 0..64 {
        assert_eq!(
            ddi::status_wait(index),
            sys::STATUS_WAIT_0 + i32::try_from(index).unwrap()
        );
    }
}

#[test]
fn every_enum_constant_both_name_has_the_same_value() {
    same_values!(
        DriverProxyRegisterCallbackPreProcess,
        DriverProxyRegisterCallbackProxyStalled,
        DriverProxyRegisterCallbackPostProcess,
        DriverProxyRegisterCallbackMax,
        WaitAll,
        WaitAny,
        Executive,
        UserRequest,
        KernelMode,
        UserMode,
        NotificationEvent,
        SynchronizationEvent,
        NonPagedPoolNx,
        POOL_FLAG_NON_PAGED,
        OBJ_KERNEL_HANDLE,
        IO_NO_INCREMENT,
        MAXIMUM_WAIT_OBJECTS,
        THREAD_WAIT_OBJECTS,
        TRUE,
        FALSE,
    );
}

#[test]
fn the_feature_flags_enabled_bit_means_the_same_in_both() {
    assert_eq!(
        sys::DRIVER_PROXY_FEATURE_FLAGS::ENABLED,
        ddi::DRIVER_PROXY_FEATURE_FLAGS_BITS::ENABLED_MASK
    );
    for value in [0, 1, 2, 3, 0xFFFF_FFFE, u32::MAX] {
        let library = sys::DRIVER_PROXY_FEATURE_FLAGS { AsUlong: value };
        let host = ddi::DRIVER_PROXY_FEATURE_FLAGS { AsUlong: value };
        // SAFETY: every member of the union is the same 4 bytes.
        let bits = unsafe { host.Bits };
        assert_eq!(library.Enabled(), bits.Enabled() == 1, "{value:#x}");
    }
}

/// The library's export names, and the host's.
fn names() -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
    let library = [
        sys::names::IO_GET_DRIVER_PROXY_FEATURES,
        sys::names::IO_CREATE_DRIVER_PROXY_EXTENSION,
        sys::names::IO_GET_DRIVER_PROXY_EXTENSION_FROM_DRIVER_OBJECT,
        sys::names::IO_REGISTER_DRIVER_PROXY_ENDPOINTS,
        sys::names::IO_GET_DRIVER_PROXY_ENDPOINT_WRAPPER,
        sys::names::IOF_GET_DRIVER_PROXY_WRAPPER_FROM_ENDPOINT,
        sys::names::IO_DRIVER_PROXY_CREATE_HOT_SWAPPABLE_WORKER_THREAD,
        sys::kernel_names::KE_INITIALIZE_EVENT,
        sys::kernel_names::KE_SET_EVENT,
        sys::kernel_names::KE_CLEAR_EVENT,
        sys::kernel_names::KE_RESET_EVENT,
        sys::kernel_names::KE_READ_STATE_EVENT,
        sys::kernel_names::KE_WAIT_FOR_MULTIPLE_OBJECTS,
        sys::kernel_names::PS_CREATE_SYSTEM_THREAD,
        sys::kernel_names::ZW_CLOSE,
        sys::kernel_names::ZW_WAIT_FOR_SINGLE_OBJECT,
        sys::kernel_names::IO_ALLOCATE_DRIVER_OBJECT_EXTENSION,
        sys::kernel_names::IO_GET_DRIVER_OBJECT_EXTENSION,
        sys::kernel_names::EX_ALLOCATE_POOL2,
        sys::kernel_names::EX_ALLOCATE_POOL_WITH_TAG,
        sys::kernel_names::EX_FREE_POOL_WITH_TAG,
    ];
    for name in library {
        let utf16: Vec<u16> = name.ascii.encode_utf16().collect();
        assert_eq!(name.utf16, utf16, "{}", name.ascii);
    }
    let host = ddi::names::DRIVER_PROXY
        .into_iter()
        .chain(ddi::names::KERNEL)
        .collect();
    (library.iter().map(|name| name.ascii).collect(), host)
}

#[test]
fn the_export_names_are_the_same() {
    let (library, host) = names();
    assert_eq!(library, host);
    assert_eq!(library.len(), 21, "no name twice");
}

/// The library's way of finding a routine: its `MmGetSystemRoutineAddress` (a static import,
/// which links to the host's export) with the name in a `UNICODE_STRING` of its reading.
fn resolve(name: &str) -> usize {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let bytes = u16::try_from(units.len() * 2).unwrap();
    let mut string = sys::UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: units.as_mut_ptr(),
    };
    // SAFETY: a valid counted string, alive for the call.
    unsafe { sys::MmGetSystemRoutineAddress(&raw mut string) as usize }
}

/// The parameter and return sizes of a function-pointer type.
trait Signature {
    /// `size_of` of each parameter, in order.
    const PARAMETERS: &'static [usize];
    /// `size_of` of the return type (0 for `VOID`).
    const RETURN: usize;
}

macro_rules! signature {
    ($($a:ident),*) => {
        impl<R, $($a),*> Signature for unsafe extern "system" fn($($a),*) -> R {
            const PARAMETERS: &'static [usize] = &[$(size_of::<$a>()),*];
            const RETURN: usize = size_of::<R>();
        }
    };
}
signature!();
signature!(A1);
signature!(A1, A2);
signature!(A1, A2, A3);
signature!(A1, A2, A3, A4);
signature!(A1, A2, A3, A4, A5);
signature!(A1, A2, A3, A4, A5, A6);
signature!(A1, A2, A3, A4, A5, A6, A7);
signature!(A1, A2, A3, A4, A5, A6, A7, A8);

/// The signature of `F`: (parameter sizes, return size).
fn signature<F: Signature>() -> (&'static [usize], usize) {
    (F::PARAMETERS, F::RETURN)
}

/// The signature of the type of `f`.
fn signature_of<F: Signature>(_: F) -> (&'static [usize], usize) {
    signature::<F>()
}

/// For each routine: both readings' `PFN_` types have the same parameter count, parameter
/// sizes and return size; the host's export has its reading's type (checked at compile time
/// in `host/src/kernel/`, asserted again here by the coercion); and the library, resolving the
/// routine's name its own way, gets the host's export.
macro_rules! same_routines {
    ($($name:ident: $pfn:ident),* $(,)?) => {{
        let mut checked = BTreeSet::new();
        $(
            assert_eq!(
                signature::<sys::$pfn>(),
                signature::<ddi::$pfn>(),
                concat!("(parameter sizes, return size) of ", stringify!($name))
            );
            let export: ddi::$pfn = kernel::$name;
            assert_eq!(
                resolve(stringify!($name)),
                export as usize,
                concat!("the library finds the host's ", stringify!($name))
            );
            checked.insert(stringify!($name));
        )*
        checked
    }};
}

#[test]
fn every_routine_has_the_same_parameters_and_return_in_both_and_resolves_to_the_host_export() {
    let checked = same_routines!(
        IoGetDriverProxyFeatures: PFN_IoGetDriverProxyFeatures,
        IoCreateDriverProxyExtension: PFN_IoCreateDriverProxyExtension,
        IoGetDriverProxyExtensionFromDriverObject: PFN_IoGetDriverProxyExtensionFromDriverObject,
        IoRegisterDriverProxyEndpoints: PFN_IoRegisterDriverProxyEndpoints,
        IoGetDriverProxyEndpointWrapper: PFN_IoGetDriverProxyEndpointWrapper,
        IofGetDriverProxyWrapperFromEndpoint: PFN_IofGetDriverProxyWrapperFromEndpoint,
        IoDriverProxyCreateHotSwappableWorkerThread: PFN_IoDriverProxyCreateHotSwappableWorkerThread,
        KeInitializeEvent: PFN_KeInitializeEvent,
        KeSetEvent: PFN_KeSetEvent,
        KeClearEvent: PFN_KeClearEvent,
        KeResetEvent: PFN_KeResetEvent,
        KeReadStateEvent: PFN_KeReadStateEvent,
        KeWaitForMultipleObjects: PFN_KeWaitForMultipleObjects,
        PsCreateSystemThread: PFN_PsCreateSystemThread,
        ZwClose: PFN_ZwClose,
        ZwWaitForSingleObject: PFN_ZwWaitForSingleObject,
        IoAllocateDriverObjectExtension: PFN_IoAllocateDriverObjectExtension,
        IoGetDriverObjectExtension: PFN_IoGetDriverObjectExtension,
        ExAllocatePool2: PFN_ExAllocatePool2,
        ExAllocatePoolWithTag: PFN_ExAllocatePoolWithTag,
        ExFreePoolWithTag: PFN_ExFreePoolWithTag,
    );
    assert_eq!(checked, names().1, "every exported name is compared");
    // The library's one static import against the host's reading of it.
    assert_eq!(
        signature_of(sys::MmGetSystemRoutineAddress as unsafe extern "system" fn(_) -> _),
        signature::<ddi::PFN_MmGetSystemRoutineAddress>()
    );
    assert_eq!(
        resolve(ddi::names::MM_GET_SYSTEM_ROUTINE_ADDRESS),
        driver_proxy_host::exports::MmGetSystemRoutineAddress as *const () as usize
    );
    // Spot checks of the trait itself.
    assert_eq!(
        signature::<ddi::PFN_IoDriverProxyCreateHotSwappableWorkerThread>(),
        (&[8, 8, 4, 8, 8, 8, 8][..], 4)
    );
    assert_eq!(
        signature::<ddi::PFN_IoGetDriverProxyFeatures>(),
        (&[8, 8][..], 0)
    );
}
