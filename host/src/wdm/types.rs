//! The kernel structures a WDM driver image reads and writes, in the x64 (LLP64) layout of
//! `wdm.h`: `DRIVER_OBJECT`, `DRIVER_EXTENSION`, `DEVICE_OBJECT`, `IRP`, `IO_STACK_LOCATION`,
//! `FILE_OBJECT`. Every offset a driver uses is asserted at compile time; what the I/O manager
//! keeps private is reserved bytes, so each structure has its documented size.
//!
//! The WDM sample declares the same layouts for itself in `sample/wdm/src/wdm_sys.rs`, on
//! purpose: the model kernel (this module, the side that allocates and fills the structures)
//! and the driver's minimal bindings (the side that reads them) are two independent readings
//! of `wdm.h`, each with its own offset assertions, so a mistake in one shows up as a
//! disagreement with the other when the real image runs here. The sample is a separate
//! `no_std` workspace and cannot share this module anyway.

#![allow(
    non_snake_case,
    non_camel_case_types,
    clippy::upper_case_acronyms,
    reason = "names and fields follow wdm.h, so that each one can be checked against it"
)]

use core::mem::{offset_of, size_of};

use crate::ddi::{self, NTSTATUS, PVOID, ULONG, UNICODE_STRING};

/// `IO_TYPE_DEVICE`.
pub const IO_TYPE_DEVICE: i16 = 3;
/// `IO_TYPE_DRIVER`.
pub const IO_TYPE_DRIVER: i16 = 4;
/// `IO_TYPE_FILE`.
pub const IO_TYPE_FILE: i16 = 5;
/// `IO_TYPE_IRP`.
pub const IO_TYPE_IRP: i16 = 6;
/// `IO_TYPE_DEVICE_OBJECT_EXTENSION`.
pub const IO_TYPE_DEVICE_OBJECT_EXTENSION: i16 = 13;

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
/// `IRP_MJ_MAXIMUM_FUNCTION`: the `MajorFunction` table has this many entries plus one.
pub const IRP_MJ_MAXIMUM_FUNCTION: usize = 0x1B;

/// `DO_BUFFERED_IO`: read and write requests carry a system buffer.
pub const DO_BUFFERED_IO: ULONG = 0x0000_0004;
/// `DO_EXCLUSIVE`: one open handle at a time.
pub const DO_EXCLUSIVE: ULONG = 0x0000_0008;
/// `DO_DIRECT_IO`: read and write requests carry an MDL of the caller's buffer.
pub const DO_DIRECT_IO: ULONG = 0x0000_0010;
/// `DO_DEVICE_HAS_NAME`.
pub const DO_DEVICE_HAS_NAME: ULONG = 0x0000_0040;
/// `DO_DEVICE_INITIALIZING`: set by `IoCreateDevice`; no open succeeds while it is set.
pub const DO_DEVICE_INITIALIZING: ULONG = 0x0000_0080;

/// `IRP_BUFFERED_IO`.
pub const IRP_BUFFERED_IO: ULONG = 0x0000_0010;
/// `IRP_DEALLOCATE_BUFFER`.
pub const IRP_DEALLOCATE_BUFFER: ULONG = 0x0000_0020;
/// `IRP_INPUT_OPERATION`.
pub const IRP_INPUT_OPERATION: ULONG = 0x0000_0040;
/// `IRP_READ_OPERATION`.
pub const IRP_READ_OPERATION: ULONG = 0x0000_0100;
/// `IRP_WRITE_OPERATION`.
pub const IRP_WRITE_OPERATION: ULONG = 0x0000_0200;
/// `SL_PENDING_RETURNED` in `IO_STACK_LOCATION::Control`: what `IoMarkIrpPending` sets.
pub const SL_PENDING_RETURNED: u8 = 0x01;

/// `METHOD_BUFFERED`: the two low bits of a control code.
pub const METHOD_BUFFERED: u32 = 0;
/// `METHOD_IN_DIRECT`: input in a system buffer, the output buffer described by an MDL
/// locked for read access (the driver reads it).
pub const METHOD_IN_DIRECT: u32 = 1;
/// `METHOD_OUT_DIRECT`: input in a system buffer, the output buffer described by an MDL
/// locked for write access.
pub const METHOD_OUT_DIRECT: u32 = 2;
/// `METHOD_NEITHER`: the caller's addresses as they are (`Type3InputBuffer`, `UserBuffer`).
pub const METHOD_NEITHER: u32 = 3;

/// `MDL_MAPPED_TO_SYSTEM_VA`: `MappedSystemVa` holds a system mapping of the pages.
pub const MDL_MAPPED_TO_SYSTEM_VA: i16 = 0x0001;
/// `MDL_PAGES_LOCKED`: the pages were probed and locked (`MmProbeAndLockPages`, or by the
/// I/O manager for direct I/O).
pub const MDL_PAGES_LOCKED: i16 = 0x0002;
/// `MDL_SOURCE_IS_NONPAGED_POOL`: built by `MmBuildMdlForNonPagedPool`; `MappedSystemVa` is
/// the buffer itself.
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;
/// `MDL_ALLOCATED_FIXED_SIZE`.
pub const MDL_ALLOCATED_FIXED_SIZE: i16 = 0x0008;
/// `MDL_WRITE_OPERATION`: locked for write access (`IoWriteAccess`, `IoModifyAccess`).
pub const MDL_WRITE_OPERATION: i16 = 0x0080;

/// `PDRIVER_DISPATCH` of an image: `NTSTATUS (PDEVICE_OBJECT, PIRP)`, Microsoft x64.
pub type DRIVER_DISPATCH = unsafe extern "win64" fn(*mut DEVICE_OBJECT, *mut IRP) -> NTSTATUS;
/// `PDRIVER_UNLOAD` of an image: `VOID (PDRIVER_OBJECT)`, Microsoft x64.
pub type DRIVER_UNLOAD = unsafe extern "win64" fn(*mut DRIVER_OBJECT);
/// `PDRIVER_INITIALIZE` of an image (`DriverEntry`): `NTSTATUS (PDRIVER_OBJECT,
/// PUNICODE_STRING RegistryPath)`, Microsoft x64.
pub type DRIVER_INITIALIZE =
    unsafe extern "win64" fn(*mut DRIVER_OBJECT, *mut UNICODE_STRING) -> NTSTATUS;

/// `DRIVER_OBJECT` (0x150 bytes).
#[repr(C)]
pub struct DRIVER_OBJECT {
    /// `IO_TYPE_DRIVER`.
    pub Type: i16,
    /// `sizeof(DRIVER_OBJECT)`.
    pub Size: i16,
    /// The first device object of the driver (a list through `NextDevice`, newest first).
    pub DeviceObject: *mut DEVICE_OBJECT,
    /// `DRVO_*` flags.
    pub Flags: ULONG,
    /// Base of the driver image (0 when not known).
    pub DriverStart: PVOID,
    /// Size of the driver image.
    pub DriverSize: ULONG,
    /// Loader data (null here).
    pub DriverSection: PVOID,
    /// The I/O manager's `DRIVER_EXTENSION`.
    pub DriverExtension: *mut DRIVER_EXTENSION,
    /// `\Driver\<name>`.
    pub DriverName: UNICODE_STRING,
    /// `\REGISTRY\MACHINE\HARDWARE\DESCRIPTION\SYSTEM`.
    pub HardwareDatabase: *mut UNICODE_STRING,
    /// `PFAST_IO_DISPATCH` (not used by this model).
    pub FastIoDispatch: PVOID,
    /// The entry point.
    pub DriverInit: PVOID,
    /// `PDRIVER_STARTIO` (not used by this model).
    pub DriverStartIo: PVOID,
    /// `PDRIVER_UNLOAD` (win64 code address, or 0).
    pub DriverUnload: usize,
    /// `PDRIVER_DISPATCH MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1]` (win64 code addresses).
    pub MajorFunction: [usize; IRP_MJ_MAXIMUM_FUNCTION + 1],
}

/// `DRIVER_EXTENSION` (the I/O manager's part: 0x38 bytes used, 0x50 allocated).
#[repr(C)]
pub struct DRIVER_EXTENSION {
    /// Back pointer to the driver object.
    pub DriverObject: *mut DRIVER_OBJECT,
    /// `PDRIVER_ADD_DEVICE` (not used by this model: no Plug and Play).
    pub AddDevice: PVOID,
    /// Times the driver was reinitialised.
    pub Count: ULONG,
    /// The service name.
    pub ServiceKeyName: UNICODE_STRING,
    _private: [u8; 0x50 - 0x28],
}

/// `DEVICE_OBJECT` (0x150 bytes, 16-byte aligned), followed in the same allocation by the
/// device extension and a `DEVOBJ_EXTENSION`, as `IoCreateDevice` lays them out.
#[repr(C, align(16))]
pub struct DEVICE_OBJECT {
    /// `IO_TYPE_DEVICE`.
    pub Type: i16,
    /// `sizeof(DEVICE_OBJECT)` + the device extension's size.
    pub Size: u16,
    /// References (not maintained by this model).
    pub ReferenceCount: i32,
    /// The driver that created the device.
    pub DriverObject: *mut DRIVER_OBJECT,
    /// The next device object of the same driver.
    pub NextDevice: *mut DEVICE_OBJECT,
    /// The device attached above (always null: no stacks here).
    pub AttachedDevice: *mut DEVICE_OBJECT,
    /// `StartIo` bookkeeping (null).
    pub CurrentIrp: *mut IRP,
    /// `PIO_TIMER` (null).
    pub Timer: PVOID,
    /// `DO_*` flags.
    pub Flags: ULONG,
    /// `FILE_*` device characteristics, as given to `IoCreateDevice`.
    pub Characteristics: ULONG,
    /// `PVPB` (null).
    pub Vpb: PVOID,
    /// The device extension (null when its size is 0).
    pub DeviceExtension: PVOID,
    /// `DEVICE_TYPE`.
    pub DeviceType: ULONG,
    /// Stack locations IRPs sent to this device need (1).
    pub StackSize: i8,
    _queue: [u8; 0x98 - 0x4D],
    /// `AlignmentRequirement` (`FILE_BYTE_ALIGNMENT`, 0).
    pub AlignmentRequirement: ULONG,
    _private: [u8; 0x138 - 0x9C],
    /// The `DEVOBJ_EXTENSION` after the device extension.
    pub DeviceObjectExtension: *mut DEVOBJ_EXTENSION,
    /// Reserved.
    pub Reserved: PVOID,
    _tail: [u8; 0x150 - 0x148],
}

/// `DEVOBJ_EXTENSION` (its public head; 0x70 bytes allocated).
#[repr(C)]
pub struct DEVOBJ_EXTENSION {
    /// `IO_TYPE_DEVICE_OBJECT_EXTENSION`.
    pub Type: i16,
    /// Its size.
    pub Size: u16,
    _pad: u32,
    /// Back pointer to the device object.
    pub DeviceObject: *mut DEVICE_OBJECT,
    _private: [u8; 0x70 - 0x10],
}

/// `MDL` (0x30 bytes), followed by its array of page frame numbers (one `PFN_NUMBER`, 8
/// bytes, per page the buffer spans).
#[repr(C)]
pub struct MDL {
    /// The next MDL of a chain (`Irp->MdlAddress` and the MDLs after it).
    pub Next: *mut MDL,
    /// Size of the MDL with its page array.
    pub Size: i16,
    /// `MDL_*` flags.
    pub MdlFlags: i16,
    _pad: u32,
    /// `PEPROCESS` of the locked pages (null here: one address space).
    pub Process: PVOID,
    /// The system address of the pages, when `MDL_MAPPED_TO_SYSTEM_VA` or
    /// `MDL_SOURCE_IS_NONPAGED_POOL`.
    pub MappedSystemVa: PVOID,
    /// The buffer's address rounded down to its page.
    pub StartVa: PVOID,
    /// The buffer's length.
    pub ByteCount: ULONG,
    /// The buffer's offset in its first page.
    pub ByteOffset: ULONG,
}

/// `IO_STATUS_BLOCK`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IO_STATUS_BLOCK {
    /// Completion status (the `Pointer` member of the union is not used).
    pub Status: NTSTATUS,
    _pad: u32,
    /// Request-dependent: for a device control, the bytes of output written.
    pub Information: usize,
}

/// `IRP` (0xD0 bytes), followed by its stack locations.
#[repr(C)]
pub struct IRP {
    /// `IO_TYPE_IRP`.
    pub Type: i16,
    /// Size of the IRP with its stack locations.
    pub Size: u16,
    /// Processor the IRP was allocated on.
    pub AllocationProcessorNumber: u16,
    /// Reserved.
    pub Reserved: u16,
    /// `PMDL` for direct I/O: the caller's buffer, locked (null otherwise).
    pub MdlAddress: *mut MDL,
    /// `IRP_*` flags.
    pub Flags: ULONG,
    /// `AssociatedIrp.SystemBuffer` (the only member used here).
    pub SystemBuffer: PVOID,
    /// `ThreadListEntry`.
    pub ThreadListEntry: [PVOID; 2],
    /// Completion status and information.
    pub IoStatus: IO_STATUS_BLOCK,
    /// `KPROCESSOR_MODE` of the requester (`UserMode`, 1: requests come from a client).
    pub RequestorMode: i8,
    /// Set when the IRP was pended.
    pub PendingReturned: u8,
    /// Number of stack locations.
    pub StackCount: i8,
    /// Index of the current stack location (1-based).
    pub CurrentLocation: i8,
    /// Cancel flag.
    pub Cancel: u8,
    /// IRQL of the cancel lock.
    pub CancelIrql: u8,
    /// APC environment.
    pub ApcEnvironment: i8,
    /// Allocation flags.
    pub AllocationFlags: u8,
    /// `PIO_STATUS_BLOCK UserIosb` (null).
    pub UserIosb: PVOID,
    /// `PKEVENT UserEvent` (null).
    pub UserEvent: PVOID,
    /// `Overlay`.
    pub Overlay: [u64; 2],
    /// `CancelRoutine` (null).
    pub CancelRoutine: PVOID,
    /// `UserBuffer`: the caller's output buffer (`METHOD_NEITHER`, and reads and writes of a
    /// device with neither buffered nor direct I/O); null otherwise.
    pub UserBuffer: PVOID,
    /// `Tail.Overlay.DriverContext` / `DeviceQueueEntry`.
    pub DriverContext: [PVOID; 4],
    /// `Tail.Overlay.Thread`.
    pub Thread: PVOID,
    /// `Tail.Overlay.AuxiliaryBuffer`.
    pub AuxiliaryBuffer: PVOID,
    /// `Tail.Overlay.ListEntry`.
    pub ListEntry: [PVOID; 2],
    /// `Tail.Overlay.CurrentStackLocation`.
    pub CurrentStackLocation: *mut IO_STACK_LOCATION,
    /// `Tail.Overlay.OriginalFileObject`.
    pub OriginalFileObject: *mut FILE_OBJECT,
    /// `Tail.Overlay.IrpExtension`.
    pub IrpExtension: PVOID,
}

/// `IO_STACK_LOCATION` (0x48 bytes).
#[repr(C)]
pub struct IO_STACK_LOCATION {
    /// `IRP_MJ_*`.
    pub MajorFunction: u8,
    /// `IRP_MN_*`.
    pub MinorFunction: u8,
    /// `SL_*` flags.
    pub Flags: u8,
    /// `SL_*` control flags (`SL_PENDING_RETURNED`).
    pub Control: u8,
    _pad: u32,
    /// `Parameters`: four pointer-sized words; see [`IO_STACK_LOCATION::set_device_io_control`]
    /// and [`IO_STACK_LOCATION::set_create`].
    pub Parameters: [usize; 4],
    /// The target device.
    pub DeviceObject: *mut DEVICE_OBJECT,
    /// The file object of the request.
    pub FileObject: *mut FILE_OBJECT,
    /// `PIO_COMPLETION_ROUTINE` (null: no driver above).
    pub CompletionRoutine: PVOID,
    /// Its context.
    pub Context: PVOID,
}

impl IO_STACK_LOCATION {
    /// `Parameters.DeviceIoControl`: `OutputBufferLength` (+0x08), `InputBufferLength`
    /// (+0x10), `IoControlCode` (+0x18), each `ULONG` `POINTER_ALIGNMENT`, and
    /// `Type3InputBuffer` (+0x20: the caller's input for `METHOD_NEITHER`, else null).
    pub fn set_device_io_control(
        &mut self,
        output: ULONG,
        input: ULONG,
        code: ULONG,
        type3_input: PVOID,
    ) {
        self.Parameters = [
            output as usize,
            input as usize,
            code as usize,
            type3_input as usize,
        ];
    }

    /// `Parameters.Read` / `Parameters.Write`: `Length` (+0x08), `Key` (+0x10, 0 here),
    /// `ByteOffset` (+0x18, a `LARGE_INTEGER`).
    pub fn set_read_write(&mut self, length: ULONG, byte_offset: i64) {
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)] // its bits, x64
        let offset = byte_offset as u64 as usize;
        self.Parameters = [length as usize, 0, offset, 0];
    }

    /// `Parameters.Create`: `SecurityContext` (+0x08), `Options` (+0x10, the disposition in
    /// the high byte), `FileAttributes` and `ShareAccess` (+0x18), `EaLength` (+0x20).
    pub fn set_create(&mut self, security_context: PVOID, options: ULONG, share_access: u16) {
        self.Parameters = [
            security_context as usize,
            options as usize,
            usize::from(share_access) << 16,
            0,
        ];
    }
}

/// `IO_SECURITY_CONTEXT` (0x18 bytes), for `Parameters.Create.SecurityContext`.
#[repr(C)]
pub struct IO_SECURITY_CONTEXT {
    /// `PSECURITY_QUALITY_OF_SERVICE` (null).
    pub SecurityQos: PVOID,
    /// `PACCESS_STATE` (null).
    pub AccessState: PVOID,
    /// The access asked for.
    pub DesiredAccess: ULONG,
    /// Reserved.
    pub FullCreateOptions: ULONG,
}

/// `FILE_OBJECT` (0xD8 bytes), up to `FileName`.
#[repr(C)]
pub struct FILE_OBJECT {
    /// `IO_TYPE_FILE`.
    pub Type: i16,
    /// `sizeof(FILE_OBJECT)`.
    pub Size: i16,
    _pad: u32,
    /// The device the file was opened on.
    pub DeviceObject: *mut DEVICE_OBJECT,
    /// `PVPB`.
    pub Vpb: PVOID,
    /// Driver-owned context.
    pub FsContext: PVOID,
    /// Driver-owned context.
    pub FsContext2: PVOID,
    _private: [u8; 0x58 - 0x28],
    /// The name below the device (empty: only the device itself is opened here).
    pub FileName: UNICODE_STRING,
    _tail: [u8; 0xD8 - 0x68],
}

/// `GENERIC_READ | GENERIC_WRITE`: what every open asks for.
pub const GENERIC_READ_WRITE: ULONG = 0xC000_0000;
/// `FILE_OPEN` (1) in the high byte of `Options`.
pub const FILE_OPEN_OPTIONS: ULONG = 1 << 24;
/// `FILE_SHARE_READ | FILE_SHARE_WRITE`.
pub const SHARE_READ_WRITE: u16 = 0x3;

const _: () = {
    assert!(size_of::<DRIVER_OBJECT>() == 0x150);
    assert!(offset_of!(DRIVER_OBJECT, DeviceObject) == 0x08);
    assert!(offset_of!(DRIVER_OBJECT, Flags) == 0x10);
    assert!(offset_of!(DRIVER_OBJECT, DriverStart) == 0x18);
    assert!(offset_of!(DRIVER_OBJECT, DriverSize) == 0x20);
    assert!(offset_of!(DRIVER_OBJECT, DriverSection) == 0x28);
    assert!(offset_of!(DRIVER_OBJECT, DriverExtension) == 0x30);
    assert!(offset_of!(DRIVER_OBJECT, DriverName) == 0x38);
    assert!(offset_of!(DRIVER_OBJECT, HardwareDatabase) == 0x48);
    assert!(offset_of!(DRIVER_OBJECT, DriverInit) == 0x58);
    assert!(offset_of!(DRIVER_OBJECT, DriverUnload) == 0x68);
    assert!(offset_of!(DRIVER_OBJECT, MajorFunction) == 0x70);
    assert!(size_of::<DRIVER_OBJECT>() >= size_of::<ddi::DRIVER_OBJECT>());

    assert!(offset_of!(DRIVER_EXTENSION, ServiceKeyName) == 0x18);

    assert!(size_of::<DEVICE_OBJECT>() == 0x150);
    assert!(align_of::<DEVICE_OBJECT>() == 16);
    assert!(offset_of!(DEVICE_OBJECT, DriverObject) == 0x08);
    assert!(offset_of!(DEVICE_OBJECT, NextDevice) == 0x10);
    assert!(offset_of!(DEVICE_OBJECT, CurrentIrp) == 0x20);
    assert!(offset_of!(DEVICE_OBJECT, Flags) == 0x30);
    assert!(offset_of!(DEVICE_OBJECT, Characteristics) == 0x34);
    assert!(offset_of!(DEVICE_OBJECT, DeviceExtension) == 0x40);
    assert!(offset_of!(DEVICE_OBJECT, DeviceType) == 0x48);
    assert!(offset_of!(DEVICE_OBJECT, StackSize) == 0x4C);
    assert!(offset_of!(DEVICE_OBJECT, AlignmentRequirement) == 0x98);
    assert!(offset_of!(DEVICE_OBJECT, DeviceObjectExtension) == 0x138);

    assert!(size_of::<MDL>() == 0x30);
    assert!(offset_of!(MDL, Size) == 0x08);
    assert!(offset_of!(MDL, MdlFlags) == 0x0A);
    assert!(offset_of!(MDL, Process) == 0x10);
    assert!(offset_of!(MDL, MappedSystemVa) == 0x18);
    assert!(offset_of!(MDL, StartVa) == 0x20);
    assert!(offset_of!(MDL, ByteCount) == 0x28);
    assert!(offset_of!(MDL, ByteOffset) == 0x2C);

    assert!(size_of::<IO_STATUS_BLOCK>() == 0x10);
    assert!(size_of::<IRP>() == 0xD0);
    assert!(offset_of!(IRP, MdlAddress) == 0x08);
    assert!(offset_of!(IRP, Flags) == 0x10);
    assert!(offset_of!(IRP, SystemBuffer) == 0x18);
    assert!(offset_of!(IRP, IoStatus) == 0x30);
    assert!(offset_of!(IRP, RequestorMode) == 0x40);
    assert!(offset_of!(IRP, StackCount) == 0x42);
    assert!(offset_of!(IRP, CurrentLocation) == 0x43);
    assert!(offset_of!(IRP, UserIosb) == 0x48);
    assert!(offset_of!(IRP, CancelRoutine) == 0x68);
    assert!(offset_of!(IRP, UserBuffer) == 0x70);
    assert!(offset_of!(IRP, Thread) == 0x98);
    assert!(offset_of!(IRP, CurrentStackLocation) == 0xB8);
    assert!(offset_of!(IRP, OriginalFileObject) == 0xC0);

    assert!(size_of::<IO_STACK_LOCATION>() == 0x48);
    assert!(offset_of!(IO_STACK_LOCATION, Control) == 0x03);
    assert!(offset_of!(IO_STACK_LOCATION, Parameters) == 0x08);
    assert!(offset_of!(IO_STACK_LOCATION, DeviceObject) == 0x28);
    assert!(offset_of!(IO_STACK_LOCATION, FileObject) == 0x30);
    assert!(offset_of!(IO_STACK_LOCATION, Context) == 0x40);

    assert!(size_of::<IO_SECURITY_CONTEXT>() == 0x18);
    assert!(size_of::<FILE_OBJECT>() == 0xD8);
    assert!(offset_of!(FILE_OBJECT, DeviceObject) == 0x08);
    assert!(offset_of!(FILE_OBJECT, FsContext) == 0x18);
    assert!(offset_of!(FILE_OBJECT, FileName) == 0x58);
};
