//! Lookups of wrappers: by id (`IoGetDriverProxyEndpointWrapper`, V1,
//! `docs/ddi.md#iogetdriverproxyendpointwrapper`) and by endpoint
//! (`IofGetDriverProxyWrapperFromEndpoint`, V2, `docs/ddi.md#iofgetdriverproxywrapperfromendpoint`
//! and the macro, `#iogetdriverproxywrapperfromendpoint`), for endpoints
//! registered by V1 and for endpoints of the image's `.shsept` list, through the library
//! (`HotSwap::wrapper`, `HotSwap::wrap`); and the control swap to a new image that the image
//! loader uses to hot-swap a `.sys` image. The raw routines' answers (NULL arguments, the
//! status and `*Wrapper` of a failed lookup) are tested in `host/tests/kernel_proxy.rs`.

mod common;

use driver_proxy::{
    Endpoint, EndpointEntry, EndpointId, EndpointTable, LookupError, MAX_ENDPOINTS, NtStatus,
    Phase, WrapError, sys,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{self, EndpointKey};

use common::{extension, hotswap, image_hotswap};

type Op = extern "system" fn(u64) -> u64;
extern "system" fn v1(x: u64) -> u64 {
    x + 1
}
extern "system" fn v2(x: u64) -> u64 {
    x + 2
}
extern "system" fn image_a(x: u64) -> u64 {
    x * 10
}
extern "system" fn image_a_new(x: u64) -> u64 {
    x * 20
}
extern "system" fn image_b(x: u64) -> u64 {
    x * 30
}
extern "system" fn never_registered(x: u64) -> u64 {
    x
}

const A: EndpointId<Op> = EndpointId::new(1);
const B: EndpointId<Op> = EndpointId::new(2);

fn code(f: Op) -> usize {
    f.address()
}

#[test]
fn lookup_by_id_returns_the_wrapper_registered_under_it() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t = EndpointTable::new([
        EndpointEntry::new(A, v1 as Op),
        EndpointEntry::new(B, v2 as Op),
    ])
    .unwrap();
    hotswap.register(&t, None).unwrap();
    let a = hotswap.wrapper(&t, A).unwrap();
    assert_eq!(
        hotswap.wrapper(&t, A).unwrap(),
        a,
        "the same wrapper every time"
    );
    assert_eq!(
        Some(a.address()),
        extension(&hotswap).wrapper(EndpointKey::Id(1))
    );
    assert_eq!(
        (a.get()(0), hotswap.wrapper(&t, B).unwrap().get()(0)),
        (1, 2)
    );
}

#[test]
fn lookup_by_an_id_never_registered_returns_null() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t = EndpointTable::new([EndpointEntry::new(A, v1 as Op)]).unwrap();
    assert_eq!(hotswap.wrapper(&t, A), Err(LookupError::NotRegistered(1)));
    assert_eq!(extension(&hotswap).wrapper(EndpointKey::Id(1)), None);
}

#[test]
fn lookup_by_endpoint_finds_an_endpoint_registered_by_v1_with_the_same_wrapper_as_by_id() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t = EndpointTable::new([EndpointEntry::new(A, v1 as Op)]).unwrap();
    hotswap.register(&t, None).unwrap();
    let by_endpoint = hotswap.wrap(v1 as Op).unwrap();
    assert_eq!(by_endpoint, hotswap.wrapper(&t, A).unwrap());
    assert_ne!(by_endpoint.address(), code(v1));
}

#[test]
fn after_a_swap_lookup_by_endpoint_finds_the_new_implementation_and_not_the_retired_one() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t1 = EndpointTable::new([EndpointEntry::new(A, v1 as Op)]).unwrap();
    hotswap.register(&t1, None).unwrap();
    let wrapper = hotswap.wrap(v1 as Op).unwrap();
    let t2 = EndpointTable::new([EndpointEntry::new(A, v2 as Op)]).unwrap();
    hotswap.register(&t2, None).unwrap();
    assert_eq!(hotswap.wrap(v2 as Op).unwrap(), wrapper);
    assert_eq!(hotswap.wrap(v1 as Op), Err(WrapError::NotAnEndpoint));
}

#[test]
fn an_endpoint_never_registered_is_not_an_endpoint() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let error = hotswap.wrap(never_registered as Op).unwrap_err();
    assert_eq!(error, WrapError::NotAnEndpoint);
    assert_eq!(NtStatus::from(error), NtStatus::NOT_FOUND);
}

#[test]
fn a_wrapper_is_not_itself_an_endpoint() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t = EndpointTable::new([EndpointEntry::new(A, v1 as Op)]).unwrap();
    hotswap.register(&t, None).unwrap();
    let wrapper = hotswap.wrapper(&t, A).unwrap();
    assert_eq!(hotswap.wrap(wrapper.get()), Err(WrapError::NotAnEndpoint));
}

#[test]
fn lookups_are_per_extension() {
    let mut first = HostDriverObject::new();
    let mut second = HostDriverObject::new();
    let (one, two) = (hotswap(&mut first), hotswap(&mut second));
    let t = EndpointTable::new([EndpointEntry::new(A, v1 as Op)]).unwrap();
    one.register(&t, None).unwrap();
    assert!(one.wrap(v1 as Op).is_ok());
    assert_eq!(two.wrap(v1 as Op), Err(WrapError::NotAnEndpoint));
    assert_eq!(two.wrapper(&t, A), Err(LookupError::NotRegistered(1)));
}

#[test]
fn image_endpoints_are_found_by_endpoint_but_not_by_id() {
    let mut storage = HostDriverObject::new();
    let hotswap = image_hotswap(&mut storage, &[code(image_a), code(image_b)]);
    let a = hotswap.wrap(image_a as Op).unwrap();
    assert_eq!(a.get()(2), 20);
    let control = extension(&hotswap);
    assert_eq!(control.wrapper(EndpointKey::Ordinal(0)), Some(a.address()));
    assert_eq!(
        control.wrapper(EndpointKey::Id(0)),
        None,
        "V1 ids and .shsept ordinals are separate"
    );
}

#[test]
fn endpoints_declared_on_a_live_extension_are_wrapped_at_once() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    assert_eq!(hotswap.wrap(image_b as Op), Err(WrapError::NotAnEndpoint));
    let control = storage.control();
    control.declare_image_endpoints(&[code(image_b)]).unwrap();
    assert_eq!(hotswap.wrap(image_b as Op).unwrap().get()(1), 30);
    assert_eq!(
        control.declare_image_endpoints(&[code(image_b)]),
        Err(sys::STATUS_INVALID_PARAMETER),
        "declared twice"
    );
    assert_eq!(
        control.declare_image_endpoints(&[0]),
        Err(sys::STATUS_INVALID_PARAMETER)
    );
    assert_eq!(
        control.declare_image_endpoints(&[]),
        Err(sys::STATUS_INVALID_PARAMETER)
    );
}

#[test]
fn a_control_swap_to_a_new_image_repoints_by_ordinal_and_id_with_the_phased_protocol() {
    let mut storage = HostDriverObject::new();
    let hotswap = image_hotswap(&mut storage, &[code(image_a), code(image_b)]);
    let t = EndpointTable::new([EndpointEntry::new(A, v1 as Op)]).unwrap();
    hotswap.register(&t, None).unwrap();
    let (a, by_id) = (
        hotswap.wrap(image_a as Op).unwrap(),
        hotswap.wrapper(&t, A).unwrap(),
    );
    let control = extension(&hotswap);
    let mut phases = Vec::new();
    let mut callback = |phase: control::Phase| {
        phases.push((phase, control.is_stalled(), control.in_flight()));
        sys::STATUS_SUCCESS
    };
    // From another thread: swaps can be triggered from anywhere.
    let swapper_control = control.clone();
    let report = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                swapper_control.swap(
                    &[
                        (EndpointKey::Ordinal(0), code(image_a_new)),
                        (EndpointKey::Id(1), code(v2)),
                    ],
                    Some(&mut callback),
                )
            })
            .join()
            .unwrap()
    })
    .unwrap();
    assert_eq!(
        phases,
        [
            (control::Phase::PreProcess, false, 0),
            (control::Phase::ProxyStalled, true, 0),
            (control::Phase::PostProcess, false, 0)
        ]
    );
    assert_eq!(report.generation, control.generation());
    assert_eq!((a.get()(1), by_id.get()(1)), (20, 3));
    assert_eq!(hotswap.wrap(image_a_new as Op).unwrap(), a);
    assert_eq!(hotswap.wrap(image_a as Op), Err(WrapError::NotAnEndpoint));
    assert_eq!(
        hotswap.wrap(image_b as Op).unwrap().get()(1),
        30,
        "untouched"
    );
}

#[test]
fn a_control_swap_with_a_bad_change_returns_status_invalid_parameter_without_any_phase() {
    let mut storage = HostDriverObject::new();
    let hotswap = image_hotswap(&mut storage, &[code(image_a)]);
    let control = extension(&hotswap);
    let mut delivered = 0;
    let mut callback = |_: control::Phase| {
        delivered += 1;
        sys::STATUS_SUCCESS
    };
    for changes in [
        &[][..],
        &[(EndpointKey::Ordinal(1), code(image_b))][..],
        &[(EndpointKey::Id(1), code(image_b))][..],
        &[(EndpointKey::Ordinal(0), 0)][..],
        &[
            (EndpointKey::Ordinal(0), code(image_b)),
            (EndpointKey::Ordinal(0), code(image_a_new)),
        ][..],
    ] {
        assert_eq!(
            control.swap(changes, Some(&mut callback)).unwrap_err(),
            sys::STATUS_INVALID_PARAMETER,
            "{changes:?}"
        );
    }
    assert_eq!(delivered, 0);
    assert_eq!(
        control.implementation(EndpointKey::Ordinal(0)),
        Some(code(image_a))
    );
}

#[test]
fn a_control_swap_whose_callback_fails_is_rolled_back_with_the_callbacks_status() {
    let mut storage = HostDriverObject::new();
    let hotswap = image_hotswap(&mut storage, &[code(image_a)]);
    let control = extension(&hotswap);
    let mut callback = |phase: control::Phase| {
        if phase == control::Phase::ProxyStalled {
            sys::STATUS_INSUFFICIENT_RESOURCES
        } else {
            sys::STATUS_SUCCESS
        }
    };
    assert_eq!(
        control
            .swap(
                &[(EndpointKey::Ordinal(0), code(image_a_new))],
                Some(&mut callback)
            )
            .unwrap_err(),
        sys::STATUS_INSUFFICIENT_RESOURCES
    );
    assert_eq!(hotswap.wrap(image_a as Op).unwrap().get()(1), 10);
}

/// The first V2 lookup of an address writes the endpoint record, which a registration in
/// progress holds: it is refused at once (a lookup never waits). Lookups the record already
/// answers (V1 endpoints, addresses handed out before) need no writer and succeed.
#[test]
fn a_first_lookup_by_endpoint_during_a_registration_is_busy_and_known_endpoints_are_not() {
    let mut storage = HostDriverObject::new();
    let hotswap = image_hotswap(&mut storage, &[code(image_a), code(image_b)]);
    let t = EndpointTable::new([EndpointEntry::new(A, v1 as Op)]).unwrap();
    hotswap.register(&t, None).unwrap();
    let a = hotswap.wrap(image_a as Op).unwrap();
    let mut seen = Vec::new();
    let mut callback = |phase: Phase| {
        seen.push((
            phase,
            hotswap.wrap(image_a as Op),
            hotswap.wrap(image_b as Op),
        ));
        Ok(())
    };
    let t2 = EndpointTable::new([EndpointEntry::new(B, v2 as Op)]).unwrap();
    hotswap.register(&t2, Some(&mut callback)).unwrap();
    assert_eq!(seen.len(), 3, "one look per phase");
    for (phase, known, first) in seen {
        assert_eq!(known, Ok(a), "{phase:?}");
        assert_eq!(first, Err(WrapError::Busy), "{phase:?}");
    }
    assert_eq!(NtStatus::from(WrapError::Busy), NtStatus::DEVICE_BUSY);
    assert_eq!(
        hotswap.wrap(image_b as Op).unwrap().get()(1),
        30,
        "free again"
    );
}

/// Every V2 address handed out takes an entry of the endpoint record, like a V1 id.
#[test]
fn a_lookup_by_endpoint_when_the_endpoint_record_is_full_is_too_many_endpoints() {
    let mut storage = HostDriverObject::new();
    let hotswap = image_hotswap(&mut storage, &[code(image_a)]);
    let full: EndpointTable<MAX_ENDPOINTS> = EndpointTable::new(std::array::from_fn(|i| {
        EndpointEntry::new(EndpointId::<Op>::new(u32::try_from(i).unwrap()), v1 as Op)
    }))
    .unwrap();
    hotswap.register(&full, None).unwrap();
    assert!(
        hotswap.wrap(v1 as Op).is_ok(),
        "a V1 endpoint takes no new entry"
    );
    let error = hotswap.wrap(image_a as Op).unwrap_err();
    assert_eq!(error, WrapError::TooManyEndpoints);
    assert_eq!(NtStatus::from(error), NtStatus::INSUFFICIENT_RESOURCES);
}

/// A lookup by id is checked against what this image registered, not only against the table
/// passed in (`tests/soundness.rs` has the cases where the table lies).
#[test]
fn lookup_by_id_with_another_type_than_registered_is_a_type_mismatch_and_null_for_the_kernel() {
    type Other = extern "system" fn(u32) -> u64;
    extern "system" fn widen(x: u32) -> u64 {
        u64::from(x)
    }
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t = EndpointTable::new([EndpointEntry::new(A, v1 as Op)]).unwrap();
    hotswap.register(&t, None).unwrap();
    let other = EndpointTable::new([EndpointEntry::new(
        EndpointId::<Other>::new(1),
        widen as Other,
    )])
    .unwrap();
    let error = hotswap
        .wrapper(&other, EndpointId::<Other>::new(1))
        .unwrap_err();
    assert_eq!(error, LookupError::TypeMismatch(1));
    assert_eq!(NtStatus::from(error), NtStatus::INVALID_PARAMETER);
    assert_eq!(
        hotswap.wrapper(&t, EndpointId::<Other>::new(1)),
        Err(LookupError::TypeMismatch(1)),
        "the table says so too"
    );
}
