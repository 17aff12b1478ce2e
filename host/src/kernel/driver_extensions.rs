//! Driver-object extensions: `IoAllocateDriverObjectExtension` and
//! `IoGetDriverObjectExtension`, the per-driver storage a driver (here: the `driver-proxy`
//! library, for its endpoint record) finds again by an identification address, and that the
//! I/O manager frees with the driver object.
//!
//! | routine | input | result |
//! |---|---|---|
//! | `IoAllocateDriverObjectExtension` | null driver object or out-pointer, size 0 | `STATUS_INVALID_PARAMETER`, `*DriverObjectExtension` null (*policy: the DDI does not say; Windows would fault or allocate nothing usable*) |
//! | | a refusal set for the driver ([`crate::kernel::control::DriverControl::refuse_driver_object_extensions`], e.g. Wine 8's stub) | that status, `*DriverObjectExtension` null |
//! | | an identification address already used for this driver object | `STATUS_OBJECT_NAME_COLLISION`, `*DriverObjectExtension` null |
//! | | a pool fault of the calling thread ([`crate::kernel::control::fail_pool_allocation`]) | `STATUS_INSUFFICIENT_RESOURCES`, `*DriverObjectExtension` null |
//! | | otherwise | `STATUS_SUCCESS`: a zero-filled, 16-byte aligned block |
//! | `IoGetDriverObjectExtension` | a driver object and an address with a block / without | the block / null |
//!
//! The identification address is only compared, never dereferenced (any value works, as on
//! Windows). The blocks of a driver object are freed when it is deleted
//! ([`crate::kernel::control::DriverControl::delete`]) — except while a system thread of this process
//! is still running: a model that must not free memory a thread may still use then leaks them
//! instead (a real kernel would crash later; tests stop their threads first).

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use crate::ddi;

use super::{faults, lock, threads};

/// Alignment of every block (the x64 pool's granularity).
const ALIGN: usize = 16;

struct Block {
    address: usize,
    layout: Layout,
}

/// Blocks by (driver object, identification address).
static BLOCKS: LazyLock<Mutex<HashMap<(usize, usize), Block>>> = LazyLock::new(Mutex::default);

/// `NTSTATUS IoAllocateDriverObjectExtension(PDRIVER_OBJECT DriverObject, PVOID
/// ClientIdentificationAddress, ULONG DriverObjectExtensionSize, PVOID
/// *DriverObjectExtension)`: see the module's table.
///
/// # Safety
/// `DriverObjectExtension` must be null or valid for a pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoAllocateDriverObjectExtension(
    DriverObject: ddi::PDRIVER_OBJECT,
    ClientIdentificationAddress: ddi::PVOID,
    DriverObjectExtensionSize: ddi::ULONG,
    DriverObjectExtension: *mut ddi::PVOID,
) -> ddi::NTSTATUS {
    super::irql::require(super::irql::DISPATCH, "IoAllocateDriverObjectExtension");
    if DriverObjectExtension.is_null() {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null, valid for a write (caller contract).
    unsafe { DriverObjectExtension.write(std::ptr::null_mut()) };
    if DriverObject.is_null() || DriverObjectExtensionSize == 0 {
        return ddi::STATUS_INVALID_PARAMETER;
    }
    let key = (DriverObject as usize, ClientIdentificationAddress as usize);
    if let Some(status) = super::extension::extension_refusal(key.0) {
        return status;
    }
    let mut blocks = lock(&BLOCKS);
    if blocks.contains_key(&key) {
        return ddi::STATUS_OBJECT_NAME_COLLISION;
    }
    if faults::take(&faults::POOL) {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    let Ok(layout) = Layout::from_size_align(
        (DriverObjectExtensionSize as usize).next_multiple_of(ALIGN),
        ALIGN,
    ) else {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    };
    // SAFETY: the layout has a nonzero size.
    let address = unsafe { std::alloc::alloc_zeroed(layout) };
    if address.is_null() {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    blocks.insert(
        key,
        Block {
            address: address as usize,
            layout,
        },
    );
    // SAFETY: as above.
    unsafe { DriverObjectExtension.write(address.cast()) };
    ddi::STATUS_SUCCESS
}

/// `PVOID IoGetDriverObjectExtension(PDRIVER_OBJECT DriverObject, PVOID
/// ClientIdentificationAddress)`: the block, or null.
///
/// # Safety
/// None: the arguments are only compared.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoGetDriverObjectExtension(
    DriverObject: ddi::PDRIVER_OBJECT,
    ClientIdentificationAddress: ddi::PVOID,
) -> ddi::PVOID {
    super::irql::require(super::irql::DISPATCH, "IoGetDriverObjectExtension");
    lock(&BLOCKS)
        .get(&(DriverObject as usize, ClientIdentificationAddress as usize))
        .map_or(std::ptr::null_mut(), |block| block.address as ddi::PVOID)
}

/// The number of blocks `driver` owns.
pub(crate) fn count_of(driver: usize) -> usize {
    lock(&BLOCKS).keys().filter(|(d, _)| *d == driver).count()
}

/// Frees the blocks of a deleted driver object (or leaks them while any system thread of the
/// process still runs: see the module docs).
pub(crate) fn release(driver: usize) {
    let released: Vec<Block> = {
        let mut blocks = lock(&BLOCKS);
        let keys: Vec<_> = blocks
            .keys()
            .filter(|(d, _)| *d == driver)
            .copied()
            .collect();
        keys.iter().filter_map(|key| blocks.remove(key)).collect()
    };
    if threads::live_threads_total() > 0 {
        return; // leaked on purpose
    }
    for block in released {
        // SAFETY: allocated with this layout above, removed from the table, freed once.
        unsafe { std::alloc::dealloc(block.address as *mut u8, block.layout) };
    }
}

// Every export has exactly the type of its prototype ([`crate::ddi`]).
const _: ddi::PFN_IoAllocateDriverObjectExtension = IoAllocateDriverObjectExtension;
const _: ddi::PFN_IoGetDriverObjectExtension = IoGetDriverObjectExtension;
