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
//!
//! Names are case-insensitive; `\DosDevices\X`, `\GLOBAL??\X` and `\??\X` are one name. One
//! namespace serves the whole process: tests running in parallel use distinct names.
//!
//! # Requests
//!
//! [`Driver::open`] resolves a Win32 path (`\\.\X` → `\??\X`) or an NT name through symbolic
//! links to a device and sends `IRP_MJ_CREATE`; [`Driver::device_control`] sends
//! `IRP_MJ_DEVICE_CONTROL` (`METHOD_BUFFERED`); closing a handle sends `IRP_MJ_CLEANUP` and
//! `IRP_MJ_CLOSE`. Every request:
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
//! * of a device control: unless the status is an error (severity 3), the first `Information`
//!   bytes of the system buffer are copied to the caller's output buffer; `Information`
//!   beyond the output buffer bugchecks (0xC9) (*policy: Windows would overrun the buffer*).
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
//! sample's swap mode). [`Driver::unload`] calls `DriverUnload`, then checks that the driver
//! deleted its devices, deleted the symbolic links it created, ended its system threads and
//! freed the pool it allocated ([`Leaks`]); the DriverProxy extension goes with the driver
//! object. Pool leaks by tag: [`crate::kernel::control::pool_usage`] and
//! [`crate::kernel::control::pool_tag_is_clean`].
//!
//! # Not modelled
//!
//! Plug and Play (`AddDevice`, device stacks, `IoAttachDevice*`), `METHOD_IN_DIRECT`/`OUT_DIRECT`/
//! `NEITHER` (refused with `STATUS_NOT_IMPLEMENTED`), read/write requests, cancellation,
//! completion routines, IRQL, security descriptors and access checks, opening a name below a
//! device (refused: not found), `FastIoDispatch`, `DriverStartIo`, event handles (so
//! `ZwWaitForSingleObject` waits on thread handles only).
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
pub mod ntoskrnl;
pub mod types;
pub mod watchdog;

pub use dbgprint::{clear_dbg_print_log, dbg_print_log, take_dbg_print_log};
pub use driver::{Driver, FileHandle, Leaks, UnloadError};
pub use io::{irps_sent, set_pending_timeout};
pub use ntoskrnl::{win64_routine, win64_routine_names};
pub use watchdog::set_call_limit;

/// `NTSTATUS` codes of the I/O manager that `driver_proxy::sys` does not name.
#[allow(clippy::cast_possible_wrap)]
pub mod status {
    use driver_proxy::sys::NTSTATUS;

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
