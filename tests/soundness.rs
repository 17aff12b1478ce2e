//! The soundness invariants of the crate docs ("Soundness"), each through the public API on
//! the host kernel: every way safe code could obtain a `Wrapped<G>` whose implementation has
//! another signature is refused, and nothing the kernel keeps points into the image.
//!
//! Each test names the hole it closes; against the 0.1 API (lookups checked against the table
//! passed in, re-registration unchecked, worker events and contexts borrowed from the image),
//! each of them fails. The type-level holes (a worker context of another type, an image
//! `static` given to the kernel) are compile-fail examples on `HotSwap::worker_thread`.

use std::sync::atomic::{AtomicU32, Ordering};

use driver_proxy::{
    DriverObject, EndpointEntry, EndpointId, EndpointTable, HotSwap, LookupError, NtStatus,
    RegisterError, WorkerRef, WorkerRoutine, WrapError,
};
use driver_proxy_host::HostDriverObject;
use driver_proxy_host::kernel::control;

/// A safe endpoint type and another of the same arity: the kernel cannot tell them apart.
type Takes = extern "system" fn(u64) -> u64;
type TakesSigned = extern "system" fn(i64) -> u64;
/// The unsafe twin of `Takes`: same ABI, but calling it promises a precondition.
type TakesUnsafe = unsafe extern "system" fn(u64) -> u64;
/// Its argument is a pointer it dereferences: calling it with an integer is UB.
type Reads = unsafe extern "system" fn(*const u64) -> u64;

extern "system" fn double(x: u64) -> u64 {
    x * 2
}
extern "system" fn triple(x: u64) -> u64 {
    x * 3
}
extern "system" fn negate(x: i64) -> u64 {
    x.wrapping_neg().cast_unsigned()
}
/// # Safety
/// `p` must be valid for a read.
unsafe extern "system" fn read(p: *const u64) -> u64 {
    // SAFETY: caller contract.
    unsafe { p.read() }
}

fn hotswap(storage: &mut HostDriverObject) -> HotSwap {
    // SAFETY: the host driver object outlives every use in the test.
    let driver = unsafe { DriverObject::from_raw(storage.as_raw()) }.expect("non-null");
    let hotswap = HotSwap::new(driver).expect("create");
    assert!(
        hotswap.is_hot_swappable(),
        "the host kernel has Driver Hot-Swap"
    );
    hotswap
}

const NINE: EndpointId<Takes> = EndpointId::new(9);

/// Hole 1a: `wrapper(&other_table, id)` checked the id's type against the table passed in,
/// not against what was registered.
#[test]
fn a_lookup_through_another_table_cannot_retype_a_registered_id() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let registered = EndpointTable::new([EndpointEntry::new(NINE, double as Takes)]).unwrap();
    hotswap.register(&registered, None).unwrap();

    // Another table, never registered, that says id 9 is a `Reads`.
    let lying = EndpointTable::new([EndpointEntry::new(
        EndpointId::<Reads>::new(9),
        read as Reads,
    )])
    .unwrap();
    assert_eq!(
        hotswap
            .wrapper(&lying, EndpointId::<Reads>::new(9))
            .unwrap_err(),
        LookupError::TypeMismatch(9),
        "id 9 was registered as `Takes`: a `Wrapped<Reads>` of it would turn an integer into a pointer"
    );
    let also_lying = EndpointTable::new([EndpointEntry::new(
        EndpointId::<TakesSigned>::new(9),
        negate as TakesSigned,
    )])
    .unwrap();
    assert_eq!(
        hotswap
            .wrapper(&also_lying, EndpointId::<TakesSigned>::new(9))
            .unwrap_err(),
        LookupError::TypeMismatch(9)
    );
    // The honest lookup works and calls through the kernel's wrapper.
    let wrapper = hotswap.wrapper(&registered, NINE).unwrap();
    assert_eq!(wrapper.get()(21), 42);
    assert_ne!(
        wrapper.address(),
        double as Takes as usize,
        "a real wrapper"
    );
}

/// Hole 1a: a re-registration could change an id's signature (same parameter count) while
/// wrappers of the old type were handed out.
#[test]
fn a_reregistration_cannot_change_the_type_of_an_id_whose_wrappers_are_out() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let table = EndpointTable::new([EndpointEntry::new(NINE, double as Takes)]).unwrap();
    hotswap.register(&table, None).unwrap();
    let handed_out = hotswap.wrapper(&table, NINE).unwrap();

    let mut phases = 0;
    let retyped = EndpointTable::new([EndpointEntry::new(
        EndpointId::<Reads>::new(9),
        read as Reads,
    )])
    .unwrap();
    assert_eq!(
        hotswap
            .register(
                &retyped,
                Some(&mut |_| {
                    phases += 1;
                    Ok(())
                })
            )
            .unwrap_err(),
        RegisterError::SignatureMismatch(9)
    );
    assert_eq!(phases, 0, "refused before the kernel was called");
    let unsafe_twin = EndpointTable::new([EndpointEntry::new(
        EndpointId::<TakesUnsafe>::new(9),
        double as TakesUnsafe,
    )])
    .unwrap();
    assert_eq!(
        hotswap.register(&unsafe_twin, None).unwrap_err(),
        RegisterError::SignatureMismatch(9),
        "a safe `Wrapped` must never come to call an `unsafe fn`"
    );
    // The wrapper handed out still calls a `Takes`; the same type may be swapped in.
    assert_eq!(handed_out.get()(5), 10);
    let swapped = EndpointTable::new([EndpointEntry::new(NINE, triple as Takes)]).unwrap();
    hotswap.register(&swapped, None).unwrap();
    assert_eq!(handed_out.get()(5), 15);
    assert_eq!(
        NtStatus::from(RegisterError::SignatureMismatch(9)),
        NtStatus::OBJECT_TYPE_MISMATCH
    );
}

/// Hole 1a, V2 side: a lookup by address could return a wrapper typed as the safe twin of an
/// `unsafe fn` registered at the same address.
#[test]
fn a_lookup_by_address_keeps_the_type_the_address_was_registered_with() {
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let table = EndpointTable::new([EndpointEntry::new(
        EndpointId::<TakesUnsafe>::new(3),
        double as TakesUnsafe,
    )])
    .unwrap();
    hotswap.register(&table, None).unwrap();
    assert_eq!(
        hotswap.wrap(double as Takes).unwrap_err(),
        WrapError::SignatureMismatch,
        "`double` is registered as an `unsafe fn` endpoint"
    );
    let wrapper = hotswap.wrap(double as TakesUnsafe).unwrap();
    assert_eq!(
        wrapper.address(),
        hotswap
            .wrapper(&table, EndpointId::<TakesUnsafe>::new(3))
            .unwrap()
            .address(),
        "the V2 lookup of a V1 endpoint is that id's wrapper"
    );
}

/// Hole 1a, V2 side: an address handed out as one type cannot be registered as another.
#[test]
fn an_address_handed_out_by_the_v2_lookup_keeps_its_type() {
    let mut storage = HostDriverObject::new();
    storage
        .control()
        .declare_image_endpoints(&[triple as Takes as usize])
        .unwrap();
    let hotswap = hotswap(&mut storage);
    let wrapper = hotswap
        .wrap(triple as Takes)
        .expect("a `.shsept` endpoint of the image");
    assert_eq!(wrapper.get()(2), 6);
    let retyping = EndpointTable::new([EndpointEntry::new(
        EndpointId::<TakesUnsafe>::new(1),
        triple as TakesUnsafe,
    )])
    .unwrap();
    assert_eq!(
        hotswap.register(&retyping, None).unwrap_err(),
        RegisterError::SignatureMismatch(1)
    );
}

static TICKS: AtomicU32 = AtomicU32::new(0);

extern "system" fn counts(worker: WorkerRef<AtomicU32, 1>, status: NtStatus) -> bool {
    TICKS.fetch_add(1, Ordering::Relaxed);
    if worker.wake(status) == driver_proxy::Wake::Stop {
        return false;
    }
    worker.with(|ticks| ticks.fetch_add(1, Ordering::Relaxed));
    true
}

/// Hole 1c: the events and context a hot-swappable thread uses are storage the crate owns
/// (pool, tag `DPwk`), not memory of the image that started it, and that storage is freed only
/// after the thread has ended.
#[test]
fn a_worker_threads_context_and_events_are_the_crates_storage_not_the_images() {
    type Worker = WorkerRoutine<AtomicU32, 1>;
    const WORKER: EndpointId<Worker> = EndpointId::new(1);
    const TAG: u32 = u32::from_le_bytes(*b"DPwk");
    let mut storage = HostDriverObject::new();
    let hotswap = hotswap(&mut storage);
    let table = EndpointTable::new([EndpointEntry::new(WORKER, counts as Worker)]).unwrap();
    hotswap.register(&table, None).unwrap();
    let before = control::pool_usage(TAG).allocated;
    let thread = hotswap
        .worker_thread(hotswap.wrapper(&table, WORKER).unwrap(), AtomicU32::new(0))
        .spawn()
        .unwrap();
    assert!(thread.is_hot_swappable());
    assert!(
        control::pool_usage(TAG).allocated > before,
        "the thread's context and events are a pool block of the crate's"
    );
    let context_address = core::ptr::from_ref(thread.get()) as usize;
    let image = core::ptr::from_ref(&TICKS) as usize;
    assert!(
        context_address.abs_diff(image) > 1 << 20,
        "the context is not in the image's data"
    );
    thread.event(0).unwrap().set();
    let start = std::time::Instant::now();
    while thread.get().load(Ordering::Relaxed) == 0 {
        assert!(start.elapsed().as_secs() < 5, "the routine ran");
        std::thread::yield_now();
    }
    let freed = control::pool_usage(TAG).freed;
    thread.stop_and_join().unwrap();
    let after_stop = TICKS.load(Ordering::Relaxed);
    assert!(
        control::pool_usage(TAG).freed > freed,
        "the storage is freed once the thread has ended"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        TICKS.load(Ordering::Relaxed),
        after_stop,
        "the thread has ended"
    );
}

static READ_AT_THREAD_EXIT: AtomicU32 = AtomicU32::new(0);

/// Keeps a `WorkerRef` in a thread-local and reads it when the thread's locals are destroyed.
struct KeptUntilThreadExit(Option<WorkerRef<AtomicU32, 0>>);

impl Drop for KeptUntilThreadExit {
    fn drop(&mut self) {
        if let Some(worker) = self.0.take() {
            READ_AT_THREAD_EXIT.store(
                worker.with(|v| v.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
    }
}

std::thread_local! {
    static KEPT: std::cell::RefCell<KeptUntilThreadExit> =
        const { std::cell::RefCell::new(KeptUntilThreadExit(None)) };
}

extern "system" fn keeps_its_view(worker: WorkerRef<AtomicU32, 0>, status: NtStatus) -> bool {
    let stop = worker.wake(status) == driver_proxy::Wake::Stop;
    worker.with(|v| v.store(7, Ordering::Relaxed));
    KEPT.with(|kept| kept.borrow_mut().0 = Some(worker));
    !stop
}

/// Hole 1c, the other way round: the routine's view of its storage can outlive the routine on
/// its thread (a thread-local), so the storage may only be freed when the thread has really
/// ended: `stop_and_join` returns after the thread's thread-local destructors ran.
#[test]
fn a_workers_storage_is_freed_only_after_everything_of_its_thread_has_run() {
    type Worker = WorkerRoutine<AtomicU32, 0>;
    const WORKER: EndpointId<Worker> = EndpointId::new(1);
    for hot_swap in [true, false] {
        READ_AT_THREAD_EXIT.store(0, Ordering::Relaxed);
        let mut storage = HostDriverObject::new();
        let hotswap = if hot_swap {
            hotswap(&mut storage)
        } else {
            // SAFETY: the host driver object outlives every use in the test.
            let driver = unsafe { DriverObject::from_raw(storage.as_raw()) }.unwrap();
            HotSwap::fallback(driver, driver_proxy::Unavailable::FeatureDisabled)
        };
        let table =
            EndpointTable::new([EndpointEntry::new(WORKER, keeps_its_view as Worker)]).unwrap();
        hotswap.register(&table, None).unwrap();
        let thread = hotswap
            .worker_thread(hotswap.wrapper(&table, WORKER).unwrap(), AtomicU32::new(0))
            .timeout(driver_proxy::Timeout::from_millis(1))
            .spawn()
            .unwrap();
        assert_eq!(thread.is_hot_swappable(), hot_swap);
        thread.stop_and_join().unwrap();
        assert_eq!(
            READ_AT_THREAD_EXIT.load(Ordering::Relaxed),
            7,
            "the thread-local read the storage before stop_and_join freed it (hot swap: {hot_swap})"
        );
    }
}
