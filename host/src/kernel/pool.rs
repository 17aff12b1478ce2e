//! Pool: `ExAllocatePool2`, the down-level `ExAllocatePoolWithTag` (which does not zero: its
//! blocks are filled with `0xA5`, so code that relies on zeroing it did not do fails visibly),
//! and `ExFreePoolWithTag`, with per-tag accounting and faults.
//!
//! Each block also records the driver the allocating thread ran for (the I/O manager model
//! sets it while it calls into a driver; system threads inherit it), so that unloading a
//! driver can report the blocks it leaked (`outstanding_of`).

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use crate::ddi;

use super::{BugCheck, bugcheck, faults, lock};

/// `POOL_FLAG_USE_QUOTA`.
const POOL_FLAG_USE_QUOTA: ddi::POOL_FLAGS = 0x1;
/// `POOL_FLAG_UNINITIALIZED`: the caller does not need zeroed memory.
const POOL_FLAG_UNINITIALIZED: ddi::POOL_FLAGS = 0x2;
/// `POOL_FLAG_SESSION`.
const POOL_FLAG_SESSION: ddi::POOL_FLAGS = 0x4;
/// `POOL_FLAG_CACHE_ALIGNED`.
const POOL_FLAG_CACHE_ALIGNED: ddi::POOL_FLAGS = 0x8;
/// `POOL_FLAG_RAISE_ON_FAILURE`.
const POOL_FLAG_RAISE_ON_FAILURE: ddi::POOL_FLAGS = 0x20;
/// `POOL_FLAG_NON_PAGED_EXECUTE`.
const POOL_FLAG_NON_PAGED_EXECUTE: ddi::POOL_FLAGS = 0x80;
/// `POOL_FLAG_PAGED`.
const POOL_FLAG_PAGED: ddi::POOL_FLAGS = 0x100;
/// The pool-type flags, of which exactly one must be given.
const POOL_TYPES: [ddi::POOL_FLAGS; 3] = [
    ddi::POOL_FLAG_NON_PAGED,
    POOL_FLAG_NON_PAGED_EXECUTE,
    POOL_FLAG_PAGED,
];
/// Every flag this model knows.
const KNOWN_FLAGS: ddi::POOL_FLAGS = POOL_FLAG_USE_QUOTA
    | POOL_FLAG_UNINITIALIZED
    | POOL_FLAG_SESSION
    | POOL_FLAG_CACHE_ALIGNED
    | POOL_FLAG_RAISE_ON_FAILURE
    | ddi::POOL_FLAG_NON_PAGED
    | POOL_FLAG_NON_PAGED_EXECUTE
    | POOL_FLAG_PAGED;
/// What memory allocated with `POOL_FLAG_UNINITIALIZED` is filled with, so that code relying
/// on zeroed memory it did not ask for fails visibly.
pub(crate) const UNINITIALIZED_FILL: u8 = 0xA5;
/// Alignment of every block (the x64 pool's granularity).
const ALIGN: usize = 16;

/// Outstanding and total allocations of one pool tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Blocks allocated and not yet freed.
    pub outstanding: u64,
    /// Bytes in those blocks (as requested).
    pub bytes: usize,
    /// Blocks ever allocated with the tag.
    pub allocated: u64,
    /// Blocks ever freed with the tag.
    pub freed: u64,
}

struct Block {
    size: usize,
    tag: u32,
    /// The driver the allocating thread ran for ([`super::context`]), 0 for none.
    owner: usize,
}

/// Pool blocks a driver still holds, per tag: what `outstanding_of` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLeak {
    /// The pool tag (`u32::from_le_bytes(*b"Tag1")` for the tag written `'1gaT'` in C).
    pub tag: u32,
    /// Blocks allocated and not freed.
    pub blocks: u64,
    /// Bytes in those blocks (as requested).
    pub bytes: usize,
}

impl core::fmt::Display for PoolLeak {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "tag {}: {} block(s), {} byte(s)",
            super::tag_name(self.tag),
            self.blocks,
            self.bytes
        )
    }
}

/// The blocks still allocated by threads running for `driver` (the I/O manager's calls into
/// it and the system threads it started), per tag, sorted by tag.
pub(crate) fn outstanding_of(driver: usize) -> Vec<PoolLeak> {
    let pool = lock(&POOL);
    let mut leaks: Vec<PoolLeak> = Vec::new();
    for block in pool.blocks.values().filter(|b| b.owner == driver) {
        match leaks.iter_mut().find(|l| l.tag == block.tag) {
            Some(leak) => {
                leak.blocks += 1;
                leak.bytes += block.size;
            }
            None => leaks.push(PoolLeak {
                tag: block.tag,
                blocks: 1,
                bytes: block.size,
            }),
        }
    }
    leaks.sort_by_key(|l| l.tag);
    leaks
}

#[derive(Default)]
struct Pool {
    blocks: HashMap<usize, Block>,
    tags: HashMap<u32, PoolUsage>,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(Mutex::default);

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1).next_multiple_of(ALIGN), ALIGN).unwrap_or_else(|_| {
        bugcheck(
            BugCheck::BadPoolCaller,
            "ExAllocatePool2",
            format_args!("size {size:#x} overflows"),
        )
    })
}

/// The usage of `tag` so far.
pub(crate) fn usage(tag: u32) -> PoolUsage {
    lock(&POOL).tags.get(&tag).copied().unwrap_or_default()
}

/// `PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag)`: a block of
/// `NumberOfBytes` bytes, 16-byte aligned, zeroed (filled with `0xA5` under
/// `POOL_FLAG_UNINITIALIZED`), or null when out of resources (a fault of this thread, see
/// `control::fail_pool_allocation`). A size of 0 gives a valid, distinct block.
///
/// Bugchecks (`BAD_POOL_CALLER`): unknown flags, or not exactly one of `POOL_FLAG_NON_PAGED`,
/// `POOL_FLAG_NON_PAGED_EXECUTE`, `POOL_FLAG_PAGED`.
///
/// # Safety
/// None beyond the C contract: the block is the caller's until `ExFreePoolWithTag`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAllocatePool2(
    Flags: ddi::POOL_FLAGS,
    NumberOfBytes: usize,
    Tag: ddi::ULONG,
) -> ddi::PVOID {
    const NAME: &str = "ExAllocatePool2";
    if Flags & !KNOWN_FLAGS != 0 {
        bugcheck(
            BugCheck::BadPoolCaller,
            NAME,
            format_args!("unknown pool flags {Flags:#x}"),
        );
    }
    if POOL_TYPES.iter().filter(|&&t| Flags & t != 0).count() != 1 {
        bugcheck(
            BugCheck::BadPoolCaller,
            NAME,
            format_args!("flags {Flags:#x} name no pool type or more than one"),
        );
    }
    // Paged pool: <= APC_LEVEL; non-paged: <= DISPATCH_LEVEL.
    let max = if Flags & POOL_FLAG_PAGED != 0 {
        super::irql::APC
    } else {
        super::irql::DISPATCH
    };
    super::irql::require(max, NAME);
    allocate(NumberOfBytes, Tag, Flags & POOL_FLAG_UNINITIALIZED == 0)
}

/// `POOL_TYPE` values this model accepts: `NonPagedPool`, `PagedPool`, `NonPagedPoolNx`.
const POOL_TYPE_VALUES: [ddi::POOL_TYPE; 3] = [0, 1, ddi::NonPagedPoolNx];

/// `PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)`: a block
/// of `NumberOfBytes` bytes, 16-byte aligned, **not zeroed** (filled with `0xA5`), or null
/// when out of resources (a fault of this thread). Accounted like `ExAllocatePool2`'s blocks.
///
/// Bugchecks (`BAD_POOL_CALLER`): a pool type other than `NonPagedPool`, `PagedPool`,
/// `NonPagedPoolNx`.
///
/// # Safety
/// None beyond the C contract: the block is the caller's until `ExFreePoolWithTag`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExAllocatePoolWithTag(
    PoolType: ddi::POOL_TYPE,
    NumberOfBytes: usize,
    Tag: ddi::ULONG,
) -> ddi::PVOID {
    if !POOL_TYPE_VALUES.contains(&PoolType) {
        bugcheck(
            BugCheck::BadPoolCaller,
            "ExAllocatePoolWithTag",
            format_args!("pool type {PoolType} is not modelled"),
        );
    }
    // PagedPool (1): <= APC_LEVEL; non-paged: <= DISPATCH_LEVEL.
    let max = if PoolType == 1 {
        super::irql::APC
    } else {
        super::irql::DISPATCH
    };
    super::irql::require(max, "ExAllocatePoolWithTag");
    allocate(NumberOfBytes, Tag, false)
}

/// A block for either allocator: zeroed, or filled with [`UNINITIALIZED_FILL`].
fn allocate(NumberOfBytes: usize, Tag: ddi::ULONG, zeroed: bool) -> ddi::PVOID {
    if faults::take(&faults::POOL) {
        return std::ptr::null_mut();
    }
    let layout = layout(NumberOfBytes);
    // SAFETY: the layout has a nonzero size.
    let block = unsafe { std::alloc::alloc_zeroed(layout) };
    if block.is_null() {
        return std::ptr::null_mut();
    }
    if !zeroed {
        // SAFETY: `block` is a fresh allocation of `layout.size()` bytes.
        unsafe { block.write_bytes(UNINITIALIZED_FILL, layout.size()) };
    }
    let mut pool = lock(&POOL);
    pool.blocks.insert(
        block as usize,
        Block {
            size: NumberOfBytes,
            tag: Tag,
            owner: super::context::current(),
        },
    );
    let usage = pool.tags.entry(Tag).or_default();
    usage.outstanding += 1;
    usage.bytes += NumberOfBytes;
    usage.allocated += 1;
    block.cast()
}

/// `VOID ExFreePoolWithTag(PVOID P, ULONG Tag)`.
///
/// Bugchecks (`BAD_POOL_CALLER`): a null pointer, a pointer that is not an outstanding block
/// of this pool (double free, foreign memory), or a tag that differs from the allocation's.
///
/// # Safety
/// `P` must not be used after the call.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExFreePoolWithTag(P: ddi::PVOID, Tag: ddi::ULONG) {
    const NAME: &str = "ExFreePoolWithTag";
    super::irql::require(super::irql::DISPATCH, "ExFreePoolWithTag");
    let mut pool = lock(&POOL);
    let Some(block) = pool.blocks.get(&(P as usize)) else {
        drop(pool);
        bugcheck(
            BugCheck::BadPoolCaller,
            NAME,
            format_args!(
                "{P:p} is not an allocated pool block (null, freed twice, or not from ExAllocatePool2)"
            ),
        );
    };
    if block.tag != Tag {
        let allocated = block.tag;
        drop(pool);
        bugcheck(
            BugCheck::BadPoolCaller,
            NAME,
            format_args!(
                "{P:p} was allocated with tag {} and freed with tag {}",
                super::tag_name(allocated),
                super::tag_name(Tag)
            ),
        );
    }
    let Some(block) = pool.blocks.remove(&(P as usize)) else {
        unreachable!("checked above under the same lock");
    };
    let usage = pool.tags.entry(Tag).or_default();
    usage.outstanding -= 1;
    usage.bytes -= block.size;
    usage.freed += 1;
    drop(pool);
    // SAFETY: `P` was allocated by `ExAllocatePool2` with this layout and is freed once (it
    // was just removed from the table).
    unsafe { std::alloc::dealloc(P.cast(), layout(block.size)) };
}

// Every export has exactly the type of its prototype ([`crate::ddi`]).
const _: ddi::PFN_ExAllocatePool2 = ExAllocatePool2;
const _: ddi::PFN_ExAllocatePoolWithTag = ExAllocatePoolWithTag;
const _: ddi::PFN_ExFreePoolWithTag = ExFreePoolWithTag;
