//! The general NT types of the DDI the host kernel implements, as `ntdef.h` and `wdm.h` declare
//! them for LLP64 (x64, ARM64): integer types, `LARGE_INTEGER`, `UNICODE_STRING`, `KEVENT`,
//! `OBJECT_ATTRIBUTES`, `CLIENT_ID`, and the enums of waits, events, processor modes and pool.
//!
//! Read from the Microsoft Learn pages of the structures and of the routines that take them
//! (`ns-wudfwdm-_unicode_string`, `ns-wdm-_object_attributes`, `ns-wdm-_client_id`,
//! `nf-wdm-keinitializeevent`, `nf-wdm-kewaitformultipleobjects`, `ne-wdm-_pool_type`,
//! `nf-wdm-exallocatepool2`, …). Unions are Rust unions, as in C.

use core::ffi::c_void;
use core::mem::{align_of, offset_of, size_of};

/// `UCHAR`: `unsigned char`.
pub type UCHAR = u8;
/// `CHAR` / `CCHAR`: `char` (signed on the Microsoft compilers).
pub type CCHAR = i8;
/// `USHORT`: `unsigned short`.
pub type USHORT = u16;
/// `LONG`: `long`, 32 bits under LLP64 (never Rust's `c_long`, which is 64 bits on Linux).
pub type LONG = i32;
/// `ULONG`: `unsigned long`, 32 bits under LLP64.
pub type ULONG = u32;
/// `LONGLONG`.
pub type LONGLONG = i64;
/// `ULONG64`.
pub type ULONG64 = u64;
/// `SIZE_T`: pointer-sized, unsigned.
pub type SIZE_T = usize;
/// `BOOLEAN`: `UCHAR`; `TRUE` is 1, `FALSE` 0.
pub type BOOLEAN = UCHAR;
/// `WCHAR`: a UTF-16 code unit.
pub type WCHAR = u16;
/// `PVOID`.
pub type PVOID = *mut c_void;
/// `HANDLE`: `PVOID`.
pub type HANDLE = PVOID;
/// `PHANDLE`.
pub type PHANDLE = *mut HANDLE;
/// `ACCESS_MASK`: `ULONG`.
pub type ACCESS_MASK = ULONG;
/// `NTSTATUS`: `LONG`; negative values are errors ([`super::status`]).
pub type NTSTATUS = LONG;
/// `KPRIORITY`: `LONG`.
pub type KPRIORITY = LONG;

/// `TRUE`.
pub const TRUE: BOOLEAN = 1;
/// `FALSE`.
pub const FALSE: BOOLEAN = 0;

/// The two 32-bit halves of a [`LARGE_INTEGER`] (its anonymous struct and its `u` member).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LARGE_INTEGER_PARTS {
    /// Bits 0–31.
    pub LowPart: ULONG,
    /// Bits 32–63.
    pub HighPart: LONG,
}

/// `LARGE_INTEGER`:
///
/// ```c
/// typedef union _LARGE_INTEGER {
///   struct { ULONG LowPart; LONG HighPart; };
///   struct { ULONG LowPart; LONG HighPart; } u;
///   LONGLONG QuadPart;
/// } LARGE_INTEGER;
/// ```
#[repr(C)]
#[derive(Clone, Copy)]
pub union LARGE_INTEGER {
    /// The halves (C's `u`, and the anonymous struct).
    pub u: LARGE_INTEGER_PARTS,
    /// The whole signed 64-bit value.
    pub QuadPart: LONGLONG,
}
/// `PLARGE_INTEGER`.
pub type PLARGE_INTEGER = *mut LARGE_INTEGER;

impl LARGE_INTEGER {
    /// The union holding `value` in `QuadPart`.
    #[must_use]
    pub const fn from_quad(value: LONGLONG) -> Self {
        Self { QuadPart: value }
    }

    /// `QuadPart`.
    #[must_use]
    pub const fn quad(self) -> LONGLONG {
        // SAFETY: every member covers the same 8 bytes, and every bit pattern is a valid i64.
        unsafe { self.QuadPart }
    }
}

impl core::fmt::Debug for LARGE_INTEGER {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LARGE_INTEGER")
            .field("QuadPart", &self.quad())
            .finish()
    }
}

/// `UNICODE_STRING`: `Length` and `MaximumLength` count bytes; `Buffer` need not be
/// NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UNICODE_STRING {
    /// Bytes in use.
    pub Length: USHORT,
    /// Bytes the buffer holds.
    pub MaximumLength: USHORT,
    /// `PWCH Buffer`.
    pub Buffer: *mut WCHAR,
}
/// `PUNICODE_STRING`.
pub type PUNICODE_STRING = *mut UNICODE_STRING;

/// `DRIVER_OBJECT`: the DriverProxy routines and the support routines only take its address.
/// Its layout is the I/O manager model's (`crate::wdm::types::DRIVER_OBJECT`, x86-64 only),
/// so here it is opaque.
#[repr(C)]
pub struct DRIVER_OBJECT {
    _private: [u8; 0],
}
/// `PDRIVER_OBJECT`.
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// `LIST_ENTRY`: a doubly linked list link.
#[repr(C)]
#[derive(Debug)]
pub struct LIST_ENTRY {
    /// The next entry.
    pub Flink: *mut LIST_ENTRY,
    /// The previous entry.
    pub Blink: *mut LIST_ENTRY,
}

/// `DISPATCHER_HEADER`, in the view of its first union that names the four leading bytes
/// (`Type`, `Signalling`, `Size`, `Reserved1`); the kernel's other views of those bytes are
/// not needed here.
#[repr(C)]
#[derive(Debug)]
pub struct DISPATCHER_HEADER {
    /// The object type (`EventNotificationObject` 0, `EventSynchronizationObject` 1, …).
    pub Type: UCHAR,
    /// Private to the kernel.
    pub Signalling: UCHAR,
    /// Private to the kernel.
    pub Size: UCHAR,
    /// Private to the kernel.
    pub Reserved1: UCHAR,
    /// Signalled when non-zero.
    pub SignalState: LONG,
    /// The threads waiting on the object.
    pub WaitListHead: LIST_ENTRY,
}

/// `KEVENT`: `struct _KEVENT { DISPATCHER_HEADER Header; }`. Caller-allocated, non-paged
/// storage that `KeInitializeEvent` initialises and that must not move afterwards.
#[repr(C)]
#[derive(Debug)]
pub struct KEVENT {
    /// The dispatcher header.
    pub Header: DISPATCHER_HEADER,
}
/// `PKEVENT` (also `PRKEVENT`).
pub type PKEVENT = *mut KEVENT;

impl KEVENT {
    /// Zeroed storage, for `KeInitializeEvent`.
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            Header: DISPATCHER_HEADER {
                Type: 0,
                Signalling: 0,
                Size: 0,
                Reserved1: 0,
                SignalState: 0,
                WaitListHead: LIST_ENTRY {
                    Flink: core::ptr::null_mut(),
                    Blink: core::ptr::null_mut(),
                },
            },
        }
    }
}

/// `OBJECT_ATTRIBUTES` (`InitializeObjectAttributes` sets `Length` to its size).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OBJECT_ATTRIBUTES {
    /// `sizeof(OBJECT_ATTRIBUTES)`.
    pub Length: ULONG,
    /// The directory `ObjectName` is relative to, or NULL.
    pub RootDirectory: HANDLE,
    /// The object's name, or NULL.
    pub ObjectName: PUNICODE_STRING,
    /// `OBJ_*` flags.
    pub Attributes: ULONG,
    /// `PVOID SecurityDescriptor` (a `SECURITY_DESCRIPTOR`), or NULL.
    pub SecurityDescriptor: PVOID,
    /// `PVOID SecurityQualityOfService`, or NULL.
    pub SecurityQualityOfService: PVOID,
}
/// `POBJECT_ATTRIBUTES`.
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;

/// `OBJ_KERNEL_HANDLE`: the handle can only be used in kernel mode.
pub const OBJ_KERNEL_HANDLE: ULONG = 0x200;

/// `CLIENT_ID`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CLIENT_ID {
    /// The process id.
    pub UniqueProcess: HANDLE,
    /// The thread id.
    pub UniqueThread: HANDLE,
}
/// `PCLIENT_ID`.
pub type PCLIENT_ID = *mut CLIENT_ID;

/// `WAIT_TYPE`: `typedef enum _WAIT_TYPE { WaitAll, WaitAny, WaitNotification, WaitDequeue,
/// WaitDpc } WAIT_TYPE;` (a C enum: `int`). Drivers pass the first two.
pub type WAIT_TYPE = core::ffi::c_int;
/// `WaitAll`.
pub const WaitAll: WAIT_TYPE = 0;
/// `WaitAny`.
pub const WaitAny: WAIT_TYPE = 1;

/// `KWAIT_REASON` (a C enum); the reasons drivers pass, in the enum's order from 0.
pub type KWAIT_REASON = core::ffi::c_int;
/// `Executive`.
pub const Executive: KWAIT_REASON = 0;
/// `FreePage`.
pub const FreePage: KWAIT_REASON = 1;
/// `PageIn`.
pub const PageIn: KWAIT_REASON = 2;
/// `PoolAllocation`.
pub const PoolAllocation: KWAIT_REASON = 3;
/// `DelayExecution`.
pub const DelayExecution: KWAIT_REASON = 4;
/// `Suspended`.
pub const Suspended: KWAIT_REASON = 5;
/// `UserRequest`.
pub const UserRequest: KWAIT_REASON = 6;

/// `KPROCESSOR_MODE`: `CCHAR`, holding a `MODE` (`KernelMode`, `UserMode`).
pub type KPROCESSOR_MODE = CCHAR;
/// `KernelMode`.
pub const KernelMode: KPROCESSOR_MODE = 0;
/// `UserMode`.
pub const UserMode: KPROCESSOR_MODE = 1;

/// `EVENT_TYPE`: `typedef enum _EVENT_TYPE { NotificationEvent, SynchronizationEvent }`.
pub type EVENT_TYPE = core::ffi::c_int;
/// `NotificationEvent`.
pub const NotificationEvent: EVENT_TYPE = 0;
/// `SynchronizationEvent`.
pub const SynchronizationEvent: EVENT_TYPE = 1;

/// `IO_NO_INCREMENT`: the priority boost of a wait satisfied at once.
pub const IO_NO_INCREMENT: KPRIORITY = 0;
/// `MAXIMUM_WAIT_OBJECTS`: the most objects `KeWaitForMultipleObjects` accepts.
pub const MAXIMUM_WAIT_OBJECTS: ULONG = 64;
/// `THREAD_WAIT_OBJECTS`: waits on more objects need the caller's `KWAIT_BLOCK` array.
pub const THREAD_WAIT_OBJECTS: ULONG = 3;

/// `POOL_FLAGS` (`ExAllocatePool2`): `ULONG64`.
pub type POOL_FLAGS = ULONG64;
/// `POOL_FLAG_NON_PAGED`.
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x40;

/// `POOL_TYPE` (a C enum; `ExAllocatePoolWithTag`).
pub type POOL_TYPE = core::ffi::c_int;
/// `NonPagedPool` (executable).
pub const NonPagedPool: POOL_TYPE = 0;
/// `PagedPool`.
pub const PagedPool: POOL_TYPE = 1;
/// `NonPagedPoolNx` (Windows 8 and later): `NonPagedPoolBase` + 512.
pub const NonPagedPoolNx: POOL_TYPE = 512;

/// `KSTART_ROUTINE`: `VOID StartRoutine(PVOID StartContext)`; `PKSTART_ROUTINE` is a C
/// pointer, so NULL is representable (and refused by `PsCreateSystemThread`).
pub type KSTART_ROUTINE = unsafe extern "system" fn(StartContext: PVOID);
/// `PKSTART_ROUTINE`.
pub type PKSTART_ROUTINE = Option<KSTART_ROUTINE>;

const _: () = {
    assert!(size_of::<LARGE_INTEGER>() == 8 && align_of::<LARGE_INTEGER>() == 8);
    assert!(offset_of!(LARGE_INTEGER_PARTS, HighPart) == 4);
    assert!(size_of::<UNICODE_STRING>() == 16);
    assert!(offset_of!(UNICODE_STRING, MaximumLength) == 2);
    assert!(offset_of!(UNICODE_STRING, Buffer) == 8);
    assert!(size_of::<LIST_ENTRY>() == 16);
    assert!(offset_of!(DISPATCHER_HEADER, SignalState) == 4);
    assert!(offset_of!(DISPATCHER_HEADER, WaitListHead) == 8);
    assert!(size_of::<KEVENT>() == 0x18 && align_of::<KEVENT>() == 8);
    assert!(size_of::<OBJECT_ATTRIBUTES>() == 0x30);
    assert!(offset_of!(OBJECT_ATTRIBUTES, RootDirectory) == 0x08);
    assert!(offset_of!(OBJECT_ATTRIBUTES, ObjectName) == 0x10);
    assert!(offset_of!(OBJECT_ATTRIBUTES, Attributes) == 0x18);
    assert!(offset_of!(OBJECT_ATTRIBUTES, SecurityDescriptor) == 0x20);
    assert!(offset_of!(OBJECT_ATTRIBUTES, SecurityQualityOfService) == 0x28);
    assert!(size_of::<CLIENT_ID>() == 0x10);
    assert!(offset_of!(CLIENT_ID, UniqueThread) == 8);
    assert!(size_of::<WAIT_TYPE>() == 4 && size_of::<KWAIT_REASON>() == 4);
    assert!(size_of::<KPROCESSOR_MODE>() == 1 && size_of::<BOOLEAN>() == 1);
    assert!(size_of::<PKSTART_ROUTINE>() == 8);
};
