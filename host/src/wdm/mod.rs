//! The WDM kernel services a driver image (`.sys`) calls, all with the Microsoft x64
//! convention, and the I/O manager model that drives it: what a PE loader binds an image's
//! imports to ([`win64_routine`]) and runs it with ([`Driver`]).
//!
//! # Parts
//!
//! * [`ntoskrnl`]: the Microsoft x64 entry point of every routine a driver imports or
//!   resolves (the seven DriverProxy routines, events and waits, system threads, handles,
//!   pool, `MmGetSystemRoutineAddress`, `KeBugCheckEx`, and the I/O routines below), found
//!   with [`win64_routine`]. Each forwards to the model kernel ([`crate::kernel`]), which has
//!   the contracts; driver code handed over through them is called back with Microsoft x64
//!   (the phased callback, the worker routine's wrapper, a system thread's start routine).
//!   An `extern "C"`/`"system"` function is never bound: on this host it is `SysV` code,
//!   which takes its arguments from other registers and clobbers `rsi`, `rdi`, `xmm6`–`15`.
//! * [`dbgprint`]: `DbgPrint` (a naked varargs trampoline, LLP64 formatting, a per-process
//!   log).
//! * [`io`]: devices, the object namespace, IRPs; [`Driver`] and [`FileHandle`]: loading,
//!   requests, swap-mode entry, unload with leak checks. [`types`]: the structures in their
//!   x64 layout.
//! * [`memory`]: MDLs (the I/O manager's for direct I/O, and `IoAllocateMdl`'s), the `Mm`
//!   routines drivers call on them, `ProbeForRead`/`ProbeForWrite`.
//! * [`workitem`]: `IoAllocateWorkItem`, `IoQueueWorkItem`, `IoFreeWorkItem`.
//! * [`spinlock`]: the spin locks, the one way a thread's IRQL leaves `PASSIVE_LEVEL` here
//!   (every routine checks its IRQL limit against it).
//! * [`watchdog`]: a call into a driver that does not return is reported.
//!
//! # The I/O manager: contracts
//!
//! | routine | input | result |
//! |---|---|---|
//! | `IoCreateDevice` | `DriverObject` not a driver object of this I/O manager; null out-pointer | bugcheck `DRIVER_VERIFIER_IOMANAGER_VIOLATION` (0xC9) |
//! | | a name that is not absolute, has an empty component, an odd byte length or is not UTF-16 | `STATUS_OBJECT_NAME_INVALID` |
//! | | an extension larger than 0xFFFF − 0x150 bytes (the `Size` field is 16 bits); a pool fault of the calling thread | `STATUS_INSUFFICIENT_RESOURCES` |
//! | | the name is taken (a device, a symbolic link, a driver) | `STATUS_OBJECT_NAME_COLLISION` |
//! | | otherwise | `STATUS_SUCCESS`; a zeroed `DEVICE_OBJECT` (`Type` 3, `Size` 0x150 + extension, `DriverObject`, `Flags` = `DO_DEVICE_INITIALIZING` \| `DO_EXCLUSIVE` if exclusive \| `DO_DEVICE_HAS_NAME` if named, `Characteristics`, `DeviceType`, `StackSize` 1, `DeviceObjectExtension`) followed by the zeroed, 16-byte aligned extension (`DeviceExtension`; null for size 0), pushed at the head of `DriverObject->DeviceObject` |
//! | `IoDeleteDevice` | not a live device object (deleted twice, stray) | bugcheck 0xC9 |
//! | | otherwise | unlinked from the driver's list, its name removed; its memory is freed now, or when its last open handle is closed (requests on those handles get `STATUS_DELETE_PENDING`; cleanup and close are still sent) |
//! | `IoCreateSymbolicLink` | either name malformed (as above) | `STATUS_OBJECT_NAME_INVALID` |
//! | | the link name is taken | `STATUS_OBJECT_NAME_COLLISION` |
//! | | otherwise | `STATUS_SUCCESS`; the target need not exist (as on Windows: it is resolved at open) |
//! | `IoDeleteSymbolicLink` | malformed / unknown / not a link | `STATUS_OBJECT_NAME_INVALID` / `STATUS_OBJECT_NAME_NOT_FOUND` / `STATUS_OBJECT_TYPE_MISMATCH` |
//! | `IofCompleteRequest` | not a live IRP (completed after the I/O manager finished it, stray) | bugcheck `MULTIPLE_IRP_COMPLETE_REQUESTS` (0x44) |
//! | | completed already | bugcheck 0x44 |
//! | | `IoStatus.Status` = `STATUS_PENDING` | bugcheck 0xC9 |
//! | | otherwise | records `IoStatus` as the result; `PriorityBoost` ignored |
//! | `IoAllocateMdl` | a length above 2 GiB; a pool fault of the calling thread | null |
//! | | with an `Irp` | the MDL becomes `Irp->MdlAddress` (`SecondaryBuffer` false) or ends its chain (true); the I/O manager frees it with the request |
//! | | otherwise | an MDL (`StartVa`, `ByteOffset`, `ByteCount`, page numbers), neither locked nor mapped, charged to the driver |
//! | `IoFreeMdl` | not from `IoAllocateMdl` or freed already; the I/O manager's own; attached to an IRP; pages still locked | bugcheck `DRIVER_VERIFIER_DETECTED_VIOLATION` (0xC4) |
//! | `MmBuildMdlForNonPagedPool` | any | `MDL_SOURCE_IS_NONPAGED_POOL`, `MappedSystemVa` = the buffer (that the memory is non-paged is not checked) |
//! | `MmProbeAndLockPages` | pages locked already (*policy*); an unknown mode or operation | bugcheck 0xC4 |
//! | | `UserMode` and the range wraps or ends above `MmUserProbeAddress` | `STATUS_ACCESS_VIOLATION` raised: bugcheck `KMODE_EXCEPTION_NOT_HANDLED` (0x1E; no SEH here) |
//! | | otherwise | `MDL_PAGES_LOCKED` (and `MDL_WRITE_OPERATION` for write or modify access) |
//! | `MmUnlockPages` | pages not locked | bugcheck 0xC4 |
//! | `MmMapLockedPagesSpecifyCache` | `UserMode` | bugcheck 0xC4 ("not modelled") |
//! | | built for non-paged pool | its `MappedSystemVa` |
//! | | neither locked nor non-paged; mapped already | bugcheck 0xC4 |
//! | | a mapping fault of the calling thread (`kernel::control::fail_mdl_mapping`) | null (`BugCheckOnFailure`: bugcheck) |
//! | | otherwise | the buffer's address (one address space), `MDL_MAPPED_TO_SYSTEM_VA` |
//! | `MmUnmapLockedPages` | not mapped, or not at that address | bugcheck 0xC4 |
//! | `ProbeForRead`, `ProbeForWrite` | length 0 | nothing |
//! | | alignment not 1, 2, 4, 8, 16 | bugcheck 0xC4 |
//! | | address not aligned / range wraps or ends above `0x7FFF_FFFF_0000` | `STATUS_DATATYPE_MISALIGNMENT` / `STATUS_ACCESS_VIOLATION` raised: bugcheck 0x1E |
//! | `IoAllocateWorkItem` | not a live device | bugcheck 0xC9 |
//! | | a pool fault of the calling thread | null |
//! | `IoQueueWorkItem` | not a work item; queued and not yet started (*policy*: Verifier's); a null routine | bugcheck 0xC4 |
//! | | otherwise | the routine runs on a worker thread, for the driver, with a reference on the device |
//! | `IoFreeWorkItem` | not a work item, or freed already; still queued | bugcheck 0xC4 |
//! | | idle, or its routine started (it may free its own item) | freed |
//!
//! Names are case-insensitive; `\DosDevices\X`, `\GLOBAL??\X` and `\??\X` are one name. One
//! namespace serves the whole process: tests running in parallel use distinct names.
//!
//! # Requests
//!
//! [`Driver::open`] resolves a Win32 path (`\\.\X` → `\??\X`) or an NT name through symbolic
//! links to a device and sends `IRP_MJ_CREATE`; [`Driver::read`] and [`Driver::write`] send
//! `IRP_MJ_READ` and `IRP_MJ_WRITE` with the device's buffering (`DO_BUFFERED_IO`: a system
//! buffer; `DO_DIRECT_IO`: an MDL of the caller's buffer, none for 0 bytes; neither:
//! `Irp->UserBuffer`), `Parameters.Read`/`Write` = `Length`, `Key` 0, `ByteOffset`;
//! [`Driver::device_control`] sends `IRP_MJ_DEVICE_CONTROL` with the buffers of the code's
//! transfer type (`METHOD_BUFFERED`: one system buffer; `METHOD_IN_DIRECT`/`OUT_DIRECT`: the
//! input in a system buffer, the output as an MDL locked for read/write access;
//! `METHOD_NEITHER`: `Type3InputBuffer` and `UserBuffer`, the caller's addresses), and every
//! control code reaches the driver; closing a handle sends `IRP_MJ_CLEANUP` and
//! `IRP_MJ_CLOSE`. The I/O manager's MDLs are locked, not mapped; it unmaps, unlocks and
//! frees every MDL of `Irp->MdlAddress`'s chain when the request is over. Every request:
//!
//! * is one `IRP` (0xD0 bytes) with one `IO_STACK_LOCATION` (`StackCount` 1,
//!   `CurrentStackLocation` set, `RequestorMode` `UserMode`, `OriginalFileObject` and
//!   `FileObject` the handle's `FILE_OBJECT`, `DeviceObject` the device); a device control has
//!   `Parameters.DeviceIoControl.{OutputBufferLength, InputBufferLength, IoControlCode}` at
//!   +0x08, +0x10, +0x18 of the stack location, `AssociatedIrp.SystemBuffer` of
//!   `max(in, out)` bytes (16-byte aligned; null when both are 0) holding the input, and
//!   `Flags` `IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER` (`| IRP_INPUT_OPERATION` with output);
//!   a create has `Parameters.Create` with a security context asking for read and write,
//!   `FILE_OPEN`, shared read and write;
//! * calls `DriverObject->MajorFunction[major]` (read atomically: a swap may rewrite it) with
//!   the Microsoft x64 convention, on the calling thread, "running for the driver" (pool and
//!   threads are attributed to it). Slots the driver did not set hold the default, which
//!   completes with `STATUS_INVALID_DEVICE_REQUEST`; a null slot bugchecks (0xC9);
//! * must be completed exactly once with `IofCompleteRequest`: a dispatch routine that returns
//!   without completing (and without `STATUS_PENDING`) bugchecks (0xC9), as does one that
//!   returns a status other than the one it completed with (*policy: Driver Verifier's
//!   check*); `STATUS_PENDING` requires `IoMarkIrpPending` (`SL_PENDING_RETURNED`) and a
//!   completion within the pending timeout (30 s unless [`set_pending_timeout`]), else
//!   bugcheck 0xC9;
//! * with a system buffer for output (`METHOD_BUFFERED`, a buffered read): unless the status
//!   is an error (severity 3), the first `Information` bytes of the system buffer are copied
//!   to the caller's buffer; `Information` beyond that buffer bugchecks (0xC9) (*policy:
//!   Windows would overrun the buffer*). With direct or neither I/O the driver writes the
//!   caller's memory itself, and nothing is copied.
//!
//! Open: `STATUS_NO_SUCH_DEVICE` while the device is `DO_DEVICE_INITIALIZING` (the I/O manager
//! clears it for the devices of a legacy driver when its `DriverEntry` succeeds);
//! `STATUS_ACCESS_DENIED` for a second handle to an exclusive device; a device of another
//! driver is not found (a [`FileHandle`] borrows its [`Driver`], so no handle outlives the
//! driver's unload).
//!
//! # Loading and unloading
//!
//! [`Driver::start`] creates the `DRIVER_OBJECT` (x64 layout: `Type` 4, `Size` 0x150,
//! `DriverExtension` with `ServiceKeyName`, `DriverName` `\Driver\<name>`,
//! `HardwareDatabase`, `DriverInit`, `DriverStart`/`DriverSize` of the image, every
//! `MajorFunction` the default) and calls `DriverEntry(DriverObject, RegistryPath)`.
//! [`Driver::call_entry_again`] calls another image's entry on the same driver object (the
//! sample's swap mode). [`Driver::unload`] waits for the driver's work items (they hold
//! device references), calls `DriverUnload`, then checks that the driver deleted its devices,
//! deleted the symbolic links it created, ended its system threads, closed its kernel
//! handles, freed the pool it allocated (per tag), its MDLs and its work items ([`Leaks`]);
//! the DriverProxy extension goes with the driver object. [`Driver::dbg_print`] is what the
//! driver printed. Pool leaks by tag: [`crate::kernel::control::pool_usage`] and
//! [`crate::kernel::control::pool_tag_is_clean`].
//!
//! # Not modelled
//!
//! Plug and Play (`AddDevice`, device stacks, `IoAttachDevice*`), cancellation, completion
//! routines, IRQL beyond the spin locks ([`spinlock`]: the only way a thread leaves
//! `PASSIVE_LEVEL`; `KeGetCurrentIrql`, `KeRaiseIrql` and `KeLowerIrql` are inline `CR8`
//! accesses on x64, which fault in user mode and are reported as such; no interrupts, DPCs
//! or timers), security descriptors and access checks (the required access bits of a control
//! code are not checked), opening a name below a device (refused: not found),
//! `FastIoDispatch`, `DriverStartIo`, event handles (so `ZwWaitForSingleObject` waits on
//! thread handles only), physical memory (an MDL's page numbers are virtual page numbers),
//! user-mode mappings of MDLs, structured exception handling.
//!
//! # Calling conventions and registers
//!
//! Host code calls the driver through `extern "win64"` function pointers, so the compiler
//! passes the arguments in `rcx`, `rdx`, `r8`, `r9`, reserves the 32-byte home area and keeps
//! the stack 16-byte aligned; the entry points the driver calls are `extern "win64"`
//! functions, which preserve `rsi`, `rdi` and `xmm6`–`xmm15` for it. The tests check both
//! with register canaries.

#[allow(non_snake_case)]
pub mod dbgprint;
mod driver;
#[allow(non_snake_case)]
pub mod io;
#[allow(non_snake_case)]
pub mod memory;
pub mod ntoskrnl;
#[allow(non_snake_case)]
pub mod spinlock;
pub mod types;
pub mod watchdog;
#[allow(non_snake_case)]
pub mod workitem;

pub use dbgprint::{clear_dbg_print_log, dbg_print_log, take_dbg_print_log};
pub use driver::{Closed, Driver, FileHandle, Leaks, UnloadError};
pub use io::{irps_sent, set_pending_timeout};
pub use ntoskrnl::{win64_routine, win64_routine_names};
pub use watchdog::set_call_limit;

/// `NTSTATUS` codes of the I/O manager that [`crate::ddi`] does not name.
#[allow(clippy::cast_possible_wrap)]
pub mod status {
    use crate::ddi::NTSTATUS;

    /// `STATUS_NO_SUCH_DEVICE`.
    pub const NO_SUCH_DEVICE: NTSTATUS = 0xC000_000E_u32 as NTSTATUS;
    /// `STATUS_ACCESS_DENIED`.
    pub const ACCESS_DENIED: NTSTATUS = 0xC000_0022_u32 as NTSTATUS;
    /// `STATUS_OBJECT_TYPE_MISMATCH`.
    pub const OBJECT_TYPE_MISMATCH: NTSTATUS = 0xC000_0024_u32 as NTSTATUS;
    /// `STATUS_OBJECT_NAME_INVALID`.
    pub const OBJECT_NAME_INVALID: NTSTATUS = 0xC000_0033_u32 as NTSTATUS;
    /// `STATUS_OBJECT_NAME_NOT_FOUND`.
    pub const OBJECT_NAME_NOT_FOUND: NTSTATUS = 0xC000_0034_u32 as NTSTATUS;
    /// `STATUS_OBJECT_NAME_COLLISION`.
    pub const OBJECT_NAME_COLLISION: NTSTATUS = 0xC000_0035_u32 as NTSTATUS;
    /// `STATUS_DELETE_PENDING`.
    pub const DELETE_PENDING: NTSTATUS = 0xC000_0056_u32 as NTSTATUS;
}
