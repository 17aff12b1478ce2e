//! Run-time resolution of the kernel routines this crate calls.
//!
//! A driver that statically imports an export the running kernel lacks does not load
//! (`STATUS_DRIVER_ENTRYPOINT_NOT_FOUND`). DriverProxy exists only on recent Windows 11, so
//! every routine the crate calls is looked up by name with `MmGetSystemRoutineAddress`, its
//! only static import, the way storport.sys and acpi.sys do it. Resolution happens once, on
//! the first call into the crate (which must be at `PASSIVE_LEVEL`), and is cached in a
//! race-free [`OnceCell`]; a missing DriverProxy export means "hot-swap unavailable", never a
//! failed load.
//!
//! The routines are grouped by what needs them ([`Exports::hot_swap`], [`Exports::workers`],
//! [`Exports::fallback_threads`], [`Exports::events`]): `HotSwap::new` checks each group once,
//! so a missing routine is reported there, by name, and never by a later call.

mod once;

use core::ffi::c_void;

pub(crate) use once::OnceCell;

use crate::sys::{self, RoutineName, kernel_names, names};

/// The DriverProxy routines; `None` where the running kernel does not export one.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProxyRoutines {
    pub(crate) get_features: Option<sys::PFN_IoGetDriverProxyFeatures>,
    pub(crate) create_extension: Option<sys::PFN_IoCreateDriverProxyExtension>,
    pub(crate) extension_from_driver_object:
        Option<sys::PFN_IoGetDriverProxyExtensionFromDriverObject>,
    pub(crate) register_endpoints: Option<sys::PFN_IoRegisterDriverProxyEndpoints>,
    pub(crate) endpoint_wrapper_by_id: Option<sys::PFN_IoGetDriverProxyEndpointWrapper>,
    pub(crate) wrapper_from_endpoint: Option<sys::PFN_IofGetDriverProxyWrapperFromEndpoint>,
    pub(crate) create_worker_thread: Option<sys::PFN_IoDriverProxyCreateHotSwappableWorkerThread>,
}

/// General kernel routines: events, driver-object extensions, threads. Present on every
/// Windows this crate supports, but still resolved so the crate keeps a single static import
/// and reports a missing one by name instead of failing to load.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KernelRoutines {
    pub(crate) initialize_event: Option<sys::PFN_KeInitializeEvent>,
    pub(crate) set_event: Option<sys::PFN_KeSetEvent>,
    pub(crate) clear_event: Option<sys::PFN_KeClearEvent>,
    pub(crate) reset_event: Option<sys::PFN_KeResetEvent>,
    pub(crate) read_state_event: Option<sys::PFN_KeReadStateEvent>,
    pub(crate) wait_for_multiple_objects: Option<sys::PFN_KeWaitForMultipleObjects>,
    pub(crate) create_system_thread: Option<sys::PFN_PsCreateSystemThread>,
    pub(crate) close: Option<sys::PFN_ZwClose>,
    pub(crate) wait_for_single_object: Option<sys::PFN_ZwWaitForSingleObject>,
    pub(crate) allocate_driver_object_extension: Option<sys::PFN_IoAllocateDriverObjectExtension>,
    pub(crate) get_driver_object_extension: Option<sys::PFN_IoGetDriverObjectExtension>,
    pub(crate) allocate_pool2: Option<sys::PFN_ExAllocatePool2>,
    pub(crate) allocate_pool_with_tag: Option<sys::PFN_ExAllocatePoolWithTag>,
    pub(crate) free_pool: Option<sys::PFN_ExFreePoolWithTag>,
}

/// Every routine the crate may call, as resolved on this system.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Exports {
    pub(crate) proxy: ProxyRoutines,
    pub(crate) kernel: KernelRoutines,
}

/// The name of a routine the running kernel does not export.
pub(crate) type Missing = &'static str;

/// Takes a resolved routine, or names it.
fn need<P>(routine: Option<P>, name: &RoutineName) -> Result<P, Missing> {
    routine.ok_or(name.ascii)
}

/// The seven DriverProxy routines, all present.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HotSwapRoutines {
    pub(crate) get_features: sys::PFN_IoGetDriverProxyFeatures,
    pub(crate) create_extension: sys::PFN_IoCreateDriverProxyExtension,
    pub(crate) extension_from_driver_object: sys::PFN_IoGetDriverProxyExtensionFromDriverObject,
    pub(crate) register_endpoints: sys::PFN_IoRegisterDriverProxyEndpoints,
    pub(crate) endpoint_wrapper_by_id: sys::PFN_IoGetDriverProxyEndpointWrapper,
    pub(crate) wrapper_from_endpoint: sys::PFN_IofGetDriverProxyWrapperFromEndpoint,
    pub(crate) create_worker_thread: sys::PFN_IoDriverProxyCreateHotSwappableWorkerThread,
    /// The storage of the endpoint record (`crate::record`).
    pub(crate) storage: StorageRoutines,
}

/// Driver-object extensions: the storage this crate owns for a driver.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StorageRoutines {
    pub(crate) allocate: sys::PFN_IoAllocateDriverObjectExtension,
    pub(crate) get: sys::PFN_IoGetDriverObjectExtension,
}

/// The event routines, all present: what an initialised [`crate::EventRef`] calls. `repr(C)`:
/// a worker thread's storage keeps a copy, which an image of another compilation may read.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventRoutines {
    pub(crate) initialize: sys::PFN_KeInitializeEvent,
    pub(crate) set: sys::PFN_KeSetEvent,
    pub(crate) clear: sys::PFN_KeClearEvent,
    pub(crate) reset: sys::PFN_KeResetEvent,
    pub(crate) read_state: sys::PFN_KeReadStateEvent,
}

/// Non-paged pool: `ExAllocatePool2` where the kernel has it (zeroed), else
/// `ExAllocatePoolWithTag(NonPagedPoolNx)` and zeroing by hand; `ExFreePoolWithTag`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolRoutines {
    pub(crate) allocate: Allocate,
    pub(crate) free: sys::PFN_ExFreePoolWithTag,
}

/// How [`PoolRoutines`] allocates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Allocate {
    /// `ExAllocatePool2(POOL_FLAG_NON_PAGED, …)`: zeroed (Windows 10 2004 and later).
    Pool2(sys::PFN_ExAllocatePool2),
    /// `ExAllocatePoolWithTag(NonPagedPoolNx, …)`, then zeroed here (every Windows).
    WithTag(sys::PFN_ExAllocatePoolWithTag),
}

impl PoolRoutines {
    /// A zeroed, 16-byte aligned non-paged block of `size` bytes tagged `tag`, or null.
    ///
    /// # Safety
    /// `IRQL <= DISPATCH_LEVEL`; the block is the caller's until freed with [`PoolRoutines::free`].
    pub(crate) unsafe fn allocate_zeroed(self, size: usize, tag: u32) -> *mut u8 {
        match self.allocate {
            Allocate::Pool2(allocate) => {
                // SAFETY: resolved routine; non-paged pool of `size` bytes.
                unsafe { allocate(sys::POOL_FLAG_NON_PAGED, size, tag) }.cast()
            }
            Allocate::WithTag(allocate) => {
                // SAFETY: resolved routine; non-paged pool of `size` bytes.
                let block = unsafe { allocate(sys::NonPagedPoolNx, size, tag) }.cast::<u8>();
                if !block.is_null() {
                    // SAFETY: a fresh block of `size` bytes, not zeroed by this allocator.
                    unsafe { block.write_bytes(0, size) };
                }
                block
            }
        }
    }

    /// Frees a block of [`PoolRoutines::allocate_zeroed`].
    ///
    /// # Safety
    /// `block` came from `allocate_zeroed` with `tag` and is not used any more.
    pub(crate) unsafe fn free(self, block: *mut u8, tag: u32) {
        // SAFETY: caller contract.
        unsafe { (self.free)(block.cast(), tag) };
    }
}

/// What every worker thread needs, hot-swappable or not: pool for its storage, events, and
/// waiting for and closing its handle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WorkerRoutines {
    pub(crate) pool: PoolRoutines,
    pub(crate) events: EventRoutines,
    pub(crate) wait_for_single_object: sys::PFN_ZwWaitForSingleObject,
    pub(crate) close: sys::PFN_ZwClose,
}

/// What the fallback worker thread needs besides [`WorkerRoutines`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct FallbackThreadRoutines {
    pub(crate) create_system_thread: sys::PFN_PsCreateSystemThread,
    pub(crate) wait_for_multiple_objects: sys::PFN_KeWaitForMultipleObjects,
}

impl Exports {
    /// Everything hot-swap needs (the seven DriverProxy routines and the storage of the
    /// endpoint record), or the first routine missing, in the order listed.
    pub(crate) fn hot_swap(&self) -> Result<HotSwapRoutines, Missing> {
        let p = &self.proxy;
        Ok(HotSwapRoutines {
            get_features: need(p.get_features, &names::IO_GET_DRIVER_PROXY_FEATURES)?,
            create_extension: need(p.create_extension, &names::IO_CREATE_DRIVER_PROXY_EXTENSION)?,
            extension_from_driver_object: need(
                p.extension_from_driver_object,
                &names::IO_GET_DRIVER_PROXY_EXTENSION_FROM_DRIVER_OBJECT,
            )?,
            register_endpoints: need(
                p.register_endpoints,
                &names::IO_REGISTER_DRIVER_PROXY_ENDPOINTS,
            )?,
            endpoint_wrapper_by_id: need(
                p.endpoint_wrapper_by_id,
                &names::IO_GET_DRIVER_PROXY_ENDPOINT_WRAPPER,
            )?,
            wrapper_from_endpoint: need(
                p.wrapper_from_endpoint,
                &names::IOF_GET_DRIVER_PROXY_WRAPPER_FROM_ENDPOINT,
            )?,
            create_worker_thread: need(
                p.create_worker_thread,
                &names::IO_DRIVER_PROXY_CREATE_HOT_SWAPPABLE_WORKER_THREAD,
            )?,
            storage: self.storage()?,
        })
    }

    /// Driver-object extensions.
    pub(crate) fn storage(&self) -> Result<StorageRoutines, Missing> {
        let k = &self.kernel;
        Ok(StorageRoutines {
            allocate: need(
                k.allocate_driver_object_extension,
                &kernel_names::IO_ALLOCATE_DRIVER_OBJECT_EXTENSION,
            )?,
            get: need(
                k.get_driver_object_extension,
                &kernel_names::IO_GET_DRIVER_OBJECT_EXTENSION,
            )?,
        })
    }

    /// Pool, with the down-level allocator where `ExAllocatePool2` is missing. A kernel with
    /// neither allocator is named by the one every Windows has, `ExAllocatePoolWithTag`.
    pub(crate) fn pool(&self) -> Result<PoolRoutines, Missing> {
        let k = &self.kernel;
        let allocate = match (k.allocate_pool2, k.allocate_pool_with_tag) {
            (Some(pool2), _) => Allocate::Pool2(pool2),
            (None, Some(with_tag)) => Allocate::WithTag(with_tag),
            (None, None) => return Err(kernel_names::EX_ALLOCATE_POOL_WITH_TAG.ascii),
        };
        Ok(PoolRoutines {
            allocate,
            free: need(k.free_pool, &kernel_names::EX_FREE_POOL_WITH_TAG)?,
        })
    }

    /// The event routines.
    pub(crate) fn events(&self) -> Result<EventRoutines, Missing> {
        let k = &self.kernel;
        Ok(EventRoutines {
            initialize: need(k.initialize_event, &kernel_names::KE_INITIALIZE_EVENT)?,
            set: need(k.set_event, &kernel_names::KE_SET_EVENT)?,
            clear: need(k.clear_event, &kernel_names::KE_CLEAR_EVENT)?,
            reset: need(k.reset_event, &kernel_names::KE_RESET_EVENT)?,
            read_state: need(k.read_state_event, &kernel_names::KE_READ_STATE_EVENT)?,
        })
    }

    /// What every worker thread needs.
    pub(crate) fn workers(&self) -> Result<WorkerRoutines, Missing> {
        let k = &self.kernel;
        Ok(WorkerRoutines {
            pool: self.pool()?,
            events: self.events()?,
            wait_for_single_object: need(
                k.wait_for_single_object,
                &kernel_names::ZW_WAIT_FOR_SINGLE_OBJECT,
            )?,
            close: need(k.close, &kernel_names::ZW_CLOSE)?,
        })
    }

    /// What the fallback worker thread needs besides [`Exports::workers`].
    pub(crate) fn fallback_threads(&self) -> Result<FallbackThreadRoutines, Missing> {
        let k = &self.kernel;
        Ok(FallbackThreadRoutines {
            create_system_thread: need(
                k.create_system_thread,
                &kernel_names::PS_CREATE_SYSTEM_THREAD,
            )?,
            wait_for_multiple_objects: need(
                k.wait_for_multiple_objects,
                &kernel_names::KE_WAIT_FOR_MULTIPLE_OBJECTS,
            )?,
        })
    }
}

/// Looks up a routine and gives it its C type.
///
/// # Safety
/// `P` must be the exact function-pointer type of the routine called `name` (an `Option`
/// of an `extern "system" fn` of the documented signature).
unsafe fn lookup<P: Copy>(
    resolve: &mut dyn FnMut(&RoutineName) -> *mut c_void,
    name: &RoutineName,
) -> Option<P> {
    const { assert!(core::mem::size_of::<Option<P>>() == core::mem::size_of::<*mut c_void>()) };
    let address = resolve(name);
    if address.is_null() {
        return None;
    }
    // SAFETY: the address is non-null and, per the caller, the export's signature is `P`;
    // a function pointer has the size and representation of a data pointer on every target
    // this crate supports (asserted above).
    Some(unsafe { core::mem::transmute_copy::<*mut c_void, P>(&address) })
}

impl Exports {
    /// Resolves every routine through `resolve`, which returns null for a missing export.
    pub(crate) fn resolve_with(resolve: &mut dyn FnMut(&RoutineName) -> *mut c_void) -> Self {
        // SAFETY: for every `lookup` below, the field's type is the PFN_ type declared in `sys`
        // for the routine of that name, transcribed from `docs/ddi.md`.
        unsafe {
            Self {
                proxy: ProxyRoutines {
                    get_features: lookup(resolve, &names::IO_GET_DRIVER_PROXY_FEATURES),
                    create_extension: lookup(resolve, &names::IO_CREATE_DRIVER_PROXY_EXTENSION),
                    extension_from_driver_object: lookup(
                        resolve,
                        &names::IO_GET_DRIVER_PROXY_EXTENSION_FROM_DRIVER_OBJECT,
                    ),
                    register_endpoints: lookup(resolve, &names::IO_REGISTER_DRIVER_PROXY_ENDPOINTS),
                    endpoint_wrapper_by_id: lookup(
                        resolve,
                        &names::IO_GET_DRIVER_PROXY_ENDPOINT_WRAPPER,
                    ),
                    wrapper_from_endpoint: lookup(
                        resolve,
                        &names::IOF_GET_DRIVER_PROXY_WRAPPER_FROM_ENDPOINT,
                    ),
                    create_worker_thread: lookup(
                        resolve,
                        &names::IO_DRIVER_PROXY_CREATE_HOT_SWAPPABLE_WORKER_THREAD,
                    ),
                },
                kernel: KernelRoutines {
                    initialize_event: lookup(resolve, &kernel_names::KE_INITIALIZE_EVENT),
                    set_event: lookup(resolve, &kernel_names::KE_SET_EVENT),
                    clear_event: lookup(resolve, &kernel_names::KE_CLEAR_EVENT),
                    reset_event: lookup(resolve, &kernel_names::KE_RESET_EVENT),
                    read_state_event: lookup(resolve, &kernel_names::KE_READ_STATE_EVENT),
                    wait_for_multiple_objects: lookup(
                        resolve,
                        &kernel_names::KE_WAIT_FOR_MULTIPLE_OBJECTS,
                    ),
                    create_system_thread: lookup(resolve, &kernel_names::PS_CREATE_SYSTEM_THREAD),
                    close: lookup(resolve, &kernel_names::ZW_CLOSE),
                    wait_for_single_object: lookup(
                        resolve,
                        &kernel_names::ZW_WAIT_FOR_SINGLE_OBJECT,
                    ),
                    allocate_driver_object_extension: lookup(
                        resolve,
                        &kernel_names::IO_ALLOCATE_DRIVER_OBJECT_EXTENSION,
                    ),
                    get_driver_object_extension: lookup(
                        resolve,
                        &kernel_names::IO_GET_DRIVER_OBJECT_EXTENSION,
                    ),
                    allocate_pool2: lookup(resolve, &kernel_names::EX_ALLOCATE_POOL2),
                    allocate_pool_with_tag: lookup(
                        resolve,
                        &kernel_names::EX_ALLOCATE_POOL_WITH_TAG,
                    ),
                    free_pool: lookup(resolve, &kernel_names::EX_FREE_POOL_WITH_TAG),
                },
            }
        }
    }
}

/// Asks the kernel for the address of `name`.
fn system_routine_address(name: &RoutineName) -> *mut c_void {
    #[allow(clippy::cast_possible_truncation)] // routine names are a few dozen characters
    let bytes = (name.utf16.len() * 2) as u16;
    let mut unicode = sys::UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: name.utf16.as_ptr().cast_mut(),
    };
    // SAFETY: `unicode` describes a valid UTF-16 buffer that outlives the call (the kernel only
    // reads it); the crate documents that its first call must be made at PASSIVE_LEVEL.
    unsafe { sys::MmGetSystemRoutineAddress(&raw mut unicode) }
}

#[cfg(not(loom))]
static EXPORTS: OnceCell<Exports> = OnceCell::new();

/// The routines of the running system, resolved on first use.
///
/// IRQL: `PASSIVE_LEVEL` for the first call (it calls `MmGetSystemRoutineAddress`); any
/// IRQL afterwards.
#[cfg(not(loom))]
pub(crate) fn exports() -> &'static Exports {
    EXPORTS.get_or_init(|| Exports::resolve_with(&mut system_routine_address))
}

/// Under loom the global cell cannot be a `static` (loom objects live inside a model).
#[cfg(loom)]
pub(crate) fn exports() -> &'static Exports {
    loom::lazy_static! {
        static ref EXPORTS: OnceCell<Exports> = OnceCell::new();
    }
    EXPORTS.get_or_init(|| Exports::resolve_with(&mut system_routine_address))
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    unsafe extern "system" fn fake_features(
        _: sys::PDRIVER_OBJECT,
        _: *mut sys::DRIVER_PROXY_FEATURE_FLAGS,
    ) {
    }

    #[test]
    fn every_routine_is_looked_up_by_its_utf16_name_exactly_once() {
        let mut asked = Vec::new();
        let _ = Exports::resolve_with(&mut |name| {
            let decoded: std::string::String = char::decode_utf16(name.utf16.iter().copied())
                .map(Result::unwrap)
                .collect();
            assert_eq!(decoded, name.ascii);
            asked.push(name.ascii);
            core::ptr::null_mut()
        });
        asked.sort_unstable();
        let before = asked.len();
        asked.dedup();
        assert_eq!(before, asked.len(), "a routine was resolved twice");
        assert_eq!(asked.len(), 21);
        for name in [
            "ExAllocatePool2",
            "ExAllocatePoolWithTag",
            "ExFreePoolWithTag",
        ] {
            assert!(asked.contains(&name), "{name} not resolved");
        }
        for name in [
            "IoGetDriverProxyFeatures",
            "IoCreateDriverProxyExtension",
            "IoGetDriverProxyExtensionFromDriverObject",
            "IoRegisterDriverProxyEndpoints",
            "IoGetDriverProxyEndpointWrapper",
            "IofGetDriverProxyWrapperFromEndpoint",
            "IoDriverProxyCreateHotSwappableWorkerThread",
        ] {
            assert!(asked.contains(&name), "{name} not resolved");
        }
    }

    #[test]
    fn a_missing_export_resolves_to_none_and_a_present_one_to_its_address() {
        let exports = Exports::resolve_with(&mut |name| {
            if name.ascii == "IoGetDriverProxyFeatures" {
                fake_features as *mut c_void
            } else {
                core::ptr::null_mut()
            }
        });
        assert_eq!(
            exports.proxy.get_features.map(|f| f as usize),
            Some(fake_features as *const () as usize)
        );
        assert!(exports.proxy.create_extension.is_none());
        assert!(exports.kernel.set_event.is_none());
        assert_eq!(
            exports.hot_swap().err(),
            Some("IoCreateDriverProxyExtension")
        );
        assert_eq!(exports.events().err(), Some("KeInitializeEvent"));
        assert_eq!(exports.pool().err(), Some("ExAllocatePoolWithTag"));
    }
}

#[cfg(all(test, not(loom)))]
mod pool_tests {
    extern crate std;
    use super::*;
    use std::cell::RefCell;
    use std::vec::Vec;

    std::thread_local! {
        static BLOCKS: RefCell<Vec<(usize, usize, u32)>> = const { RefCell::new(Vec::new()) };
    }

    /// A down-level allocator that, like the real one, does not zero.
    unsafe extern "system" fn with_tag(
        pool_type: sys::POOL_TYPE,
        size: usize,
        tag: u32,
    ) -> sys::PVOID {
        assert_eq!(pool_type, sys::NonPagedPoolNx);
        let layout = std::alloc::Layout::from_size_align(size, 16).unwrap();
        // SAFETY: nonzero size in these tests.
        let block = unsafe { std::alloc::alloc(layout) };
        // SAFETY: a fresh block of `size` bytes.
        unsafe { block.write_bytes(0xA5, size) };
        BLOCKS.with(|b| b.borrow_mut().push((block as usize, size, tag)));
        block.cast()
    }

    unsafe extern "system" fn free(block: sys::PVOID, tag: u32) {
        let (_, size, allocated_tag) = BLOCKS.with(|b| {
            let mut blocks = b.borrow_mut();
            let at = blocks
                .iter()
                .position(|&(a, _, _)| a == block as usize)
                .unwrap();
            blocks.remove(at)
        });
        assert_eq!(tag, allocated_tag);
        let layout = std::alloc::Layout::from_size_align(size, 16).unwrap();
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(block.cast(), layout) };
    }

    #[test]
    fn without_exallocatepool2_the_down_level_allocator_is_used_and_zeroed() {
        let exports = Exports::resolve_with(&mut |name| match name.ascii {
            "ExAllocatePoolWithTag" => with_tag as *mut c_void,
            "ExFreePoolWithTag" => free as *mut c_void,
            _ => core::ptr::null_mut(),
        });
        let pool = exports.pool().unwrap();
        assert!(matches!(pool.allocate, Allocate::WithTag(_)));
        // SAFETY: a test block, freed below with its tag.
        unsafe {
            let block = pool.allocate_zeroed(100, 0x1234);
            assert!(!block.is_null());
            assert!(
                core::slice::from_raw_parts(block, 100)
                    .iter()
                    .all(|&b| b == 0)
            );
            pool.free(block, 0x1234);
        }
        assert!(BLOCKS.with(|b| b.borrow().is_empty()));
    }
}
