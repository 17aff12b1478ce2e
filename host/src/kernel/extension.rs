//! DriverProxy extensions: the per-driver-object records, the extension objects with their
//! wrapper engine and endpoint table, registration (V1), lookups, and swaps.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::ddi;

use super::{BugCheck, bugcheck, lock};
use crate::engine::{Engine, EngineConfig, EngineError, Phase, SwapError, SwapReport, WrapperId};

/// What `IoGetDriverProxyFeatures` and `IoCreateDriverProxyExtension` answer for a driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DriverFeatures {
    /// DriverProxy can be used (if the system-wide switch is on): `Enabled` = 1, creation
    /// succeeds.
    #[default]
    Enabled,
    /// Not configured for this driver: `Enabled` = 0, creation gives `STATUS_NOT_SUPPORTED`.
    Disabled,
    /// Excluded by policy: `Enabled` = 0, creation gives `STATUS_DRIVER_BLOCKED`.
    Blocked,
}

/// Names an endpoint of an extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKey {
    /// A V1 endpoint, by the id it was registered under.
    Id(u32),
    /// An endpoint of the driver image's `.shsept` list (V2), by its position in the list
    /// (0-based, in declaration order).
    Ordinal(u32),
}

/// Configuration and faults of one driver object, kept until the driver object is deleted.
#[derive(Debug)]
pub(crate) struct DriverRecord {
    pub(crate) features: DriverFeatures,
    pub(crate) create_failure: Option<ddi::NTSTATUS>,
    pub(crate) allocation_fault: Option<u32>,
    /// What `IoAllocateDriverObjectExtension` answers for this driver instead of allocating
    /// (a kernel whose routine is a stub, as Wine 8's).
    pub(crate) extension_refusal: Option<ddi::NTSTATUS>,
    pub(crate) drain_timeout: Duration,
    pub(crate) poison: bool,
    pub(crate) max_endpoints: usize,
    /// `.shsept` endpoints declared before the extension exists.
    pub(crate) image: Vec<usize>,
    pub(crate) extension: Option<Arc<Extension>>,
}

impl Default for DriverRecord {
    /// Enabled, no faults, poisoning on, and the engine's defaults (256 endpoints, a 5 s drain
    /// timeout: the DDI does not give the kernel's).
    fn default() -> Self {
        let engine = EngineConfig::default();
        Self {
            features: DriverFeatures::Enabled,
            create_failure: None,
            allocation_fault: None,
            extension_refusal: None,
            drain_timeout: engine.drain_timeout,
            poison: true,
            max_endpoints: engine.max_endpoints,
            image: Vec::new(),
            extension: None,
        }
    }
}

impl DriverRecord {
    /// Charges `count` allocations against the allocation fault; false if one of them is the
    /// one that must fail (the fault is then spent).
    pub(crate) fn charge(&mut self, count: usize) -> bool {
        match self.allocation_fault {
            Some(nth) if (nth as usize) <= count => {
                self.allocation_fault = None;
                false
            }
            Some(nth) => {
                #[allow(clippy::cast_possible_truncation)] // count < nth <= u32::MAX
                let left = nth - count as u32;
                self.allocation_fault = Some(left);
                true
            }
            None => true,
        }
    }
}

/// The kernel's DriverProxy state: driver-object records and live extensions by handle.
#[derive(Default)]
pub(crate) struct Kernel {
    pub(crate) drivers: HashMap<usize, DriverRecord>,
    pub(crate) extensions: HashMap<usize, Arc<Extension>>,
}

pub(crate) static KERNEL: LazyLock<Mutex<Kernel>> = LazyLock::new(Mutex::default);
/// The system-wide switch ("DriverProxy configured and not globally disabled").
static SYSTEM_ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether this host can make wrappers at all (x86-64 Linux with XSAVE): the model's
/// "Secure Kernel running".
pub(crate) fn wrappers_supported() -> bool {
    static SUPPORTED: LazyLock<bool> = LazyLock::new(|| crate::engine::thunk::check_cpu().is_ok());
    *SUPPORTED
}

/// Whether DriverProxy is available system-wide.
pub(crate) fn system_available() -> bool {
    SYSTEM_ENABLED.load(Ordering::SeqCst) && wrappers_supported()
}

/// Sets the system-wide switch.
pub(crate) fn set_system_enabled(on: bool) {
    SYSTEM_ENABLED.store(on, Ordering::SeqCst);
}

/// One endpoint of an extension.
#[derive(Clone, Copy, Debug)]
struct Endpoint {
    key: EndpointKey,
    /// V1 `ParameterCount`; `None` for image endpoints (the `.shsept` list has no arity).
    parameter_count: Option<u32>,
    wrapper: WrapperId,
    /// The implementation the wrapper forwards to now.
    current: usize,
}

/// A DriverProxy extension. Its address is the `PDRIVER_PROXY_EXTENSION` handle.
pub(crate) struct Extension {
    driver: usize,
    engine: Engine,
    /// Published endpoints, in creation order. Wrappers the engine made for a registration
    /// that then failed are never published (and never reused).
    endpoints: Mutex<Vec<Endpoint>>,
    /// Serialises registrations and swaps.
    swap_lock: Mutex<()>,
    drain_timeout_ns: AtomicU64,
    workers: AtomicUsize,
    /// A one-shot fault: the next swap fails in this phase with this status.
    injected_failure: Mutex<Option<(Phase, ddi::NTSTATUS)>>,
}

impl core::fmt::Debug for Extension {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Extension")
            .field("driver", &format_args!("{:#x}", self.driver))
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// A change the swap protocol applies.
struct Plan {
    /// Endpoints that get a new implementation.
    replace: Vec<(EndpointKey, WrapperId, usize)>,
    /// New V1 endpoints (their wrappers already made), published with the swap.
    add: Vec<Endpoint>,
}

/// A registration or swap failed with this status.
pub(crate) type Failure = ddi::NTSTATUS;

thread_local! {
    /// Extensions whose registration or swap is running on this thread (re-entry detection).
    static SWAPPING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks a registration or swap of an extension as running on this thread; bugchecks if one
/// already is (a phased callback calling back into its own extension would deadlock).
struct ReentryGuard(usize);

impl ReentryGuard {
    fn enter(extension: &Extension, routine: &str) -> Self {
        let key = core::ptr::from_ref(extension) as usize;
        SWAPPING.with_borrow_mut(|running| {
            if running.contains(&key) {
                bugcheck(
                    BugCheck::DriverProxyViolation,
                    routine,
                    format_args!(
                        "called from a phased callback of a registration or swap of the same extension {key:#x} (the DDI forbids calling back into the extension: it would deadlock)"
                    ),
                );
            }
            running.push(key);
        });
        Self(key)
    }
}

impl Drop for ReentryGuard {
    fn drop(&mut self) {
        SWAPPING.with_borrow_mut(|running| running.retain(|&k| k != self.0));
    }
}

/// The status a failed phased callback makes the registration return: its own status if it
/// is an error, `STATUS_UNSUCCESSFUL` if it was a success or informational code (anything but
/// `STATUS_SUCCESS` aborts, and a failed registration never returns a success code).
pub(crate) fn callback_failure(status: ddi::NTSTATUS) -> ddi::NTSTATUS {
    if status >= 0 {
        ddi::STATUS_UNSUCCESSFUL
    } else {
        status
    }
}

impl Extension {
    /// The handle the driver sees.
    pub(crate) fn handle(self: &Arc<Self>) -> ddi::PDRIVER_PROXY_EXTENSION {
        Arc::as_ptr(self).cast_mut().cast()
    }

    /// The driver object this extension belongs to.
    pub(crate) fn driver(&self) -> usize {
        self.driver
    }

    /// The wrapper engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Live worker threads started for this extension.
    pub(crate) fn workers(&self) -> &AtomicUsize {
        &self.workers
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_nanos(self.drain_timeout_ns.load(Ordering::SeqCst))
    }

    pub(crate) fn set_drain_timeout(&self, timeout: Duration) {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.drain_timeout_ns.store(ns, Ordering::SeqCst);
    }

    /// Creates the extension of `driver` with the configuration of `record`, making wrappers
    /// for the record's declared image endpoints. Called under the kernel lock.
    pub(crate) fn create(driver: usize, record: &DriverRecord) -> Result<Arc<Self>, Failure> {
        let engine = Engine::new(EngineConfig {
            max_endpoints: record.max_endpoints,
            drain_timeout: record.drain_timeout,
        })
        .map_err(|error| match error {
            EngineError::Unsupported => ddi::STATUS_NOT_SUPPORTED,
            _ => ddi::STATUS_INSUFFICIENT_RESOURCES,
        })?;
        engine.set_poison_retired(record.poison);
        let extension = Arc::new(Self {
            driver,
            engine,
            endpoints: Mutex::new(Vec::new()),
            swap_lock: Mutex::new(()),
            drain_timeout_ns: AtomicU64::new(0),
            workers: AtomicUsize::new(0),
            injected_failure: Mutex::new(None),
        });
        extension.set_drain_timeout(record.drain_timeout);
        extension.add_image_endpoints(&record.image)?;
        Ok(extension)
    }

    /// Makes wrappers for `.shsept` endpoints, all or none (the caller charged them).
    pub(crate) fn add_image_endpoints(&self, addresses: &[usize]) -> Result<(), Failure> {
        let mut endpoints = lock(&self.endpoints);
        let first = endpoints
            .iter()
            .filter(|e| matches!(e.key, EndpointKey::Ordinal(_)))
            .count();
        if self.engine.endpoint_count() + addresses.len() > self.engine.config().max_endpoints {
            return Err(ddi::STATUS_INSUFFICIENT_RESOURCES);
        }
        let mut made = Vec::with_capacity(addresses.len());
        for (i, &address) in addresses.iter().enumerate() {
            let wrapper = self
                .engine
                .add_endpoint(address)
                .map_err(|_| ddi::STATUS_INSUFFICIENT_RESOURCES)?;
            made.push(Endpoint {
                key: EndpointKey::Ordinal(
                    u32::try_from(first + i).map_err(|_| ddi::STATUS_INSUFFICIENT_RESOURCES)?,
                ),
                parameter_count: None,
                wrapper,
                current: address,
            });
        }
        endpoints.extend(made);
        Ok(())
    }

    /// Charges `count` allocations to this extension's driver object.
    fn charge(&self, count: usize) -> Result<(), Failure> {
        if charge(self.driver, count) {
            Ok(())
        } else {
            Err(ddi::STATUS_INSUFFICIENT_RESOURCES)
        }
    }

    /// `IoRegisterDriverProxyEndpoints` on validated pointers: `entries` (at least one; the
    /// caller checked `Count`) are `(Id, EndpointFunction address or 0, ParameterCount)`.
    pub(crate) fn register(
        &self,
        entries: &[(u32, usize, u32)],
        callback: Option<&mut dyn FnMut(Phase) -> ddi::NTSTATUS>,
    ) -> Result<(), Failure> {
        let _reentry = ReentryGuard::enter(self, "IoRegisterDriverProxyEndpoints");
        let _serial = lock(&self.swap_lock);
        for (i, &(id, function, _)) in entries.iter().enumerate() {
            if function == 0 || entries[..i].iter().any(|&(earlier, _, _)| earlier == id) {
                return Err(ddi::STATUS_INVALID_PARAMETER);
            }
        }
        let mut replace = Vec::new();
        let mut new = Vec::new();
        {
            let endpoints = lock(&self.endpoints);
            for &(id, function, parameter_count) in entries {
                match endpoints.iter().find(|e| e.key == EndpointKey::Id(id)) {
                    Some(existing) if existing.parameter_count != Some(parameter_count) => {
                        return Err(ddi::STATUS_INVALID_PARAMETER_3);
                    }
                    Some(existing) => replace.push((existing.key, existing.wrapper, function)),
                    None => new.push((id, function, parameter_count)),
                }
            }
        }
        if self.engine.endpoint_count() + new.len() > self.engine.config().max_endpoints {
            return Err(ddi::STATUS_INSUFFICIENT_RESOURCES);
        }
        self.charge(new.len())?;
        let mut add = Vec::with_capacity(new.len());
        for (id, function, parameter_count) in new {
            let wrapper = self
                .engine
                .add_endpoint(function)
                .map_err(|_| ddi::STATUS_INSUFFICIENT_RESOURCES)?;
            add.push(Endpoint {
                key: EndpointKey::Id(id),
                parameter_count: Some(parameter_count),
                wrapper,
                current: function,
            });
        }
        self.run(&Plan { replace, add }, callback).map(|_| ())
    }

    /// The control swap ("a new driver image"): new implementations for existing endpoints.
    pub(crate) fn swap(
        &self,
        changes: &[(EndpointKey, usize)],
        callback: Option<&mut dyn FnMut(Phase) -> ddi::NTSTATUS>,
    ) -> Result<SwapReport, Failure> {
        let _reentry = ReentryGuard::enter(self, "swap (control)");
        let _serial = lock(&self.swap_lock);
        if changes.is_empty() {
            return Err(ddi::STATUS_INVALID_PARAMETER);
        }
        let mut replace = Vec::with_capacity(changes.len());
        {
            let endpoints = lock(&self.endpoints);
            for (i, &(key, address)) in changes.iter().enumerate() {
                if address == 0 || changes[..i].iter().any(|&(earlier, _)| earlier == key) {
                    return Err(ddi::STATUS_INVALID_PARAMETER);
                }
                let existing = endpoints
                    .iter()
                    .find(|e| e.key == key)
                    .ok_or(ddi::STATUS_INVALID_PARAMETER)?;
                replace.push((key, existing.wrapper, address));
            }
        }
        let report = self.run(
            &Plan {
                replace,
                add: Vec::new(),
            },
            callback,
        )?;
        Ok(report.unwrap_or_else(|| unreachable!("a swap with changes runs the protocol")))
    }

    /// Runs the swap protocol for `plan` (or, for new endpoints only and no callback, just
    /// publishes them). The endpoint table is updated when the wrappers have been repointed
    /// (at the start of `PostProcess`) and restored if the swap is rolled back.
    fn run(
        &self,
        plan: &Plan,
        mut callback: Option<&mut dyn FnMut(Phase) -> ddi::NTSTATUS>,
    ) -> Result<Option<SwapReport>, Failure> {
        if plan.replace.is_empty() && callback.is_none() {
            let _ = self.publish(plan);
            return Ok(None);
        }
        let changes: Vec<(WrapperId, usize)> = plan
            .replace
            .iter()
            .map(|&(_, wrapper, target)| (wrapper, target))
            .collect();
        let mut previous = None;
        let result = {
            let mut injected = lock(&self.injected_failure).take();
            let mut phases = |phase: Phase| -> Result<(), i32> {
                if phase == Phase::PostProcess {
                    previous = Some(self.publish(plan));
                }
                if let Some(callback) = callback.as_mut() {
                    match callback(phase) {
                        ddi::STATUS_SUCCESS => {}
                        status => return Err(status),
                    }
                }
                match injected {
                    Some((failing, status)) if failing == phase => {
                        injected = None;
                        Err(status)
                    }
                    _ => Ok(()),
                }
            };
            self.engine
                .swap_with_timeout(&changes, &mut phases, self.drain_timeout())
        };
        match result {
            Ok(report) => Ok(Some(report)),
            Err(SwapError::Callback { phase, status }) => {
                if phase == Phase::PostProcess
                    && let Some(previous) = previous
                {
                    self.unpublish(plan, &previous);
                }
                Err(callback_failure(status))
            }
            Err(SwapError::DrainTimeout { .. }) => Err(ddi::STATUS_UNSUCCESSFUL),
            // The new implementations stayed: the table keeps them (published above).
            Err(SwapError::RollbackTimeout { status, .. }) => Err(callback_failure(status)),
            Err(other) => bugcheck(
                BugCheck::DriverProxyViolation,
                "swap",
                format_args!("the engine refused a swap the kernel validated: {other}"),
            ),
        }
    }

    /// Makes the next registration or swap that runs the protocol fail in `phase` with
    /// `status`, after the driver's callback for that phase (if any) succeeded: as if the
    /// callback had returned `status` there. One shot.
    pub(crate) fn inject_phase_failure(&self, phase: Phase, status: ddi::NTSTATUS) {
        *lock(&self.injected_failure) = Some((phase, status));
    }

    /// Applies `plan` to the endpoint table; returns the replaced implementations.
    fn publish(&self, plan: &Plan) -> Vec<usize> {
        let mut endpoints = lock(&self.endpoints);
        let mut previous = Vec::with_capacity(plan.replace.len());
        for &(key, _, target) in &plan.replace {
            if let Some(e) = endpoints.iter_mut().find(|e| e.key == key) {
                previous.push(std::mem::replace(&mut e.current, target));
            }
        }
        endpoints.extend(plan.add.iter().copied());
        previous
    }

    /// Undoes [`Extension::publish`].
    fn unpublish(&self, plan: &Plan, previous: &[usize]) {
        let mut endpoints = lock(&self.endpoints);
        for (&(key, _, _), &old) in plan.replace.iter().zip(previous) {
            if let Some(e) = endpoints.iter_mut().find(|e| e.key == key) {
                e.current = old;
            }
        }
        endpoints.retain(|e| !plan.add.iter().any(|a| a.key == e.key));
    }

    /// The wrapper address of the endpoint `key`.
    pub(crate) fn wrapper(&self, key: EndpointKey) -> Option<usize> {
        let endpoints = lock(&self.endpoints);
        let e = endpoints.iter().find(|e| e.key == key)?;
        Some(self.engine.wrapper_address(e.wrapper))
    }

    /// The implementation the endpoint `key` forwards to now.
    pub(crate) fn implementation(&self, key: EndpointKey) -> Option<usize> {
        lock(&self.endpoints)
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.current)
    }

    /// Every published endpoint with the implementation it forwards to now, in creation
    /// order.
    pub(crate) fn implementations(&self) -> Vec<(EndpointKey, usize)> {
        lock(&self.endpoints)
            .iter()
            .map(|e| (e.key, e.current))
            .collect()
    }

    /// Number of published endpoints.
    pub(crate) fn endpoint_count(&self) -> usize {
        lock(&self.endpoints).len()
    }

    /// The wrapper of the endpoint whose current implementation is `address` (the first in
    /// creation order).
    pub(crate) fn wrapper_of(&self, address: usize) -> Option<usize> {
        let endpoints = lock(&self.endpoints);
        let e = endpoints.iter().find(|e| e.current == address)?;
        Some(self.engine.wrapper_address(e.wrapper))
    }

    /// Whether `address` is a published wrapper of this extension that a worker thread may
    /// call: an image endpoint, or a V1 endpoint registered with `ParameterCount` 2.
    pub(crate) fn is_worker_routine(&self, address: usize) -> bool {
        let Some(wrapper) = self.engine.wrapper_at(address) else {
            return false;
        };
        lock(&self.endpoints)
            .iter()
            .any(|e| e.wrapper == wrapper && e.parameter_count.is_none_or(|n| n == 2))
    }
}

/// Charges `count` allocations to `driver`'s allocation fault; false if one of them fails.
pub(crate) fn charge(driver: usize, count: usize) -> bool {
    if count == 0 {
        return true;
    }
    lock(&KERNEL)
        .drivers
        .get_mut(&driver)
        .is_none_or(|record| record.charge(count))
}

/// The live extension behind `handle`, or `None` (no bugcheck: for the control API).
pub(crate) fn lookup(handle: ddi::PDRIVER_PROXY_EXTENSION) -> Option<Arc<Extension>> {
    lock(&KERNEL).extensions.get(&(handle as usize)).cloned()
}

/// The live extension behind `handle` for a DDI routine: `None` for null; bugcheck for
/// anything else that is not a live extension (a stale or stray handle).
pub(crate) fn resolve(
    handle: ddi::PDRIVER_PROXY_EXTENSION,
    routine: &str,
) -> Option<Arc<Extension>> {
    if handle.is_null() {
        return None;
    }
    match lookup(handle) {
        Some(extension) => Some(extension),
        None => bugcheck(
            BugCheck::DriverProxyViolation,
            routine,
            format_args!(
                "{handle:p} is not a live DriverProxy extension (never created, or its driver object was deleted)"
            ),
        ),
    }
}

/// Deletes the records of `driver`: its extension is released (kept alive only by worker
/// threads still running), its configuration forgotten.
/// What `IoAllocateDriverObjectExtension` answers for `driver` instead of allocating, if set
/// ([`crate::control::DriverControl::refuse_driver_object_extensions`]).
pub(crate) fn extension_refusal(driver: usize) -> Option<ddi::NTSTATUS> {
    lock(&KERNEL)
        .drivers
        .get(&driver)
        .and_then(|r| r.extension_refusal)
}

pub(crate) fn delete_driver_object(driver: usize) {
    let released = {
        let mut kernel = lock(&KERNEL);
        let record = kernel.drivers.remove(&driver);
        if let Some(extension) = record.as_ref().and_then(|r| r.extension.as_ref()) {
            kernel.extensions.remove(&(Arc::as_ptr(extension) as usize));
        }
        record
    };
    // The engine (if this was the last reference) is dropped here, outside the kernel lock.
    drop(released);
    super::driver_extensions::release(driver);
}
