//! Hot-swappable worker threads (`IoDriverProxyCreateHotSwappableWorkerThread`).
//!
//! A thread that loops forever inside driver code keeps the old version's call count above
//! zero and blocks every swap. A hot-swappable worker thread moves the loop into the kernel:
//! the kernel waits on the given events and calls the worker routine *through its wrapper*
//! once per wake-up, so between iterations no driver code is on the thread's stack and a
//! swap takes effect at the next iteration. The routine returns `TRUE` to wait again and
//! `FALSE` to end the thread.
//!
//! Where hot-swap is unavailable, [`WorkerThreadBuilder::spawn`] starts a plain system thread
//! (`PsCreateSystemThread`) running the same loop in this crate's code
//! (`KeWaitForMultipleObjects`, then the routine), so drivers keep one code path.

use core::ffi::c_void;
use core::mem::offset_of;

use crate::{Event, HotSwap, NtStatus, WorkerError, Wrapped, sys};

/// The signature of a worker routine (`DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE`):
/// `BOOLEAN Routine(PVOID WorkerContext, NTSTATUS WaitStatus)`, run at `PASSIVE_LEVEL`.
pub type WorkerRoutine = unsafe extern "system" fn(sys::PVOID, sys::NTSTATUS) -> sys::BOOLEAN;

/// The most events a worker thread can wait on. The DDI does not document a limit; this
/// crate uses the kernel's `MAXIMUM_WAIT_OBJECTS` (64), the limit of the multi-object wait the
/// thread performs, and rejects more with [`WorkerError::TooManyEvents`].
pub const MAX_WORKER_EVENTS: usize = sys::MAXIMUM_WAIT_OBJECTS as usize;

/// How the thread's wait is satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitType {
    /// `WaitAny`: any one event; the routine gets `STATUS_WAIT_0 + index`.
    Any,
    /// `WaitAll`: every event at once; the routine gets `STATUS_WAIT_0`.
    All,
}

/// `KWAIT_REASON` of the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitReason(pub sys::KWAIT_REASON);

impl WaitReason {
    /// `Executive`: what drivers normally use.
    pub const EXECUTIVE: Self = Self(sys::Executive);
    /// `UserRequest`.
    pub const USER_REQUEST: Self = Self(sys::UserRequest);
}

/// `KPROCESSOR_MODE` of the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// `KernelMode`: the thread's stack stays resident.
    Kernel,
    /// `UserMode`.
    User,
}

/// A wait timeout in the kernel's 100 ns units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(i64);

impl Timeout {
    /// A relative timeout of `units` × 100 ns (stored negative, as the kernel wants).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn relative_100ns(units: u64) -> Self {
        let units = if units > i64::MAX as u64 {
            i64::MAX
        } else {
            units.cast_signed()
        };
        Self(-units)
    }

    /// A relative timeout in milliseconds.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn from_millis(milliseconds: u64) -> Self {
        Self::relative_100ns(milliseconds.saturating_mul(10_000))
    }

    /// An absolute system time (100 ns since 1601-01-01 UTC); must be positive.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn absolute(system_time: u64) -> Self {
        Self(if system_time > i64::MAX as u64 {
            i64::MAX
        } else {
            system_time.cast_signed()
        })
    }

    /// The raw `LARGE_INTEGER` value.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn raw(self) -> i64 {
        self.0
    }
}

/// The start context in the exact layout of
/// `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT`: the fixed header, then the event
/// pointers. Only the first `EventCount` entries are meaningful; the kernel copies
/// `0x30 + 8 * EventCount` bytes.
#[repr(C)]
pub(crate) struct StartContext {
    header: sys::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT,
    events: [sys::PKEVENT; MAX_WORKER_EVENTS],
}

const _: () = assert!(offset_of!(StartContext, events) == sys::WORKER_START_CONTEXT_EVENTS_OFFSET);

impl StartContext {
    /// The size the DDI gives for this context: `FIELD_OFFSET(…, Events) + EventCount * 8`.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        sys::worker_start_context_size(self.header.EventCount as usize)
    }

    fn as_raw(&mut self) -> sys::PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
        (&raw mut *self).cast()
    }
}

/// Builds and starts a worker thread. Obtained from [`HotSwap::worker_thread`]; `'a` is how
/// long the events and the context are borrowed, which must cover the thread's whole life.
pub struct WorkerThreadBuilder<'a> {
    hotswap: HotSwap,
    routine: Wrapped<WorkerRoutine>,
    context: *mut c_void,
    wait_type: WaitType,
    wait_reason: WaitReason,
    wait_mode: WaitMode,
    alertable: bool,
    timeout: Option<Timeout>,
    events: [Option<&'a Event>; MAX_WORKER_EVENTS],
    event_count: usize,
}

impl HotSwap {
    /// A builder for a worker thread that runs `routine`, which must be a wrapper (or, in
    /// fallback, the endpoint itself) of a worker routine: obtain it with [`HotSwap::wrap`] or
    /// [`HotSwap::wrapper`]. Defaults: `WaitAny`, `Executive`, kernel mode, not alertable, no
    /// timeout, null context, no events (at least one must be added).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn worker_thread<'a>(&self, routine: Wrapped<WorkerRoutine>) -> WorkerThreadBuilder<'a> {
        WorkerThreadBuilder {
            hotswap: *self,
            routine,
            context: core::ptr::null_mut(),
            wait_type: WaitType::Any,
            wait_reason: WaitReason::EXECUTIVE,
            wait_mode: WaitMode::Kernel,
            alertable: false,
            timeout: None,
            events: [None; MAX_WORKER_EVENTS],
            event_count: 0,
        }
    }
}

impl<'a> WorkerThreadBuilder<'a> {
    /// The context passed to every call of the routine as `WorkerContext`.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn context<T: Sync>(mut self, context: &'a T) -> Self {
        self.context = core::ptr::from_ref(context).cast_mut().cast();
        self
    }

    /// `WaitAny` or `WaitAll`.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn wait_type(mut self, wait_type: WaitType) -> Self {
        self.wait_type = wait_type;
        self
    }

    /// The wait reason.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn wait_reason(mut self, reason: WaitReason) -> Self {
        self.wait_reason = reason;
        self
    }

    /// The wait mode.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.wait_mode = mode;
        self
    }

    /// Whether the wait is alertable (the routine may then see `STATUS_ALERTED` or
    /// `STATUS_USER_APC`).
    ///
    /// IRQL: any.
    #[must_use]
    pub fn alertable(mut self, alertable: bool) -> Self {
        self.alertable = alertable;
        self
    }

    /// A timeout for each wait; the routine then sees `STATUS_TIMEOUT` when it expires.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn timeout(mut self, timeout: Timeout) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds an event to wait on (index = order of addition). Adding more than
    /// [`MAX_WORKER_EVENTS`] makes [`WorkerThreadBuilder::spawn`] fail with
    /// [`WorkerError::TooManyEvents`].
    ///
    /// IRQL: any.
    #[must_use]
    pub fn event(mut self, event: &'a Event) -> Self {
        if let Some(slot) = self.events.get_mut(self.event_count) {
            *slot = Some(event);
        }
        self.event_count += 1;
        self
    }

    /// The start context this builder describes.
    pub(crate) fn start_context(&self) -> Result<StartContext, WorkerError> {
        match self.event_count {
            0 => return Err(WorkerError::NoEvents),
            n if n > MAX_WORKER_EVENTS => return Err(WorkerError::TooManyEvents(n)),
            _ => {}
        }
        let mut events = [core::ptr::null_mut(); MAX_WORKER_EVENTS];
        for (slot, event) in events.iter_mut().zip(self.events.iter().flatten()) {
            *slot = event
                .as_raw()
                .map_err(|_| WorkerError::EventNotInitialized)?;
        }
        #[allow(clippy::cast_possible_truncation)] // at most MAX_WORKER_EVENTS
        let event_count = self.event_count as u32;
        Ok(StartContext {
            header: sys::DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
                WorkerRoutine: Some(self.routine.get()),
                Context: self.context,
                WaitType: match self.wait_type {
                    WaitType::Any => sys::WaitAny,
                    WaitType::All => sys::WaitAll,
                },
                WaitReason: self.wait_reason.0,
                WaitMode: match self.wait_mode {
                    WaitMode::Kernel => sys::KernelMode,
                    WaitMode::User => sys::UserMode,
                },
                Altertable: sys::BOOLEAN::from(self.alertable),
                HasTimeout: sys::BOOLEAN::from(self.timeout.is_some()),
                Timeout: sys::LARGE_INTEGER {
                    QuadPart: self.timeout.map_or(0, Timeout::raw),
                },
                EventCount: event_count,
                Events: [],
            },
            events,
        })
    }

    /// Starts the thread without checking that the borrows live long enough.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`WorkerError::NoEvents`], [`WorkerError::TooManyEvents`],
    /// [`WorkerError::EventNotInitialized`] (checked before the kernel is called);
    /// [`WorkerError::NotSupported`], [`WorkerError::InvalidParameter`] (the routine is not a
    /// wrapper of this extension), [`WorkerError::InsufficientResources`] from the kernel;
    /// [`WorkerError::ExportMissing`].
    ///
    /// # Safety
    /// The events and the context must stay valid until the thread has ended (its routine
    /// returned `FALSE`).
    pub unsafe fn spawn_unchecked(self) -> Result<WorkerThread, WorkerError> {
        let mut start = self.start_context()?;
        match self.hotswap.extension() {
            Some(extension) => {
                let create = extension.exports().proxy.create_worker_thread.ok_or(
                    WorkerError::ExportMissing(
                        sys::names::IO_DRIVER_PROXY_CREATE_HOT_SWAPPABLE_WORKER_THREAD.ascii,
                    ),
                )?;
                let mut handle = core::ptr::null_mut();
                let mut attributes = kernel_handle_attributes();
                // SAFETY: resolved routine; live extension; `start` is a complete start context
                // (header followed by its events) that the kernel copies; the events and the
                // context outlive the thread (caller contract).
                let status = NtStatus(unsafe {
                    create(
                        extension.as_raw(),
                        &raw mut handle,
                        sys::THREAD_ALL_ACCESS,
                        &raw mut attributes,
                        core::ptr::null_mut(),
                        core::ptr::null_mut(),
                        start.as_raw(),
                    )
                });
                if status.is_success() {
                    Ok(WorkerThread {
                        handle,
                        close: extension.exports().kernel.close,
                        hot_swappable: true,
                    })
                } else {
                    Err(WorkerError::from_status(status))
                }
            }
            // SAFETY: forwarded caller contract.
            None => unsafe { fallback::spawn(crate::resolve::exports(), start) },
        }
    }
}

impl WorkerThreadBuilder<'static> {
    /// Starts the thread. The events and context are borrowed for `'static` (a `static`, or
    /// leaked storage), so they outlive it.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// See [`WorkerThreadBuilder::spawn_unchecked`].
    pub fn spawn(self) -> Result<WorkerThread, WorkerError> {
        // SAFETY: every borrow is 'static.
        unsafe { self.spawn_unchecked() }
    }
}

fn kernel_handle_attributes() -> sys::OBJECT_ATTRIBUTES {
    sys::OBJECT_ATTRIBUTES {
        #[allow(clippy::cast_possible_truncation)] // 0x30
        Length: core::mem::size_of::<sys::OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: core::ptr::null_mut(),
        ObjectName: core::ptr::null_mut(),
        Attributes: sys::OBJ_KERNEL_HANDLE,
        SecurityDescriptor: core::ptr::null_mut(),
        SecurityQualityOfService: core::ptr::null_mut(),
    }
}

/// A started worker thread: owns the thread handle, closed (`ZwClose`) on drop. Closing the
/// handle does not stop the thread; to stop it, signal an event its routine understands and
/// let the routine return `FALSE`.
#[derive(Debug)]
pub struct WorkerThread {
    handle: sys::HANDLE,
    close: Option<sys::PFN_ZwClose>,
    hot_swappable: bool,
}

// SAFETY: a kernel handle (OBJ_KERNEL_HANDLE) is valid in any thread's context.
unsafe impl Send for WorkerThread {}

impl WorkerThread {
    /// Whether the kernel owns the loop (`true`), or this crate's fallback thread does.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn is_hot_swappable(&self) -> bool {
        self.hot_swappable
    }

    /// The thread handle (still owned by `self`).
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn handle(&self) -> sys::HANDLE {
        self.handle
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        if let Some(close) = self.close {
            // SAFETY: `handle` is the thread handle this value owns; closed once, here.
            let _ = unsafe { close(self.handle) };
        }
    }
}

/// The fallback: a plain system thread running the wait-and-call loop in this crate.
mod fallback {
    use super::{MAX_WORKER_EVENTS, StartContext, WorkerError, WorkerThread};
    use crate::resolve::{Exports, KernelRoutines};
    use crate::{NtStatus, sys};

    const POOL_TAG: u32 = u32::from_le_bytes(*b"DPwk");

    /// Everything the thread needs, in one pool block it frees when it ends.
    #[repr(C)]
    struct FallbackThread {
        start: StartContext,
        kernel: KernelRoutines,
        wait_blocks: [u64; sys::KWAIT_BLOCK_SIZE / 8 * MAX_WORKER_EVENTS],
    }

    /// Starts a plain system thread running [`thread_main`] on a pool copy of `start`.
    ///
    /// # Safety
    /// The events and the context `start` points to must stay valid until the thread has
    /// ended (the contract of `WorkerThreadBuilder::spawn_unchecked`).
    pub(super) unsafe fn spawn(
        exports: &Exports,
        start: StartContext,
    ) -> Result<WorkerThread, WorkerError> {
        let kernel = exports.kernel;
        let missing = |name: &sys::RoutineName| WorkerError::ExportMissing(name.ascii);
        let allocate = kernel
            .allocate_pool
            .ok_or_else(|| missing(&sys::kernel_names::EX_ALLOCATE_POOL2))?;
        let free = kernel
            .free_pool
            .ok_or_else(|| missing(&sys::kernel_names::EX_FREE_POOL_WITH_TAG))?;
        let create = kernel
            .create_system_thread
            .ok_or_else(|| missing(&sys::kernel_names::PS_CREATE_SYSTEM_THREAD))?;
        kernel
            .wait_for_multiple_objects
            .ok_or_else(|| missing(&sys::kernel_names::KE_WAIT_FOR_MULTIPLE_OBJECTS))?;

        // SAFETY: resolved routine; non-paged pool of a fixed size.
        let block = unsafe {
            allocate(
                sys::POOL_FLAG_NON_PAGED,
                core::mem::size_of::<FallbackThread>(),
                POOL_TAG,
            )
        }
        .cast::<FallbackThread>();
        if block.is_null() {
            return Err(WorkerError::InsufficientResources);
        }
        // SAFETY: `block` is a fresh, suitably aligned (pool blocks are 16-byte aligned)
        // allocation of the right size that nothing else references yet.
        unsafe {
            block.write(FallbackThread {
                start,
                kernel,
                wait_blocks: [0; _],
            });
        };
        let mut handle = core::ptr::null_mut();
        let mut attributes = super::kernel_handle_attributes();
        // SAFETY: resolved routine; `block` is handed to the new thread, which owns it from
        // here on (and frees it) if creation succeeds.
        let status = NtStatus(unsafe {
            create(
                &raw mut handle,
                sys::THREAD_ALL_ACCESS,
                &raw mut attributes,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                thread_main,
                block.cast(),
            )
        });
        if status.is_success() {
            Ok(WorkerThread {
                handle,
                close: kernel.close,
                hot_swappable: false,
            })
        } else {
            // SAFETY: no thread took ownership of the block; free it with its tag.
            unsafe { free(block.cast(), POOL_TAG) };
            Err(WorkerError::from_status(status))
        }
    }

    /// The fallback thread: wait as the start context says, call the routine, repeat while it
    /// returns TRUE; then free the block.
    ///
    /// # Safety
    /// `context` is a `FallbackThread` block owned by this thread (see `spawn`).
    unsafe extern "system" fn thread_main(context: sys::PVOID) {
        let thread = context.cast::<FallbackThread>();
        // SAFETY: this thread owns the block until it frees it below.
        let this = unsafe { &mut *thread };
        let header = &this.start.header;
        let count = header.EventCount;
        let (Some(wait), Some(free), Some(routine)) = (
            this.kernel.wait_for_multiple_objects,
            this.kernel.free_pool,
            header.WorkerRoutine,
        ) else {
            return; // unreachable: checked by `spawn` and `start_context`
        };
        let wait_blocks = if count > sys::THREAD_WAIT_OBJECTS {
            this.wait_blocks.as_mut_ptr().cast()
        } else {
            core::ptr::null_mut()
        };
        loop {
            let mut timeout = header.Timeout;
            let timeout_ptr = if header.HasTimeout != 0 {
                &raw mut timeout
            } else {
                core::ptr::null_mut()
            };
            // SAFETY: the events are initialised KEVENTs that outlive this thread (contract of
            // `spawn_unchecked`); the wait-block array is large enough for `count` objects.
            let status = unsafe {
                wait(
                    count,
                    this.start.events.as_mut_ptr().cast(),
                    header.WaitType,
                    header.WaitReason,
                    header.WaitMode,
                    header.Altertable,
                    timeout_ptr,
                    wait_blocks,
                )
            };
            // SAFETY: the routine is the driver's worker routine; the context outlives the thread.
            if unsafe { routine(header.Context, status) } == sys::FALSE {
                break;
            }
        }
        // SAFETY: the block was allocated with this tag and nothing uses it any more.
        unsafe { free(thread.cast(), POOL_TAG) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "system" fn routine(_: sys::PVOID, _: sys::NTSTATUS) -> sys::BOOLEAN {
        sys::FALSE
    }

    fn builder<'a>() -> WorkerThreadBuilder<'a> {
        let hotswap = HotSwap::fallback(crate::Unavailable::FeatureDisabled);
        hotswap.worker_thread(hotswap.wrap(routine as WorkerRoutine).unwrap())
    }

    /// Events whose state is READY without a kernel (the raw KEVENT is never used here).
    fn ready_events<const N: usize>() -> &'static [Event; N] {
        extern crate std;
        let events: &'static [Event; N] =
            std::boxed::Box::leak(std::boxed::Box::new(core::array::from_fn(|_| Event::new())));
        for event in events {
            event.mark_ready_for_tests();
        }
        events
    }

    fn read<T: Copy>(context: &StartContext, offset: usize) -> T {
        // SAFETY: every offset read below is inside the context and holds an initialised field.
        unsafe {
            (&raw const *context)
                .cast::<u8>()
                .add(offset)
                .cast::<T>()
                .read_unaligned()
        }
    }

    #[test]
    fn start_context_has_the_documented_size_and_offsets_for_1_2_and_64_events() {
        for n in [1usize, 2, 64] {
            let events = ready_events::<64>();
            let mut b = builder()
                .wait_type(WaitType::All)
                .alertable(true)
                .timeout(Timeout::from_millis(5));
            for event in &events[..n] {
                b = b.event(event);
            }
            let context = b.start_context().unwrap();
            assert_eq!(context.len(), 0x30 + 8 * n);
            assert_eq!(
                read::<usize>(&context, 0x00),
                routine as WorkerRoutine as usize
            );
            assert_eq!(read::<i32>(&context, 0x10), sys::WaitAll);
            assert_eq!(read::<i32>(&context, 0x14), sys::Executive);
            assert_eq!(read::<i8>(&context, 0x18), sys::KernelMode);
            assert_eq!(read::<u8>(&context, 0x19), 1, "Altertable");
            assert_eq!(read::<u8>(&context, 0x1A), 1, "HasTimeout");
            assert_eq!(
                read::<i64>(&context, 0x20),
                -50_000,
                "5 ms relative, in 100 ns units"
            );
            assert_eq!(read::<u32>(&context, 0x28), u32::try_from(n).unwrap());
            for (i, event) in events[..n].iter().enumerate() {
                assert_eq!(
                    read::<sys::PKEVENT>(&context, 0x30 + 8 * i),
                    event.as_raw().unwrap()
                );
            }
        }
    }

    #[test]
    fn zero_events_too_many_events_and_uninitialised_events_are_rejected() {
        extern crate std;
        assert_eq!(builder().start_context().err(), Some(WorkerError::NoEvents));
        let events = ready_events::<65>();
        let mut b = builder();
        for event in events {
            b = b.event(event);
        }
        assert_eq!(
            b.start_context().err(),
            Some(WorkerError::TooManyEvents(65))
        );
        let fresh: &'static Event = std::boxed::Box::leak(std::boxed::Box::new(Event::new()));
        assert_eq!(
            builder().event(fresh).start_context().err(),
            Some(WorkerError::EventNotInitialized)
        );
    }

    #[test]
    fn timeouts_are_stored_in_the_kernel_convention() {
        assert_eq!(Timeout::from_millis(1).raw(), -10_000);
        assert_eq!(Timeout::relative_100ns(7).raw(), -7);
        assert_eq!(Timeout::absolute(123).raw(), 123);
        assert_eq!(Timeout::relative_100ns(u64::MAX).raw(), -i64::MAX);
    }
}
