//! General NT types used by the DriverProxy family, defined minimally (no WDK needed).
//!
//! Kernel objects the family only passes by pointer (`DRIVER_OBJECT`) are opaque. Types
//! whose layout is public and that callers fill in (`UNICODE_STRING`, `OBJECT_ATTRIBUTES`,
//! `CLIENT_ID`, `LARGE_INTEGER`) are complete. `KEVENT` is given its real size so that it can
//! be embedded, but its contents are private to the kernel.

use core::ffi::c_void;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::{offset_of, size_of};

/// `NTSTATUS`: a signed 32-bit status; negative values are errors.
pub type NTSTATUS = i32;
/// `ULONG`: unsigned 32-bit (LLP64).
pub type ULONG = u32;
/// `LONG`: signed 32-bit (LLP64).
pub type LONG = i32;
/// `USHORT`.
pub type USHORT = u16;
/// `BOOLEAN`: one byte, `TRUE` = 1, `FALSE` = 0.
pub type BOOLEAN = u8;
/// `CCHAR`.
pub type CCHAR = i8;
/// `PVOID`.
pub type PVOID = *mut c_void;
/// `HANDLE`: an opaque pointer-sized value.
pub type HANDLE = *mut c_void;
/// `PHANDLE`.
pub type PHANDLE = *mut HANDLE;
/// `ACCESS_MASK`.
pub type ACCESS_MASK = ULONG;
/// `WCHAR`: one UTF-16 code unit.
pub type WCHAR = u16;

/// `TRUE` as a `BOOLEAN`.
pub const TRUE: BOOLEAN = 1;
/// `FALSE` as a `BOOLEAN`.
pub const FALSE: BOOLEAN = 0;

/// `LARGE_INTEGER`: a signed 64-bit value with 8-byte alignment (the `QuadPart` view of
/// the C union; the `LowPart`/`HighPart` view is the same bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LARGE_INTEGER {
    /// The whole 64-bit value.
    pub QuadPart: i64,
}

/// `UNICODE_STRING`: a counted UTF-16 string. `Length` and `MaximumLength` are in bytes;
/// no terminating NUL is required.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UNICODE_STRING {
    /// Length of the string in bytes, without any NUL.
    pub Length: USHORT,
    /// Size of the buffer in bytes.
    pub MaximumLength: USHORT,
    /// The UTF-16 code units.
    pub Buffer: *mut WCHAR,
}
/// `PUNICODE_STRING`.
pub type PUNICODE_STRING = *mut UNICODE_STRING;
/// `PCUNICODE_STRING`.
pub type PCUNICODE_STRING = *const UNICODE_STRING;

/// `DRIVER_OBJECT`, opaque: this crate only passes it by pointer. A `wdk_sys::PDRIVER_OBJECT`
/// converts with a pointer cast.
#[repr(C)]
pub struct DRIVER_OBJECT {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}
/// `PDRIVER_OBJECT`.
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// `KEVENT`: a dispatcher object (its `DISPATCHER_HEADER` is 0x18 bytes on x64 and ARM64).
/// Storage only: the kernel initialises and owns the contents, which must never move
/// after `KeInitializeEvent`.
#[repr(C, align(8))]
pub struct KEVENT {
    _header: [u64; 3],
    _pinned: PhantomPinned,
}
/// `PKEVENT`.
pub type PKEVENT = *mut KEVENT;

impl KEVENT {
    /// Zeroed storage, to be initialised by `KeInitializeEvent` before use.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            _header: [0; 3],
            _pinned: PhantomPinned,
        }
    }
}

/// `OBJECT_ATTRIBUTES`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OBJECT_ATTRIBUTES {
    /// `sizeof(OBJECT_ATTRIBUTES)`.
    pub Length: ULONG,
    /// Directory the name is relative to, or null.
    pub RootDirectory: HANDLE,
    /// Object name, or null.
    pub ObjectName: PUNICODE_STRING,
    /// `OBJ_*` flags.
    pub Attributes: ULONG,
    /// Security descriptor, or null.
    pub SecurityDescriptor: PVOID,
    /// Security quality of service, or null.
    pub SecurityQualityOfService: PVOID,
}
/// `POBJECT_ATTRIBUTES`.
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;
/// `OBJ_KERNEL_HANDLE`: the handle is only usable from kernel mode.
pub const OBJ_KERNEL_HANDLE: ULONG = 0x0000_0200;

/// `CLIENT_ID`: process and thread ids.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CLIENT_ID {
    /// Process id.
    pub UniqueProcess: HANDLE,
    /// Thread id.
    pub UniqueThread: HANDLE,
}
/// `PCLIENT_ID`.
pub type PCLIENT_ID = *mut CLIENT_ID;

/// `WAIT_TYPE` (C enum, 4 bytes).
pub type WAIT_TYPE = i32;
/// `WaitAll`: the wait is satisfied when every object is signalled.
pub const WaitAll: WAIT_TYPE = 0;
/// `WaitAny`: the wait is satisfied when any object is signalled.
pub const WaitAny: WAIT_TYPE = 1;

/// `KWAIT_REASON` (C enum, 4 bytes). Only the values drivers pass are named.
pub type KWAIT_REASON = i32;
/// `Executive`.
pub const Executive: KWAIT_REASON = 0;
/// `UserRequest`.
pub const UserRequest: KWAIT_REASON = 6;

/// `KPROCESSOR_MODE` (`CCHAR`).
pub type KPROCESSOR_MODE = CCHAR;
/// `KernelMode`.
pub const KernelMode: KPROCESSOR_MODE = 0;
/// `UserMode`.
pub const UserMode: KPROCESSOR_MODE = 1;

/// `EVENT_TYPE` (C enum, 4 bytes).
pub type EVENT_TYPE = i32;
/// `NotificationEvent`: stays signalled until reset; releases every waiter.
pub const NotificationEvent: EVENT_TYPE = 0;
/// `SynchronizationEvent`: auto-resets when it releases one waiter.
pub const SynchronizationEvent: EVENT_TYPE = 1;

/// `KPRIORITY`.
pub type KPRIORITY = LONG;
/// `IO_NO_INCREMENT`.
pub const IO_NO_INCREMENT: KPRIORITY = 0;

/// `MAXIMUM_WAIT_OBJECTS`: the most objects one `KeWaitForMultipleObjects` can wait on.
pub const MAXIMUM_WAIT_OBJECTS: ULONG = 64;
/// `THREAD_WAIT_OBJECTS`: waits on at most this many objects need no wait-block array.
pub const THREAD_WAIT_OBJECTS: ULONG = 3;
/// `sizeof(KWAIT_BLOCK)` on x64 and ARM64, for the wait-block array of larger waits.
pub const KWAIT_BLOCK_SIZE: usize = 0x30;
/// `THREAD_ALL_ACCESS` (`STANDARD_RIGHTS_REQUIRED | SYNCHRONIZE | 0xFFFF`).
pub const THREAD_ALL_ACCESS: ACCESS_MASK = 0x001F_FFFF;

const _: () = {
    assert!(size_of::<LARGE_INTEGER>() == 8);
    assert!(size_of::<UNICODE_STRING>() == 0x10);
    assert!(offset_of!(UNICODE_STRING, Buffer) == 0x08);
    assert!(size_of::<KEVENT>() == 0x18);
    assert!(size_of::<OBJECT_ATTRIBUTES>() == 0x30);
    assert!(offset_of!(OBJECT_ATTRIBUTES, ObjectName) == 0x10);
    assert!(offset_of!(OBJECT_ATTRIBUTES, Attributes) == 0x18);
    assert!(offset_of!(OBJECT_ATTRIBUTES, SecurityQualityOfService) == 0x28);
    assert!(size_of::<CLIENT_ID>() == 0x10);
};
