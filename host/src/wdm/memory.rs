//! Memory descriptor lists and the routines drivers call on them (`IoAllocateMdl`,
//! `IoFreeMdl`, `MmBuildMdlForNonPagedPool`, `MmProbeAndLockPages`, `MmUnlockPages`,
//! `MmMapLockedPagesSpecifyCache`, `MmUnmapLockedPages`), the buffer probes of
//! `METHOD_NEITHER` (`ProbeForRead`, `ProbeForWrite`), and the MDLs the I/O manager builds
//! for direct I/O. All Microsoft x64. The contracts are in the docs of [`super`].
//!
//! # One address space
//!
//! The caller's buffers, "user" memory, and the driver share this process's address space,
//! so a system mapping of locked pages is the buffer's own address: `MmMapLockedPagesSpecifyCache`
//! returns `StartVa + ByteOffset` and nothing is copied. What the model tracks is the *state*
//! a real kernel would have: locked or not, mapped or not, who allocated the MDL, whether it
//! is attached to an IRP; each routine checks that state as Driver Verifier would and
//! bugchecks, naming the routine and the MDL, where Windows (with Verifier) stops. The page
//! frame numbers after the MDL are the buffer's virtual page numbers (nothing on this host has
//! physical addresses); a driver that programs DMA from them is outside the model.

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use crate::ddi::{self, PVOID, ULONG};

use super::types::{
    IRP, MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_PAGES_LOCKED, MDL_SOURCE_IS_NONPAGED_POOL,
    MDL_WRITE_OPERATION,
};
use crate::kernel::{BugCheck, bugcheck, context, faults, lock};

/// The page size of x64.
const PAGE: usize = 0x1000;
/// `MmUserProbeAddress` of x64 Windows: the first address above user space that a probe
/// refuses.
pub const MM_USER_PROBE_ADDRESS: usize = 0x7FFF_FFFF_0000;
/// The longest buffer `IoAllocateMdl` describes (Windows: about 4 GiB minus a page; the model
/// takes 2 GiB, which no test comes near).
const MAX_MDL_LENGTH: usize = 0x8000_0000;
/// `KernelMode`.
const KERNEL_MODE: i8 = 0;
/// `UserMode`.
const USER_MODE: i8 = 1;
/// `IoReadAccess` (`LOCK_OPERATION`).
const IO_READ_ACCESS: i32 = 0;
/// `IoModifyAccess`, the largest `LOCK_OPERATION`.
const IO_MODIFY_ACCESS: i32 = 2;
/// `STATUS_ACCESS_VIOLATION`.
const STATUS_ACCESS_VIOLATION: u32 = 0xC000_0005;
/// `STATUS_DATATYPE_MISALIGNMENT`.
const STATUS_DATATYPE_MISALIGNMENT: u32 = 0x8000_0002;

/// Who allocated an MDL of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The I/O manager, for a request's direct I/O: freed by it at completion.
    IoManager,
    /// `IoAllocateMdl`, running for this driver (a driver object's address, 0 for none).
    Driver(usize),
}

#[derive(Debug)]
struct Record {
    owner: Owner,
    layout: Layout,
    /// Attached to this IRP's chain (`IoAllocateMdl` with an IRP, or the I/O manager's own):
    /// freed by the I/O manager when the request is over.
    irp: usize,
}

/// The MDLs allocated by `IoAllocateMdl` and by the I/O manager, by address.
static MDLS: LazyLock<Mutex<HashMap<usize, Record>>> = LazyLock::new(Mutex::default);

/// Pages spanned by `length` bytes at `address`.
fn pages(address: usize, length: usize) -> usize {
    if length == 0 {
        return 0;
    }
    (address % PAGE + length).div_ceil(PAGE)
}

/// Allocates and fills an MDL for `length` bytes at `address`, recorded for `owner`.
fn allocate(address: usize, length: usize, owner: Owner, irp: usize) -> Option<*mut MDL> {
    let count = pages(address, length);
    let size = size_of::<MDL>() + count * size_of::<u64>();
    let mdl_size = i16::try_from(size).ok()?;
    let layout = Layout::from_size_align(size, 16).ok()?;
    // SAFETY: the layout has a nonzero size (at least the MDL).
    let block = unsafe { std::alloc::alloc_zeroed(layout) };
    if block.is_null() {
        return None;
    }
    #[allow(clippy::cast_ptr_alignment)] // 16-byte aligned
    let mdl = block.cast::<MDL>();
    // SAFETY: a fresh, zeroed block of `size` bytes: the MDL and `count` page numbers.
    unsafe {
        (*mdl).Size = mdl_size;
        (*mdl).StartVa = (address & !(PAGE - 1)) as PVOID;
        #[allow(clippy::cast_possible_truncation)] // < PAGE; `length` checked by the callers
        {
            (*mdl).ByteOffset = (address % PAGE) as ULONG;
            (*mdl).ByteCount = length as ULONG;
        }
        #[allow(clippy::cast_ptr_alignment)] // 16-byte aligned block + 0x30
        let frames = block.add(size_of::<MDL>()).cast::<u64>();
        for page in 0..count {
            frames.add(page).write(((address / PAGE) + page) as u64);
        }
    }
    lock(&MDLS).insert(mdl as usize, Record { owner, layout, irp });
    Some(mdl)
}

/// Frees an MDL of the table.
fn free(mdl: *mut MDL) {
    if let Some(record) = lock(&MDLS).remove(&(mdl as usize)) {
        // SAFETY: allocated by `allocate` with this layout, removed from the table once.
        unsafe { std::alloc::dealloc(mdl.cast(), record.layout) };
    }
}

/// The address an MDL describes (`MmGetMdlVirtualAddress`).
///
/// # Safety
/// `mdl` is a valid MDL.
unsafe fn virtual_address(mdl: *const MDL) -> usize {
    // SAFETY: caller contract.
    unsafe { (*mdl).StartVa as usize + (*mdl).ByteOffset as usize }
}

fn violation(routine: &str, what: core::fmt::Arguments<'_>) -> ! {
    bugcheck(BugCheck::InvalidObject, routine, what)
}

// ---------------------------------------------------------------------------------------
// The I/O manager's MDLs (used by `super::driver` and `super::io`).

/// An MDL of `length` bytes at `address`, probed and locked as the I/O manager does for
/// direct I/O (`write`: for write access, the driver fills the buffer). `None` when out of
/// memory.
pub(crate) fn for_request(address: usize, length: usize, write: bool) -> Option<*mut MDL> {
    let mdl = allocate(address, length, Owner::IoManager, 0)?;
    // SAFETY: the fresh MDL.
    unsafe {
        (*mdl).MdlFlags = MDL_PAGES_LOCKED | if write { MDL_WRITE_OPERATION } else { 0 };
    }
    Some(mdl)
}

/// Marks the I/O manager's `mdl` as attached to `irp` (so that [`release_request`] frees it).
pub(crate) fn attach(mdl: *mut MDL, irp: *mut IRP) {
    if let Some(record) = lock(&MDLS).get_mut(&(mdl as usize)) {
        record.irp = irp as usize;
    }
}

/// What the I/O manager does with a request's MDLs when it is over: every MDL of the chain at
/// `Irp->MdlAddress` (its own, and any a driver attached with `IoAllocateMdl(…, Irp)`) and
/// its own MDL `own` (in case the driver unlinked it) are unmapped, unlocked and freed.
///
/// # Safety
/// `irp` is the request's IRP, whose dispatch is over; its chain holds valid MDLs.
pub(crate) unsafe fn release_request(irp: *mut IRP, own: *mut MDL) {
    let mut attached = Vec::new();
    // SAFETY: caller contract: the IRP and the MDLs of its chain are valid.
    unsafe {
        let mut mdl = (*irp).MdlAddress;
        while !mdl.is_null() && attached.len() < 4096 {
            attached.push(mdl);
            mdl = (*mdl).Next;
        }
    }
    if !own.is_null() && !attached.contains(&own) {
        attached.push(own);
    }
    for mdl in attached {
        let ours = lock(&MDLS)
            .get(&(mdl as usize))
            .is_some_and(|r| r.irp == irp as usize || r.owner == Owner::IoManager);
        if ours {
            // Unmapped and unlocked with it: the memory goes.
            free(mdl);
        }
    }
}

/// MDLs allocated by `IoAllocateMdl` for `driver` and not freed (attached to no IRP).
pub(crate) fn outstanding_of(driver: usize) -> usize {
    lock(&MDLS)
        .values()
        .filter(|r| r.owner == Owner::Driver(driver) && r.irp == 0)
        .count()
}

// ---------------------------------------------------------------------------------------
// The routines.

/// `PMDL IoAllocateMdl(PVOID VirtualAddress, ULONG Length, BOOLEAN SecondaryBuffer, BOOLEAN
/// ChargeQuota, PIRP Irp)`: an MDL describing `Length` bytes at `VirtualAddress`, neither
/// locked nor mapped, charged to the driver the thread runs for (reported at unload if not
/// freed). With an `Irp`: it becomes `Irp->MdlAddress` (`SecondaryBuffer` false) or is
/// appended to the chain there (true), and the I/O manager frees it with the request.
/// Null for a length above 2 GiB or when a pool fault of the calling thread fires.
/// `ChargeQuota` is ignored.
///
/// # Safety
/// `Irp` null or a live IRP the caller owns.
pub unsafe extern "win64" fn IoAllocateMdl(
    VirtualAddress: PVOID,
    Length: ULONG,
    SecondaryBuffer: ddi::BOOLEAN,
    ChargeQuota: ddi::BOOLEAN,
    Irp: *mut IRP,
) -> *mut MDL {
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "IoAllocateMdl");
    let _ = ChargeQuota;
    let length = Length as usize;
    if length > MAX_MDL_LENGTH || faults::take(&faults::POOL) {
        return core::ptr::null_mut();
    }
    let Some(mdl) = allocate(
        VirtualAddress as usize,
        length,
        Owner::Driver(context::current()),
        Irp as usize,
    ) else {
        return core::ptr::null_mut();
    };
    if !Irp.is_null() {
        // SAFETY: caller contract: a live IRP the caller owns; its chain holds valid MDLs.
        unsafe {
            if SecondaryBuffer == 0 || (*Irp).MdlAddress.is_null() {
                (*Irp).MdlAddress = mdl;
            } else {
                let mut last = (*Irp).MdlAddress;
                while !(*last).Next.is_null() {
                    last = (*last).Next;
                }
                (*last).Next = mdl;
            }
        }
    }
    mdl
}

/// `VOID IoFreeMdl(PMDL Mdl)`.
///
/// Bugchecks (`DRIVER_VERIFIER_DETECTED_VIOLATION`): an MDL that `IoAllocateMdl` did not
/// return or that was freed already; the I/O manager's own MDL of a request; an MDL whose
/// pages are still locked (`MmUnlockPages` first: Windows would leave them locked forever);
/// an MDL attached to an IRP (the I/O manager frees those).
///
/// # Safety
/// `Mdl` is not used afterwards.
pub unsafe extern "win64" fn IoFreeMdl(Mdl: *mut MDL) {
    const NAME: &str = "IoFreeMdl";
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "IoFreeMdl");
    let record = lock(&MDLS).get(&(Mdl as usize)).map(|r| (r.owner, r.irp));
    match record {
        None => violation(
            NAME,
            format_args!(
                "{Mdl:p} is not an MDL from IoAllocateMdl (freed twice, or never allocated)"
            ),
        ),
        Some((Owner::IoManager, _)) => violation(
            NAME,
            format_args!(
                "{Mdl:p} is the I/O manager's MDL of a request: only the I/O manager frees it"
            ),
        ),
        Some((Owner::Driver(_), irp)) if irp != 0 => violation(
            NAME,
            format_args!(
                "{Mdl:p} is attached to IRP {irp:#x}: the I/O manager frees it with the request"
            ),
        ),
        Some(_) => {}
    }
    // SAFETY: an MDL of the table (checked), valid until freed below.
    if unsafe { (*Mdl).MdlFlags } & MDL_PAGES_LOCKED != 0 {
        violation(
            NAME,
            format_args!("{Mdl:p} still has its pages locked (MmUnlockPages first)"),
        );
    }
    free(Mdl);
}

/// `VOID MmBuildMdlForNonPagedPool(PMDL MemoryDescriptorList)`: marks the MDL as describing
/// non-paged memory and sets `MappedSystemVa` to the buffer (nothing to lock or map).
///
/// Not checked: that the memory is non-paged (everything is resident here).
///
/// # Safety
/// A valid MDL.
pub unsafe extern "win64" fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: *mut MDL) {
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "MmBuildMdlForNonPagedPool");
    let mdl = MemoryDescriptorList;
    // SAFETY: caller contract.
    unsafe {
        (*mdl).MappedSystemVa = virtual_address(mdl) as PVOID;
        (*mdl).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
    }
}

/// `VOID MmProbeAndLockPages(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode,
/// LOCK_OPERATION Operation)`: locks the pages (`MDL_PAGES_LOCKED`, and
/// `MDL_WRITE_OPERATION` for `IoWriteAccess` or `IoModifyAccess`).
///
/// Raises `STATUS_ACCESS_VIOLATION` for a `UserMode` probe of a range that ends above
/// `MmUserProbeAddress` or wraps: reported as bugcheck `KMODE_EXCEPTION_NOT_HANDLED`, since
/// only structured exception handling could catch it. Bugchecks
/// (`DRIVER_VERIFIER_DETECTED_VIOLATION`) for pages already locked (*policy*: Windows's own
/// check is Verifier's) and for an unknown mode or operation.
///
/// # Safety
/// A valid MDL.
pub unsafe extern "win64" fn MmProbeAndLockPages(
    MemoryDescriptorList: *mut MDL,
    AccessMode: i8,
    Operation: i32,
) {
    const NAME: &str = "MmProbeAndLockPages";
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "MmProbeAndLockPages");
    let mdl = MemoryDescriptorList;
    // SAFETY: caller contract.
    let (flags, address, length) = unsafe {
        (
            (*mdl).MdlFlags,
            virtual_address(mdl),
            (*mdl).ByteCount as usize,
        )
    };
    if flags & MDL_PAGES_LOCKED != 0 {
        violation(NAME, format_args!("{mdl:p} has its pages locked already"));
    }
    if !(KERNEL_MODE..=USER_MODE).contains(&AccessMode)
        || !(IO_READ_ACCESS..=IO_MODIFY_ACCESS).contains(&Operation)
    {
        violation(
            NAME,
            format_args!("access mode {AccessMode} or operation {Operation} is not valid"),
        );
    }
    if AccessMode == USER_MODE {
        probe_range(NAME, address, length, 1);
    }
    let write = if Operation == IO_READ_ACCESS {
        0
    } else {
        MDL_WRITE_OPERATION
    };
    // SAFETY: caller contract.
    unsafe { (*mdl).MdlFlags |= MDL_PAGES_LOCKED | write };
}

/// `VOID MmUnlockPages(PMDL MemoryDescriptorList)`: unmaps the system mapping if there is
/// one, and unlocks.
///
/// Bugchecks (`DRIVER_VERIFIER_DETECTED_VIOLATION`) when the pages are not locked.
///
/// # Safety
/// A valid MDL.
pub unsafe extern "win64" fn MmUnlockPages(MemoryDescriptorList: *mut MDL) {
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "MmUnlockPages");
    let mdl = MemoryDescriptorList;
    // SAFETY: caller contract.
    unsafe {
        if (*mdl).MdlFlags & MDL_PAGES_LOCKED == 0 {
            violation(
                "MmUnlockPages",
                format_args!("{mdl:p} does not have its pages locked"),
            );
        }
        (*mdl).MdlFlags &= !(MDL_PAGES_LOCKED | MDL_MAPPED_TO_SYSTEM_VA | MDL_WRITE_OPERATION);
    }
}

/// `PVOID MmMapLockedPagesSpecifyCache(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode,
/// MEMORY_CACHING_TYPE CacheType, PVOID RequestedAddress, ULONG BugCheckOnFailure, ULONG
/// Priority)`: what `MmGetSystemAddressForMdlSafe` calls for an MDL not yet mapped. Returns
/// the buffer's address (one address space: module docs), sets `MappedSystemVa` and
/// `MDL_MAPPED_TO_SYSTEM_VA`; for an MDL built by `MmBuildMdlForNonPagedPool`, returns its
/// `MappedSystemVa`. Null when a fault of the calling thread says so
/// ([`crate::kernel::control::fail_mdl_mapping`]), as a low-resources mapping failure would
/// (with `BugCheckOnFailure` the model bugchecks instead, as Windows does).
///
/// Bugchecks (`DRIVER_VERIFIER_DETECTED_VIOLATION`) for pages neither locked nor from
/// non-paged pool, and for an MDL mapped already. `UserMode` mappings are not modelled (a
/// bugcheck says so). `CacheType`, `RequestedAddress` and `Priority` are ignored.
///
/// # Safety
/// A valid MDL.
pub unsafe extern "win64" fn MmMapLockedPagesSpecifyCache(
    MemoryDescriptorList: *mut MDL,
    AccessMode: i8,
    CacheType: i32,
    RequestedAddress: PVOID,
    BugCheckOnFailure: ULONG,
    Priority: ULONG,
) -> PVOID {
    const NAME: &str = "MmMapLockedPagesSpecifyCache";
    crate::kernel::irql::require(
        crate::kernel::irql::DISPATCH,
        "MmMapLockedPagesSpecifyCache",
    );
    let _ = (CacheType, RequestedAddress, Priority);
    let mdl = MemoryDescriptorList;
    // SAFETY: caller contract.
    let flags = unsafe { (*mdl).MdlFlags };
    if AccessMode != KERNEL_MODE {
        violation(
            NAME,
            format_args!(
                "{mdl:p}: mappings into user space (AccessMode {AccessMode}) are not modelled"
            ),
        );
    }
    if flags & MDL_SOURCE_IS_NONPAGED_POOL != 0 {
        // SAFETY: caller contract.
        return unsafe { (*mdl).MappedSystemVa };
    }
    if flags & MDL_PAGES_LOCKED == 0 {
        violation(
            NAME,
            format_args!(
                "{mdl:p} has neither locked pages nor non-paged memory (MmProbeAndLockPages first)"
            ),
        );
    }
    if flags & MDL_MAPPED_TO_SYSTEM_VA != 0 {
        violation(
            NAME,
            format_args!(
                "{mdl:p} is mapped already (use MmGetSystemAddressForMdlSafe, which checks)"
            ),
        );
    }
    if faults::take(&faults::MAP) {
        if BugCheckOnFailure != 0 {
            bugcheck(
                BugCheck::InvalidObject,
                NAME,
                format_args!("{mdl:p}: mapping failed (a fault) with BugCheckOnFailure"),
            );
        }
        return core::ptr::null_mut();
    }
    // SAFETY: caller contract.
    unsafe {
        let address = virtual_address(mdl) as PVOID;
        (*mdl).MappedSystemVa = address;
        (*mdl).MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
        address
    }
}

/// `VOID MmUnmapLockedPages(PVOID BaseAddress, PMDL MemoryDescriptorList)`.
///
/// Bugchecks (`DRIVER_VERIFIER_DETECTED_VIOLATION`) when the MDL is not mapped or
/// `BaseAddress` is not its mapping.
///
/// # Safety
/// A valid MDL.
pub unsafe extern "win64" fn MmUnmapLockedPages(
    BaseAddress: PVOID,
    MemoryDescriptorList: *mut MDL,
) {
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "MmUnmapLockedPages");
    let mdl = MemoryDescriptorList;
    // SAFETY: caller contract.
    unsafe {
        if (*mdl).MdlFlags & MDL_MAPPED_TO_SYSTEM_VA == 0 || (*mdl).MappedSystemVa != BaseAddress {
            violation(
                "MmUnmapLockedPages",
                format_args!("{BaseAddress:p} is not the system mapping of {mdl:p}"),
            );
        }
        (*mdl).MdlFlags &= !MDL_MAPPED_TO_SYSTEM_VA;
    }
}

/// Raises (reports) an exception a probe raises: no structured exception handling here.
fn raise(routine: &str, code: u32, what: core::fmt::Arguments<'_>) -> ! {
    let name = if code == STATUS_ACCESS_VIOLATION {
        "STATUS_ACCESS_VIOLATION"
    } else {
        "STATUS_DATATYPE_MISALIGNMENT"
    };
    bugcheck(
        BugCheck::ExceptionNotHandled,
        routine,
        format_args!(
            "{name} ({code:#010X}) raised: {what} (only structured exception handling, which this model and Rust lack, could catch it)"
        ),
    )
}

/// The checks of `ProbeForRead`/`ProbeForWrite` and of a user-mode `MmProbeAndLockPages`.
fn probe_range(routine: &str, address: usize, length: usize, alignment: usize) {
    if length == 0 {
        return;
    }
    if !address.is_multiple_of(alignment) {
        raise(
            routine,
            STATUS_DATATYPE_MISALIGNMENT,
            format_args!("{address:#x} is not aligned to {alignment}"),
        );
    }
    match address.checked_add(length) {
        Some(end) if end <= MM_USER_PROBE_ADDRESS => {}
        _ => raise(
            routine,
            STATUS_ACCESS_VIOLATION,
            format_args!("{length} byte(s) at {address:#x} are not in user space"),
        ),
    }
}

/// `ProbeForRead`/`ProbeForWrite`: the alignment must be 1, 2, 4, 8 or 16.
fn probe(routine: &str, address: PVOID, length: usize, alignment: ULONG) {
    if ![1, 2, 4, 8, 16].contains(&alignment) {
        violation(
            routine,
            format_args!("alignment {alignment} is not 1, 2, 4, 8 or 16"),
        );
    }
    probe_range(routine, address as usize, length, alignment as usize);
}

/// `VOID ProbeForRead(PVOID Address, SIZE_T Length, ULONG Alignment)`: a zero length passes;
/// an address not aligned raises `STATUS_DATATYPE_MISALIGNMENT`, a range that wraps or ends
/// above `MmUserProbeAddress` (`0x7FFF_FFFF_0000`) raises `STATUS_ACCESS_VIOLATION`, each
/// reported as bugcheck `KMODE_EXCEPTION_NOT_HANDLED` (no SEH). Bugchecks
/// (`DRIVER_VERIFIER_DETECTED_VIOLATION`) for an alignment other than 1, 2, 4, 8, 16.
///
/// Not checked: that the pages are readable (they are the caller's buffers here).
///
/// # Safety
/// None.
pub unsafe extern "win64" fn ProbeForRead(Address: PVOID, Length: usize, Alignment: ULONG) {
    crate::kernel::irql::require(crate::kernel::irql::APC, "ProbeForRead");
    probe("ProbeForRead", Address, Length, Alignment);
}

/// `VOID ProbeForWrite(PVOID Address, SIZE_T Length, ULONG Alignment)`: as
/// [`ProbeForRead`].
///
/// # Safety
/// None.
pub unsafe extern "win64" fn ProbeForWrite(Address: PVOID, Length: usize, Alignment: ULONG) {
    crate::kernel::irql::require(crate::kernel::irql::APC, "ProbeForWrite");
    probe("ProbeForWrite", Address, Length, Alignment);
}
