//! The WDM this driver uses, and nothing more: written from `wdm.h` in the LLP64 layout of
//! x64 and ARM64, every offset the driver reads asserted at compile time; what the I/O
//! manager keeps private is opaque bytes, so each structure keeps its documented size.
//! Imports are `raw-dylib` from `ntoskrnl.exe` (no WDK import library), all present in every
//! Windows 10 and 11.

#![allow(
    non_snake_case,
    non_camel_case_types,
    clippy::upper_case_acronyms,
    dead_code,
    reason = "names and fields follow wdm.h, so that each one can be checked against it"
)]

use core::ffi::c_char;
use core::mem::{offset_of, size_of};

pub use driver_proxy::sys::{BOOLEAN, NTSTATUS, PUNICODE_STRING, PVOID, ULONG, UNICODE_STRING};

/// `IRP_MJ_CREATE`.
pub const IRP_MJ_CREATE: usize = 0x00;
/// `IRP_MJ_CLOSE`.
pub const IRP_MJ_CLOSE: usize = 0x02;
/// `IRP_MJ_READ`.
pub const IRP_MJ_READ: usize = 0x03;
/// `IRP_MJ_WRITE`.
pub const IRP_MJ_WRITE: usize = 0x04;
/// `IRP_MJ_DEVICE_CONTROL`.
pub const IRP_MJ_DEVICE_CONTROL: usize = 0x0E;
/// `IRP_MJ_CLEANUP`.
pub const IRP_MJ_CLEANUP: usize = 0x12;
/// `IRP_MJ_MAXIMUM_FUNCTION`.
pub const IRP_MJ_MAXIMUM_FUNCTION: usize = 0x1B;

/// `DO_DIRECT_IO`.
pub const DO_DIRECT_IO: ULONG = 0x0000_0010;
/// `DO_DEVICE_INITIALIZING`.
pub const DO_DEVICE_INITIALIZING: ULONG = 0x0000_0080;
/// `FILE_DEVICE_SECURE_OPEN`.
pub const FILE_DEVICE_SECURE_OPEN: ULONG = 0x0000_0100;

/// `MDL_MAPPED_TO_SYSTEM_VA`.
pub const MDL_MAPPED_TO_SYSTEM_VA: i16 = 0x0001;
/// `MDL_SOURCE_IS_NONPAGED_POOL`.
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;
/// `KernelMode`.
pub const KERNEL_MODE: i8 = 0;
/// `UserMode`.
pub const USER_MODE: i8 = 1;
/// `MmCached`.
pub const MM_CACHED: i32 = 1;
/// `NormalPagePriority | MdlMappingNoExecute`.
pub const NORMAL_PAGE_PRIORITY_NO_EXECUTE: ULONG = 16 | 0x4000_0000;
/// `NonPagedPoolNx`.
pub const NON_PAGED_POOL_NX: i32 = 512;
/// `DelayedWorkQueue`.
pub const DELAYED_WORK_QUEUE: i32 = 1;
/// `IO_NO_INCREMENT`.
pub const IO_NO_INCREMENT: i8 = 0;

/// `PDRIVER_DISPATCH`.
pub type DRIVER_DISPATCH = unsafe extern "system" fn(PDEVICE_OBJECT, PIRP) -> NTSTATUS;
/// `PDRIVER_UNLOAD`.
pub type DRIVER_UNLOAD = unsafe extern "system" fn(PDRIVER_OBJECT);
/// `PIO_WORKITEM_ROUTINE`: `VOID (PDEVICE_OBJECT, PVOID Context)`.
pub type IO_WORKITEM_ROUTINE = unsafe extern "system" fn(PDEVICE_OBJECT, PVOID);

/// `DRIVER_OBJECT` (0x150 bytes).
#[repr(C)]
pub struct DRIVER_OBJECT {
    /// `IO_TYPE_DRIVER`.
    pub Type: i16,
    /// Its size.
    pub Size: i16,
    /// The driver's first device object.
    pub DeviceObject: PDEVICE_OBJECT,
    _private: [u8; 0x68 - 0x10],
    /// `PDRIVER_UNLOAD`.
    pub DriverUnload: Option<DRIVER_UNLOAD>,
    /// `PDRIVER_DISPATCH MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1]`.
    pub MajorFunction: [Option<DRIVER_DISPATCH>; IRP_MJ_MAXIMUM_FUNCTION + 1],
}
/// `PDRIVER_OBJECT`.
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// `DEVICE_OBJECT` (0x150 bytes, 16-byte aligned), up to `DeviceExtension`.
#[repr(C, align(16))]
pub struct DEVICE_OBJECT {
    _head: [u8; 0x30],
    /// `DO_*` flags.
    pub Flags: ULONG,
    /// Device characteristics.
    pub Characteristics: ULONG,
    /// `PVPB`.
    pub Vpb: PVOID,
    /// The device extension.
    pub DeviceExtension: PVOID,
    _private: [u8; 0x150 - 0x48],
}
/// `PDEVICE_OBJECT`.
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;

/// `MDL` (0x30 bytes, then its page numbers).
#[repr(C)]
pub struct MDL {
    /// The next MDL of a chain.
    pub Next: *mut MDL,
    /// Its size.
    pub Size: i16,
    /// `MDL_*` flags.
    pub MdlFlags: i16,
    _pad: u32,
    /// `PEPROCESS`.
    pub Process: PVOID,
    /// The system address, when mapped.
    pub MappedSystemVa: PVOID,
    /// The buffer's page.
    pub StartVa: PVOID,
    /// The buffer's length.
    pub ByteCount: ULONG,
    /// Its offset in its first page.
    pub ByteOffset: ULONG,
}
/// `PMDL`.
pub type PMDL = *mut MDL;

/// `IO_STATUS_BLOCK`.
#[repr(C)]
pub struct IO_STATUS_BLOCK {
    /// Completion status (the `Pointer` member of the union is not used).
    pub Status: NTSTATUS,
    _pad: u32,
    /// Request-dependent: bytes transferred.
    pub Information: usize,
}

/// `IRP` (0xD0 bytes), the fields this driver reads.
#[repr(C)]
pub struct IRP {
    _head: [u8; 8],
    /// `PMDL MdlAddress`: direct I/O's buffer.
    pub MdlAddress: PMDL,
    /// `IRP_*` flags.
    pub Flags: ULONG,
    _pad: u32,
    /// `AssociatedIrp.SystemBuffer`.
    pub SystemBuffer: PVOID,
    _list: [PVOID; 2],
    /// Completion status and information.
    pub IoStatus: IO_STATUS_BLOCK,
    /// `KPROCESSOR_MODE RequestorMode`.
    pub RequestorMode: i8,
    _private: [u8; 0x70 - 0x41],
    /// `UserBuffer`: `METHOD_NEITHER`'s output.
    pub UserBuffer: PVOID,
    _tail: [u8; 0xB8 - 0x78],
    /// `Tail.Overlay.CurrentStackLocation`.
    pub CurrentStackLocation: PIO_STACK_LOCATION,
    _rest: [u8; 0xD0 - 0xC0],
}
/// `PIRP`.
pub type PIRP = *mut IRP;

/// `IO_STACK_LOCATION` (0x48 bytes); `Parameters` as four pointer-sized words, read through
/// the accessors below.
#[repr(C)]
pub struct IO_STACK_LOCATION {
    /// `IRP_MJ_*`.
    pub MajorFunction: u8,
    /// `IRP_MN_*`.
    pub MinorFunction: u8,
    /// `SL_*` flags.
    pub Flags: u8,
    /// `SL_*` control flags.
    pub Control: u8,
    _pad: u32,
    /// `Parameters`.
    pub Parameters: [usize; 4],
    _rest: [u8; 0x48 - 0x28],
}
/// `PIO_STACK_LOCATION`.
pub type PIO_STACK_LOCATION = *mut IO_STACK_LOCATION;

impl IO_STACK_LOCATION {
    /// `Parameters.Read.Length` / `Parameters.Write.Length` (a `ULONG`).
    #[must_use]
    pub fn transfer_length(&self) -> usize {
        self.Parameters[0] & 0xFFFF_FFFF
    }

    /// `Parameters.Read.ByteOffset` / `Parameters.Write.ByteOffset` (a `LARGE_INTEGER`).
    #[must_use]
    pub fn byte_offset(&self) -> i64 {
        #[allow(clippy::cast_possible_wrap, reason = "the LARGE_INTEGER's bits")]
        let offset = self.Parameters[2] as i64;
        offset
    }

    /// `Parameters.DeviceIoControl.OutputBufferLength`.
    #[must_use]
    pub fn output_length(&self) -> usize {
        self.Parameters[0] & 0xFFFF_FFFF
    }

    /// `Parameters.DeviceIoControl.InputBufferLength`.
    #[must_use]
    pub fn input_length(&self) -> usize {
        self.Parameters[1] & 0xFFFF_FFFF
    }

    /// `Parameters.DeviceIoControl.IoControlCode`.
    #[must_use]
    pub fn control_code(&self) -> u32 {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "a ULONG in a pointer-sized slot"
        )]
        let code = self.Parameters[2] as u32;
        code
    }

    /// `Parameters.DeviceIoControl.Type3InputBuffer`.
    #[must_use]
    pub fn type3_input(&self) -> PVOID {
        self.Parameters[3] as PVOID
    }
}

const _: () = {
    assert!(size_of::<DRIVER_OBJECT>() == 0x150);
    assert!(offset_of!(DRIVER_OBJECT, DeviceObject) == 0x08);
    assert!(offset_of!(DRIVER_OBJECT, DriverUnload) == 0x68);
    assert!(offset_of!(DRIVER_OBJECT, MajorFunction) == 0x70);
    assert!(size_of::<DEVICE_OBJECT>() == 0x150);
    assert!(offset_of!(DEVICE_OBJECT, Flags) == 0x30);
    assert!(offset_of!(DEVICE_OBJECT, DeviceExtension) == 0x40);
    assert!(size_of::<MDL>() == 0x30);
    assert!(offset_of!(MDL, MdlFlags) == 0x0A);
    assert!(offset_of!(MDL, MappedSystemVa) == 0x18);
    assert!(offset_of!(MDL, ByteCount) == 0x28);
    assert!(size_of::<IRP>() == 0xD0);
    assert!(offset_of!(IRP, MdlAddress) == 0x08);
    assert!(offset_of!(IRP, SystemBuffer) == 0x18);
    assert!(offset_of!(IRP, IoStatus) == 0x30);
    assert!(offset_of!(IRP, RequestorMode) == 0x40);
    assert!(offset_of!(IRP, UserBuffer) == 0x70);
    assert!(offset_of!(IRP, CurrentStackLocation) == 0xB8);
    assert!(size_of::<IO_STACK_LOCATION>() == 0x48);
    assert!(offset_of!(IO_STACK_LOCATION, Parameters) == 0x08);
};

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// `IoCreateDevice`. IRQL: `PASSIVE_LEVEL`.
    pub fn IoCreateDevice(
        DriverObject: PDRIVER_OBJECT,
        DeviceExtensionSize: ULONG,
        DeviceName: PUNICODE_STRING,
        DeviceType: ULONG,
        DeviceCharacteristics: ULONG,
        Exclusive: BOOLEAN,
        DeviceObject: *mut PDEVICE_OBJECT,
    ) -> NTSTATUS;
    /// `IoDeleteDevice`. IRQL: `PASSIVE_LEVEL`.
    pub fn IoDeleteDevice(DeviceObject: PDEVICE_OBJECT);
    /// `IoCreateSymbolicLink`. IRQL: `PASSIVE_LEVEL`.
    pub fn IoCreateSymbolicLink(
        SymbolicLinkName: PUNICODE_STRING,
        DeviceName: PUNICODE_STRING,
    ) -> NTSTATUS;
    /// `IoDeleteSymbolicLink`. IRQL: `PASSIVE_LEVEL`.
    pub fn IoDeleteSymbolicLink(SymbolicLinkName: PUNICODE_STRING) -> NTSTATUS;
    /// `IofCompleteRequest`. IRQL: `<= DISPATCH_LEVEL`.
    pub fn IofCompleteRequest(Irp: PIRP, PriorityBoost: i8);
    /// `ExAllocatePoolWithTag` (not zeroed). IRQL: `<= DISPATCH_LEVEL` for non-paged pool.
    pub fn ExAllocatePoolWithTag(PoolType: i32, NumberOfBytes: usize, Tag: ULONG) -> PVOID;
    /// `ExFreePoolWithTag`. IRQL: `<= DISPATCH_LEVEL`.
    pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
    /// `MmMapLockedPagesSpecifyCache`, behind `MmGetSystemAddressForMdlSafe`. IRQL:
    /// `<= DISPATCH_LEVEL` for kernel mappings.
    pub fn MmMapLockedPagesSpecifyCache(
        MemoryDescriptorList: PMDL,
        AccessMode: i8,
        CacheType: i32,
        RequestedAddress: PVOID,
        BugCheckOnFailure: ULONG,
        Priority: ULONG,
    ) -> PVOID;
    /// `ProbeForRead`: raises an exception for a bad user range. IRQL: `<= APC_LEVEL`.
    pub fn ProbeForRead(Address: PVOID, Length: usize, Alignment: ULONG);
    /// `ProbeForWrite`. IRQL: `<= APC_LEVEL`.
    pub fn ProbeForWrite(Address: PVOID, Length: usize, Alignment: ULONG);
    /// `IoAllocateWorkItem`. IRQL: `<= DISPATCH_LEVEL`.
    pub fn IoAllocateWorkItem(DeviceObject: PDEVICE_OBJECT) -> PVOID;
    /// `IoQueueWorkItem`. IRQL: `<= DISPATCH_LEVEL`.
    pub fn IoQueueWorkItem(
        IoWorkItem: PVOID,
        WorkerRoutine: IO_WORKITEM_ROUTINE,
        QueueType: i32,
        Context: PVOID,
    );
    /// `IoFreeWorkItem`. IRQL: `<= DISPATCH_LEVEL`.
    pub fn IoFreeWorkItem(IoWorkItem: PVOID);
}

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    /// `DbgPrint`. IRQL: any, for the conversions used here.
    pub fn DbgPrint(Format: *const c_char, ...) -> ULONG;
}

/// A `UNICODE_STRING` over a constant UTF-16 name (the kernel only reads it).
#[must_use]
pub fn unicode_string(units: &'static [u16]) -> UNICODE_STRING {
    let bytes = u16::try_from(units.len() * 2).unwrap_or(u16::MAX - 1);
    UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: units.as_ptr().cast_mut(),
    }
}

/// `MmGetSystemAddressForMdlSafe(Mdl, NormalPagePriority | MdlMappingNoExecute)`, the
/// `wdm.h` macro: the mapping the MDL has, or a new one; null when the system cannot map it.
///
/// # Safety
/// `mdl` is a valid MDL of locked pages (or of non-paged pool).
pub unsafe fn system_address(mdl: PMDL) -> *mut u8 {
    // SAFETY: caller contract.
    unsafe {
        if (*mdl).MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
            (*mdl).MappedSystemVa.cast()
        } else {
            MmMapLockedPagesSpecifyCache(
                mdl,
                KERNEL_MODE,
                MM_CACHED,
                core::ptr::null_mut(),
                0,
                NORMAL_PAGE_PRIORITY_NO_EXECUTE,
            )
            .cast()
        }
    }
}

/// Completes `irp` (`IoCompleteRequest` with no boost) and returns `status`.
///
/// # Safety
/// `irp` is a live IRP the caller owns and has not completed; not touched afterwards.
pub unsafe fn complete(irp: PIRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    // SAFETY: caller contract.
    unsafe {
        (*irp).IoStatus.Status = status;
        (*irp).IoStatus.Information = information;
        IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status
}
