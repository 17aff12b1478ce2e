//! `IoRegisterDriverProxyEndpoints` (V1, `docs/ddi.md#ioregisterdriverproxyendpoints`, and the
//! sections it links: endpoint information, phases, phased callback): the first
//! registration makes wrappers; registering existing ids again is the hot swap, with the
//! phased callback, the drain and the rollback; every documented failure changes nothing. Through
//! the library (`HotSwap::register`, which always passes its own phased callback); the raw
//! routine's answers to arguments the library never passes are tested in
//! `host/tests/kernel_proxy.rs`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, HotSwap, LookupError, MAX_ENDPOINTS, NtStatus, Phase,
    RegisterError, WrapError,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control::{EndpointKey, ExtensionControl};

use common::{extension, hotswap, leak, wait_until};

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

const A: EndpointId<Op> = EndpointId::new(1);
const B: EndpointId<Op> = EndpointId::new(2);
const C: EndpointId<Op> = EndpointId::new(3);

fn table<const N: usize>(entries: [EndpointEntry; N]) -> EndpointTable<N> {
    EndpointTable::new(entries).unwrap()
}

/// A hot-swap handle with `A` = `v1` registered, and its extension's control.
fn registered_v1(storage: &mut HostDriverObject) -> (HotSwap, ExtensionControl) {
    let hotswap = hotswap(storage);
    hotswap
        .register(&table([EndpointEntry::new(A, v1 as Op)]), None)
        .unwrap();
    let control = extension(&hotswap);
    (hotswap, control)
}

/// Asserts that id 1 (`A`) is still implemented by `v1`: the failed call changed nothing.
fn assert_a_is_still_v1(control: &ExtensionControl) {
    assert_eq!(
        control.implementation(EndpointKey::Id(1)),
        Some(v1 as Op as usize),
        "A is still implemented by v1"
    );
}

#[test]
fn the_first_registration_makes_one_distinct_wrapper_per_id_forwarding_to_its_endpoint() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t = table([
        EndpointEntry::new(A, v1 as Op),
        EndpointEntry::new(B, other as Op),
    ]);
    hotswap.register(&t, None).unwrap();
    let (a, b) = (
        hotswap.wrapper(&t, A).unwrap(),
        hotswap.wrapper(&t, B).unwrap(),
    );
    assert_ne!(
        a.address(),
        v1 as Op as usize,
        "a wrapper, not the endpoint"
    );
    assert_ne!(a.address(), b.address());
    assert_eq!((a.get()(1), b.get()(1)), (2, 101));
    let control = extension(&hotswap);
    assert_eq!(control.endpoint_count(), 2);
    assert_eq!(
        control.swaps_completed(),
        1,
        "the library always passes its own phased callback, so the kernel runs the protocol"
    );
}

#[test]
fn a_first_registration_with_a_callback_delivers_the_three_phases_in_order() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let mut phases = Vec::new();
    let mut callback = |phase: Phase| {
        phases.push(phase);
        Ok(())
    };
    hotswap
        .register(
            &table([EndpointEntry::new(A, v1 as Op)]),
            Some(&mut callback),
        )
        .unwrap();
    assert_eq!(
        phases,
        [Phase::PreProcess, Phase::ProxyStalled, Phase::PostProcess]
    );
}

#[test]
fn registering_an_existing_id_again_replaces_its_implementation_behind_the_same_wrapper() {
    let mut storage = HostDriverObject::new();
    let (hotswap, control) = registered_v1(&mut storage);
    let t1 = table([EndpointEntry::new(A, v1 as Op)]);
    let before = hotswap.wrapper(&t1, A).unwrap();
    assert_eq!(before.get()(40), 41);
    let swaps = control.swaps_completed();
    let t2 = table([EndpointEntry::new(A, v2 as Op)]);
    hotswap.register(&t2, None).unwrap();
    let after = hotswap.wrapper(&t2, A).unwrap();
    assert_eq!(after.address(), before.address(), "the wrapper stays valid");
    assert_eq!(before.get()(40), 42, "and now forwards to v2");
    assert_eq!(
        control.implementation(EndpointKey::Id(1)),
        Some(v2 as Op as usize)
    );
    assert_eq!(control.swaps_completed(), swaps + 1);
    assert_eq!(hotswap.wrap(v2 as Op), Ok(before));
    assert_eq!(hotswap.wrap(v1 as Op), Err(WrapError::NotAnEndpoint));
}

#[test]
fn the_phased_callback_sees_pre_process_then_proxy_stalled_with_no_call_in_flight_then_post_process()
 {
    let mut storage = HostDriverObject::new();
    let (hotswap, control) = registered_v1(&mut storage);
    let wrapper = hotswap
        .wrapper(&table([EndpointEntry::new(A, v1 as Op)]), A)
        .unwrap();
    let stop = leak(AtomicBool::new(false));
    let calls = leak(AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && calls.load(Ordering::Relaxed) < 50_000_000 {
                    let r = wrapper.get()(0);
                    assert!(r == 1 || r == 2);
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_until("the callers are calling", || {
        calls.load(Ordering::Relaxed) > 1_000
    });
    let mut seen = Vec::new();
    let mut callback = |phase: Phase| {
        seen.push((
            phase,
            control.is_stalled(),
            control.in_flight(),
            control.implementation(EndpointKey::Id(1)),
        ));
        Ok(())
    };
    hotswap
        .register(
            &table([EndpointEntry::new(A, v2 as Op)]),
            Some(&mut callback),
        )
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.join().unwrap();
    }
    let (v1_addr, v2_addr) = (Some(v1 as Op as usize), Some(v2 as Op as usize));
    assert_eq!(seen.len(), 3);
    assert_eq!(
        (seen[0].0, seen[0].1, seen[0].3),
        (Phase::PreProcess, false, v1_addr)
    );
    assert_eq!(seen[1], (Phase::ProxyStalled, true, 0, v1_addr));
    assert_eq!(
        (seen[2].0, seen[2].1, seen[2].3),
        (Phase::PostProcess, false, v2_addr)
    );
}

/// Registers `A` = v2 and the new id `C` with a callback failing in `failing`; checks that the
/// callback's status is returned and that nothing changed.
fn a_callback_failure_rolls_back(failing: Phase) {
    let mut storage = HostDriverObject::new();
    let (hotswap, control) = registered_v1(&mut storage);
    let generation = control.generation();
    let status = NtStatus(0xC000_0022_u32.cast_signed()); // STATUS_ACCESS_DENIED
    let mut delivered = Vec::new();
    let mut callback = |phase: Phase| {
        delivered.push(phase);
        if phase == failing {
            Err(status)
        } else {
            Ok(())
        }
    };
    let t2 = table([
        EndpointEntry::new(A, v2 as Op),
        EndpointEntry::new(C, other as Op),
    ]);
    assert_eq!(
        hotswap.register(&t2, Some(&mut callback)),
        Err(RegisterError::Callback {
            phase: failing,
            status
        })
    );
    assert_eq!(
        delivered.last(),
        Some(&failing),
        "no phase after the failing one"
    );
    let wrapper = hotswap.wrapper(&t2, A).unwrap();
    assert_eq!(wrapper.get()(0), 1, "still v1");
    assert_a_is_still_v1(&control);
    assert_eq!(hotswap.wrap(v1 as Op).unwrap(), wrapper);
    assert_eq!(hotswap.wrap(v2 as Op), Err(WrapError::NotAnEndpoint));
    assert_eq!(hotswap.wrapper(&t2, C), Err(LookupError::NotRegistered(3)));
    assert_eq!(control.endpoint_count(), 1);
    let expected = if failing == Phase::PostProcess { 2 } else { 0 };
    assert_eq!(
        control.generation(),
        generation + expected,
        "a rollback repoints back"
    );
    assert_eq!(control.swaps_failed(), 1);
}

#[test]
fn a_callback_failure_in_pre_process_is_returned_and_nothing_changes() {
    a_callback_failure_rolls_back(Phase::PreProcess);
}

#[test]
fn a_callback_failure_in_proxy_stalled_is_returned_and_nothing_changes() {
    a_callback_failure_rolls_back(Phase::ProxyStalled);
}

#[test]
fn a_callback_failure_in_post_process_is_returned_and_the_swap_is_rolled_back() {
    a_callback_failure_rolls_back(Phase::PostProcess);
}

#[test]
fn a_changed_parameter_count_returns_status_invalid_parameter_3_and_changes_nothing() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    hotswap
        .register(
            &table([
                EndpointEntry::new(A, v1 as Op),
                EndpointEntry::new(B, other as Op),
            ]),
            None,
        )
        .unwrap();
    let control = extension(&hotswap);
    let generation = control.generation();
    // A valid replacement and a new id come first; the bad entry is the last one.
    let t2 = table([
        EndpointEntry::new(A, v2 as Op),
        EndpointEntry::new(C, other as Op),
        EndpointEntry::new(EndpointId::<Op2>::new(2), add as Op2),
    ]);
    let mut delivered = 0;
    let mut callback = |_: Phase| {
        delivered += 1;
        Ok(())
    };
    let error = hotswap.register(&t2, Some(&mut callback)).unwrap_err();
    assert_eq!(error, RegisterError::ParameterCountMismatch);
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER_3);
    assert_eq!(delivered, 0, "validated before any phase");
    // The library checks it against its record before the kernel (the kernel's own answer,
    // the same status: `host/tests/kernel_proxy.rs`).
    assert_a_is_still_v1(&control);
    assert_eq!(
        control.implementation(EndpointKey::Id(2)),
        Some(other as Op as usize)
    );
    assert_eq!(hotswap.wrapper(&t2, C), Err(LookupError::NotRegistered(3)));
    assert_eq!(control.generation(), generation);
    assert_eq!(control.endpoint_count(), 2);
}

/// An endpoint that blocks while its gate is closed.
struct Gate {
    entered: AtomicU64,
    open: AtomicBool,
    v1_calls: AtomicU64,
    v2_calls: AtomicU64,
}

impl Gate {
    fn new() -> &'static Self {
        leak(Self {
            entered: AtomicU64::new(0),
            open: AtomicBool::new(false),
            v1_calls: AtomicU64::new(0),
            v2_calls: AtomicU64::new(0),
        })
    }

    fn pass(&self, block: u64) {
        if block != 0 {
            self.entered.fetch_add(1, Ordering::SeqCst);
            while !self.open.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

type GateFn = extern "system" fn(&'static Gate, u64) -> u64;
extern "system" fn gate_v1(gate: &'static Gate, block: u64) -> u64 {
    gate.v1_calls.fetch_add(1, Ordering::SeqCst);
    gate.pass(block);
    1
}
extern "system" fn gate_v2(gate: &'static Gate, block: u64) -> u64 {
    gate.v2_calls.fetch_add(1, Ordering::SeqCst);
    gate.pass(block);
    2
}
const GATE: EndpointId<GateFn> = EndpointId::new(9);

/// A hot-swap handle with `GATE` = `gate_v1` registered, its control, and the wrapper.
fn gated(
    storage: &mut HostDriverObject,
) -> (HotSwap, ExtensionControl, driver_proxy::Wrapped<GateFn>) {
    let hotswap = hotswap(storage);
    let t1 = table([EndpointEntry::new(GATE, gate_v1 as GateFn)]);
    hotswap.register(&t1, None).unwrap();
    let wrapper = hotswap.wrapper(&t1, GATE).unwrap();
    let control = extension(&hotswap);
    (hotswap, control, wrapper)
}

#[test]
fn a_call_blocked_inside_v1_keeps_the_swap_waiting_while_calls_arriving_during_the_stall_reach_v2()
{
    let mut storage = HostDriverObject::new();
    let (hotswap, control, wrapper) = gated(&mut storage);
    let gate = Gate::new();
    let blocked = thread::spawn(move || wrapper.get()(gate, 1));
    wait_until("the v1 call is inside", || {
        gate.entered.load(Ordering::SeqCst) == 1
    });
    assert_eq!(control.in_flight(), 1);
    let t2 = table([EndpointEntry::new(GATE, gate_v2 as GateFn)]);
    let swapper = thread::spawn(move || hotswap.register(&t2, None));
    wait_until("the swap stalls", || control.is_stalled());
    let late = thread::spawn(move || wrapper.get()(gate, 0));
    wait_until("the late call is held", || control.held_callers() == 1);
    thread::sleep(Duration::from_millis(20));
    assert!(!swapper.is_finished(), "the swap waits for the v1 call");
    assert_eq!(gate.v2_calls.load(Ordering::SeqCst), 0);
    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(blocked.join().unwrap(), 1);
    swapper.join().unwrap().unwrap();
    assert_eq!(
        late.join().unwrap(),
        2,
        "the call held during the stall reaches v2"
    );
    assert_eq!(wrapper.get()(gate, 0), 2);
    assert_eq!(gate.v1_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_drain_timeout_returns_status_unsuccessful_and_changes_nothing() {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .set_drain_timeout(Duration::from_millis(50));
    let (hotswap, control, wrapper) = gated(&mut storage);
    let gate = Gate::new();
    let blocked = thread::spawn(move || wrapper.get()(gate, 1));
    wait_until("the v1 call is inside", || {
        gate.entered.load(Ordering::SeqCst) == 1
    });
    let mut delivered = Vec::new();
    let mut callback = |phase: Phase| {
        delivered.push(phase);
        Ok(())
    };
    let t2 = table([EndpointEntry::new(GATE, gate_v2 as GateFn)]);
    let error = hotswap.register(&t2, Some(&mut callback)).unwrap_err();
    assert_eq!(error, RegisterError::DrainTimeout);
    assert_eq!(error.status(), NtStatus::UNSUCCESSFUL);
    assert_eq!(delivered, [Phase::PreProcess]);
    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(blocked.join().unwrap(), 1);
    assert_eq!(wrapper.get()(gate, 0), 1, "still v1");
    assert_eq!(
        control.implementation(EndpointKey::Id(9)),
        Some(gate_v1 as GateFn as usize)
    );
}

#[test]
fn a_post_process_failure_whose_rollback_cannot_drain_keeps_the_new_implementations() {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .set_drain_timeout(Duration::from_millis(50));
    let (hotswap, control, wrapper) = gated(&mut storage);
    let gate = Gate::new();
    let status = NtStatus::INSUFFICIENT_RESOURCES;
    let mut inside_v2 = None;
    let mut callback = |phase: Phase| {
        if phase != Phase::PostProcess {
            return Ok(());
        }
        // Calls flow again: one enters v2 and stays, so the rollback cannot drain.
        inside_v2 = Some(thread::spawn(move || wrapper.get()(gate, 1)));
        wait_until("a call is inside v2", || {
            gate.entered.load(Ordering::SeqCst) == 1
        });
        Err(status)
    };
    let t2 = table([EndpointEntry::new(GATE, gate_v2 as GateFn)]);
    assert_eq!(
        hotswap.register(&t2, Some(&mut callback)),
        Err(RegisterError::Callback {
            phase: Phase::PostProcess,
            status
        })
    );
    assert_eq!(
        control.implementation(EndpointKey::Id(9)),
        Some(gate_v2 as GateFn as usize)
    );
    assert_eq!(hotswap.wrap(gate_v2 as GateFn).unwrap(), wrapper);
    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(inside_v2.unwrap().join().unwrap(), 2);
    assert_eq!(wrapper.get()(gate, 0), 2);
}

/// The library's view after the case above must follow the kernel's: the implementations that
/// stayed are those of the failed registration, so the retired `gate_v1` is no endpoint any
/// more (as for a successful swap) and the table of `gate_v1` no longer describes id 9.
#[test]
fn after_a_post_process_failure_that_kept_the_new_implementations_the_retired_endpoint_is_not_found()
 {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .set_drain_timeout(Duration::from_millis(50));
    let (hotswap, control, wrapper) = gated(&mut storage);
    let gate = Gate::new();
    let mut inside_v2 = None;
    let mut callback = |phase: Phase| {
        if phase != Phase::PostProcess {
            return Ok(());
        }
        inside_v2 = Some(thread::spawn(move || wrapper.get()(gate, 1)));
        wait_until("a call is inside v2", || {
            gate.entered.load(Ordering::SeqCst) == 1
        });
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    };
    let t2 = table([EndpointEntry::new(GATE, gate_v2 as GateFn)]);
    assert!(hotswap.register(&t2, Some(&mut callback)).is_err());
    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(inside_v2.unwrap().join().unwrap(), 2);
    assert_eq!(
        control.implementation(EndpointKey::Id(9)),
        Some(gate_v2 as GateFn as usize),
        "the kernel kept v2"
    );
    assert_eq!(
        hotswap.wrap(gate_v1 as GateFn),
        Err(WrapError::NotAnEndpoint),
        "v1 is retired: the V2 lookup must not hand out id 9's wrapper for it"
    );
}

#[test]
fn out_of_resources_returns_status_insufficient_resources_and_changes_nothing() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t = table([
        EndpointEntry::new(A, v1 as Op),
        EndpointEntry::new(B, other as Op),
    ]);
    storage.control().fail_allocation(2);
    assert_eq!(
        hotswap.register(&t, None),
        Err(RegisterError::InsufficientResources)
    );
    assert_eq!(hotswap.wrapper(&t, A), Err(LookupError::NotRegistered(1)));
    assert_eq!(hotswap.wrapper(&t, B), Err(LookupError::NotRegistered(2)));
    hotswap.register(&t, None).expect("the fault was one shot");
    assert_eq!(hotswap.wrapper(&t, B).unwrap().get()(1), 101);
}

#[test]
fn more_endpoints_than_the_extension_allows_return_status_insufficient_resources() {
    let mut storage = HostDriverObject::new();
    storage.control().set_max_endpoints(1);
    let hotswap = hotswap(&mut storage);
    let t = table([
        EndpointEntry::new(A, v1 as Op),
        EndpointEntry::new(B, other as Op),
    ]);
    assert_eq!(
        hotswap.register(&t, None),
        Err(RegisterError::InsufficientResources)
    );
    assert_eq!(extension(&hotswap).endpoint_count(), 0);
}

static REENTRANT: Mutex<Option<(HotSwap, EndpointTable<1>)>> = Mutex::new(None);
static REENTRANT_RESULT: Mutex<Option<Result<(), RegisterError>>> = Mutex::new(None);

/// An endpoint that re-registers its own id (a swap from inside the extension).
extern "system" fn reentrant(x: u64) -> u64 {
    let inner = REENTRANT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some((hotswap, table)) = inner {
        let result = hotswap.register(&table, None);
        *REENTRANT_RESULT
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
    }
    x
}
const REENTRANT_ID: EndpointId<Op> = EndpointId::new(4);

#[test]
fn a_registration_from_inside_an_endpoint_of_the_same_extension_returns_status_unsuccessful() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let t1 = table([EndpointEntry::new(REENTRANT_ID, reentrant as Op)]);
    hotswap.register(&t1, None).unwrap();
    let control = extension(&hotswap);
    *REENTRANT.lock().unwrap() = Some((
        hotswap,
        table([EndpointEntry::new(REENTRANT_ID, other as Op)]),
    ));
    assert_eq!(hotswap.wrapper(&t1, REENTRANT_ID).unwrap().get()(7), 7);
    assert_eq!(
        REENTRANT_RESULT.lock().unwrap().take(),
        Some(Err(RegisterError::DrainTimeout)),
        "it could never drain: it waits for its own caller"
    );
    assert_eq!(
        control.implementation(EndpointKey::Id(4)),
        Some(reentrant as Op as usize)
    );
}

#[test]
fn new_ids_registered_together_with_a_swap_are_published_with_it() {
    let mut storage = HostDriverObject::new();
    let (hotswap, control) = registered_v1(&mut storage);
    let t2 = table([
        EndpointEntry::new(A, v2 as Op),
        EndpointEntry::new(C, other as Op),
    ]);
    let mut published_in = Vec::new();
    let mut callback = |phase: Phase| {
        published_in.push((phase, control.implementation(EndpointKey::Id(3)).is_some()));
        Ok(())
    };
    hotswap.register(&t2, Some(&mut callback)).unwrap();
    assert_eq!(
        published_in,
        [
            (Phase::PreProcess, false),
            (Phase::ProxyStalled, false),
            (Phase::PostProcess, true)
        ]
    );
    assert_eq!(hotswap.wrapper(&t2, A).unwrap().get()(0), 2);
    assert_eq!(hotswap.wrapper(&t2, C).unwrap().get()(0), 100);
}

/// The setting only: that a call reaching a poisoned retired implementation is caught is
/// tested in `host/tests/engine_swap.rs` (`late_call_reaches_poisoned_version`).
#[test]
fn poisoning_of_retired_implementations_is_on_by_default_and_a_driver_object_can_turn_it_off() {
    let mut poisoned = HostDriverObject::new();
    let (_, control) = registered_v1(&mut poisoned);
    assert!(control.poison_retired());
    let mut plain = HostDriverObject::new();
    plain.control().set_poison_retired(false);
    let (_, control) = registered_v1(&mut plain);
    assert!(!control.poison_retired());
}

/// Registrations of a driver are serialised by its endpoint record, which never waits: a
/// registration while another one is in progress (here, one waiting for a call to drain) is
/// refused at once and changes nothing.
#[test]
fn a_registration_while_another_is_in_progress_is_busy_and_changes_nothing() {
    let mut storage = HostDriverObject::new();
    let (hotswap, control, wrapper) = gated(&mut storage);
    let gate = Gate::new();
    let blocked = thread::spawn(move || wrapper.get()(gate, 1));
    wait_until("the v1 call is inside", || {
        gate.entered.load(Ordering::SeqCst) == 1
    });
    let t2 = table([EndpointEntry::new(GATE, gate_v2 as GateFn)]);
    let swapper = thread::spawn(move || hotswap.register(&t2, None));
    wait_until("the swap stalls", || control.is_stalled());
    let other_ids = table([EndpointEntry::new(C, other as Op)]);
    let error = hotswap.register(&other_ids, None).unwrap_err();
    assert_eq!(error, RegisterError::Busy);
    assert_eq!(NtStatus::from(error), NtStatus::DEVICE_BUSY);
    gate.open.store(true, Ordering::SeqCst);
    assert_eq!(blocked.join().unwrap(), 1);
    swapper.join().unwrap().unwrap();
    assert_eq!(control.implementation(EndpointKey::Id(3)), None);
    assert_eq!(
        hotswap.wrapper(&other_ids, C),
        Err(LookupError::NotRegistered(3))
    );
    hotswap.register(&other_ids, None).expect("free again");
    assert_eq!(hotswap.wrapper(&other_ids, C).unwrap().get()(1), 101);
}

/// A phased callback may not register again (the DDI forbids calling back into the extension
/// from a phase; the kernel would deadlock): the library refuses it before the kernel sees it.
#[test]
fn a_registration_from_inside_a_phased_callback_is_busy() {
    let mut storage = HostDriverObject::new();
    let (hotswap, control) = registered_v1(&mut storage);
    let inner = table([EndpointEntry::new(C, other as Op)]);
    let mut results = Vec::new();
    let mut callback = |phase: Phase| {
        results.push((phase, hotswap.register(&inner, None)));
        Ok(())
    };
    hotswap
        .register(
            &table([EndpointEntry::new(A, v2 as Op)]),
            Some(&mut callback),
        )
        .unwrap();
    assert_eq!(
        results,
        [
            (Phase::PreProcess, Err(RegisterError::Busy)),
            (Phase::ProxyStalled, Err(RegisterError::Busy)),
            (Phase::PostProcess, Err(RegisterError::Busy)),
        ]
    );
    assert_eq!(
        control.implementation(EndpointKey::Id(1)),
        Some(v2 as Op as usize)
    );
    assert_eq!(control.implementation(EndpointKey::Id(3)), None);
}

/// The endpoint record holds `MAX_ENDPOINTS` ids (and V2 addresses handed out); a
/// registration that would add more is refused before the kernel and changes nothing.
#[test]
fn more_ids_than_the_endpoint_record_holds_are_too_many_endpoints_and_change_nothing() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let full: EndpointTable<MAX_ENDPOINTS> = EndpointTable::new(std::array::from_fn(|i| {
        EndpointEntry::new(
            EndpointId::<Op>::new(100 + u32::try_from(i).unwrap()),
            v1 as Op,
        )
    }))
    .unwrap();
    let too_many: EndpointTable<{ MAX_ENDPOINTS + 1 }> =
        EndpointTable::new(std::array::from_fn(|i| {
            EndpointEntry::new(
                EndpointId::<Op>::new(100 + u32::try_from(i).unwrap()),
                v1 as Op,
            )
        }))
        .unwrap();
    let mut phases = 0;
    let mut callback = |_: Phase| {
        phases += 1;
        Ok(())
    };
    assert_eq!(
        hotswap.register(&too_many, Some(&mut callback)),
        Err(RegisterError::TooManyEndpoints)
    );
    assert_eq!(phases, 0, "refused before the kernel was called");
    assert_eq!(extension(&hotswap).endpoint_count(), 0);
    hotswap.register(&full, None).unwrap();
    let one_more = table([EndpointEntry::new(C, other as Op)]);
    let error = hotswap.register(&one_more, None).unwrap_err();
    assert_eq!(error, RegisterError::TooManyEndpoints);
    assert_eq!(NtStatus::from(error), NtStatus::INSUFFICIENT_RESOURCES);
    assert_eq!(extension(&hotswap).endpoint_count(), MAX_ENDPOINTS);
    // Re-registering ids the record holds adds nothing: still allowed.
    hotswap
        .register(
            &table([EndpointEntry::new(EndpointId::<Op>::new(100), v2 as Op)]),
            None,
        )
        .unwrap();
    assert_eq!(
        hotswap
            .wrapper(&full, EndpointId::<Op>::new(100))
            .unwrap()
            .get()(0),
        2
    );
}
