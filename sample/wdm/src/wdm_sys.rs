//! The WDM bindings this driver needs, and nothing more: written by hand from `wdm.h` (no
//! WDK), in the LLP64 layout of x64 and ARM64, every offset the driver uses asserted at
//! compile time.
//!
//! Kernel structures the driver only receives (`DRIVER_OBJECT`, `DEVICE_OBJECT`, `IRP`,
//! `IO_STACK_LOCATION`) are declared up to the fields it touches; what the I/O manager keeps
//! private is an opaque byte array of the right size, so the structures still have their
//! documented size and alignment. General NT types (`NTSTATUS`, `UNICODE_STRING`, …) come
//! from `driver_proxy::sys`.
//!
//! Imports are `raw-dylib` from `ntoskrnl.exe`: rustc writes the import library itself, so
//! no WDK import library is needed, and `+verbatim` keeps the DLL name exactly
//! `ntoskrnl.exe`. Every routine imported here exists in every Windows 10 and 11 kernel.
//! Nothing `driver-proxy` calls is imported here: it resolves its routines at run time
//! (DriverProxy, which older kernels lack, and the event, wait, thread, handle and
//! driver-object-extension routines of worker threads and of its endpoint record), through
//! its one static import, `MmGetSystemRoutineAddress`, from the same DLL; a static import of
//! one of them would make a kernel without it refuse the whole image instead.

#![allow(
    non_snake_case,
    non_camel_case_types,
    clippy::upper_case_acronyms,
    dead_code,
    reason = "names and fields follow wdm.h, so that each one can be checked against it"
)]

use core::ffi::c_char;
use core::mem::{offset_of, size_of};

pub use driver_proxy::sys::{
    BOOLEAN, CCHAR, FALSE, HANDLE, LARGE_INTEGER, NTSTATUS, PUNICODE_STRING, PVOID, TRUE, ULONG,
    UNICODE_STRING,
};

/// `ULONG_PTR`.
pub type ULONG_PTR = usize;

/// `IRP_MJ_CREATE`.
pub const IRP_MJ_CREATE: usize = 0x00;
/// `IRP_MJ_CLOSE`.
pub const IRP_MJ_CLOSE: usize = 0x02;
/// `IRP_MJ_DEVICE_CONTROL`.
pub const IRP_MJ_DEVICE_CONTROL: usize = 0x0E;
/// `IRP_MJ_MAXIMUM_FUNCTION`: the `MajorFunction` table has this many entries plus one.
pub const IRP_MJ_MAXIMUM_FUNCTION: usize = 0x1B;

/// `FILE_DEVICE_SECURE_OPEN`: the device object's security descriptor applies to opens of
/// any name below the device, not only of the device itself.
pub const FILE_DEVICE_SECURE_OPEN: ULONG = 0x0000_0100;
/// `DO_DEVICE_INITIALIZING`: set by `IoCreateDevice`; cleared when the device may receive
/// requests.
pub const DO_DEVICE_INITIALIZING: ULONG = 0x0000_0080;
/// `METHOD_BUFFERED`: the two low bits of a control code.
pub const METHOD_BUFFERED: u32 = 0;
/// `IO_NO_INCREMENT` as the `CCHAR` priority boost of `IoCompleteRequest`.
pub const IO_NO_INCREMENT: CCHAR = 0;

/// `PDRIVER_DISPATCH`: `NTSTATUS DriverDispatch(PDEVICE_OBJECT, PIRP)`.
pub type DRIVER_DISPATCH = unsafe extern "system" fn(PDEVICE_OBJECT, PIRP) -> NTSTATUS;
/// `PDRIVER_UNLOAD`: `VOID DriverUnload(PDRIVER_OBJECT)`.
pub type DRIVER_UNLOAD = unsafe extern "system" fn(PDRIVER_OBJECT);

/// `DRIVER_OBJECT` (0x150 bytes).
#[repr(C)]
pub struct DRIVER_OBJECT {
    /// `IO_TYPE_DRIVER` (4).
    pub Type: i16,
    /// Size of the object.
    pub Size: i16,
    /// First device object the driver created (a list through `NextDevice`).
    pub DeviceObject: PDEVICE_OBJECT,
    /// `DRVO_*` flags.
    pub Flags: ULONG,
    /// Base of the driver image.
    pub DriverStart: PVOID,
    /// Size of the driver image.
    pub DriverSize: ULONG,
    /// Loader data (private).
    pub DriverSection: PVOID,
    /// `PDRIVER_EXTENSION` (the I/O manager's, holding `AddDevice`).
    pub DriverExtension: PVOID,
    /// `\Driver\<service name>`.
    pub DriverName: UNICODE_STRING,
    /// Registry path of the hardware configuration.
    pub HardwareDatabase: PUNICODE_STRING,
    /// `PFAST_IO_DISPATCH`.
    pub FastIoDispatch: PVOID,
    /// `PDRIVER_INITIALIZE`: the entry point.
    pub DriverInit: PVOID,
    /// `PDRIVER_STARTIO`.
    pub DriverStartIo: PVOID,
    /// `PDRIVER_UNLOAD`.
    pub DriverUnload: Option<DRIVER_UNLOAD>,
    /// `PDRIVER_DISPATCH MajorFunction[IRP_MJ_MAXIMUM_FUNCTION + 1]`.
    pub MajorFunction: [Option<DRIVER_DISPATCH>; IRP_MJ_MAXIMUM_FUNCTION + 1],
}
/// `PDRIVER_OBJECT`.
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// `DEVICE_OBJECT` (0x150 bytes, `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` = 16), up to
/// `StackSize`; the rest (`Queue`, `DeviceQueue`, `Dpc`, `DeviceLock`, …) is the I/O
/// manager's.
#[repr(C, align(16))]
pub struct DEVICE_OBJECT {
    /// `IO_TYPE_DEVICE` (3).
    pub Type: i16,
    /// Size of the object including the device extension.
    pub Size: u16,
    /// References (private).
    pub ReferenceCount: i32,
    /// The driver that created the device.
    pub DriverObject: PDRIVER_OBJECT,
    /// The next device object the same driver created.
    pub NextDevice: PDEVICE_OBJECT,
    /// The device attached above, if any.
    pub AttachedDevice: PDEVICE_OBJECT,
    /// `StartIo` bookkeeping.
    pub CurrentIrp: PIRP,
    /// `PIO_TIMER`.
    pub Timer: PVOID,
    /// `DO_*` flags.
    pub Flags: ULONG,
    /// `FILE_*` device characteristics.
    pub Characteristics: ULONG,
    /// `PVPB`.
    pub Vpb: PVOID,
    /// The driver-defined device extension (`DeviceExtensionSize` bytes, non-paged).
    pub DeviceExtension: PVOID,
    /// `DEVICE_TYPE`.
    pub DeviceType: ULONG,
    /// Stack locations IRPs sent to this device need.
    pub StackSize: CCHAR,
    _private: [u8; 0x150 - 0x4D],
}
/// `PDEVICE_OBJECT`.
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;

/// `IO_STATUS_BLOCK`.
#[repr(C)]
pub struct IO_STATUS_BLOCK {
    /// `Status` (or `Pointer`, reserved).
    pub Status: IO_STATUS_BLOCK_0,
    /// Request-dependent: for a device control, the bytes of output written.
    pub Information: ULONG_PTR,
}

/// The `Status` / `Pointer` union of `IO_STATUS_BLOCK`.
#[repr(C)]
pub union IO_STATUS_BLOCK_0 {
    /// Completion status.
    pub Status: NTSTATUS,
    /// Reserved for internal use.
    pub Pointer: PVOID,
}

/// `AssociatedIrp` of `IRP`.
#[repr(C)]
pub union IRP_ASSOCIATED {
    /// For an associated IRP: its master.
    pub MasterIrp: PIRP,
    /// For a master IRP: the count of its associated IRPs.
    pub IrpCount: i32,
    /// For `METHOD_BUFFERED`: the system buffer holding the input and receiving the output.
    pub SystemBuffer: PVOID,
}

/// `IRP` (0xD0 bytes), with the fields a dispatch routine of a `METHOD_BUFFERED` device
/// control uses; `Tail.Overlay.CurrentStackLocation` is given its own name.
#[repr(C)]
pub struct IRP {
    /// `IO_TYPE_IRP` (6).
    pub Type: i16,
    /// Size of the IRP with its stack locations.
    pub Size: u16,
    /// Processor the IRP was allocated on.
    pub AllocationProcessorNumber: u16,
    /// Reserved.
    pub Reserved: u16,
    /// `PMDL` for direct I/O.
    pub MdlAddress: PVOID,
    /// `IRP_*` flags.
    pub Flags: ULONG,
    /// `AssociatedIrp`.
    pub AssociatedIrp: IRP_ASSOCIATED,
    /// `ThreadListEntry` (`LIST_ENTRY`).
    pub ThreadListEntry: [PVOID; 2],
    /// Completion status and information.
    pub IoStatus: IO_STATUS_BLOCK,
    /// `RequestorMode` … `Tail.Overlay.ListEntry` (private to the I/O manager).
    _private: [u8; 0xB8 - 0x40],
    /// `Tail.Overlay.CurrentStackLocation`: what `IoGetCurrentIrpStackLocation` returns.
    pub CurrentStackLocation: PIO_STACK_LOCATION,
    /// `Tail.Overlay.OriginalFileObject`.
    pub OriginalFileObject: PVOID,
    /// `Tail.Overlay.IrpExtension`.
    pub IrpExtension: PVOID,
}
/// `PIRP`.
pub type PIRP = *mut IRP;

/// `Parameters.DeviceIoControl` of `IO_STACK_LOCATION` (each `ULONG` is
/// `POINTER_ALIGNMENT`, hence the padding).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DEVICE_IO_CONTROL_PARAMETERS {
    /// Length of the caller's output buffer.
    pub OutputBufferLength: ULONG,
    _pad0: u32,
    /// Length of the caller's input buffer.
    pub InputBufferLength: ULONG,
    _pad1: u32,
    /// The control code.
    pub IoControlCode: ULONG,
    _pad2: u32,
    /// `METHOD_NEITHER` input buffer.
    pub Type3InputBuffer: PVOID,
}

/// The `Parameters` union of `IO_STACK_LOCATION` (four pointers).
#[repr(C)]
pub union IO_STACK_LOCATION_PARAMETERS {
    /// For `IRP_MJ_DEVICE_CONTROL`.
    pub DeviceIoControl: DEVICE_IO_CONTROL_PARAMETERS,
    /// `Parameters.Others`: the union's size.
    pub Others: [PVOID; 4],
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
    /// `SL_*` control flags.
    pub Control: u8,
    /// The request's parameters.
    pub Parameters: IO_STACK_LOCATION_PARAMETERS,
    /// The target device.
    pub DeviceObject: PDEVICE_OBJECT,
    /// `PFILE_OBJECT`.
    pub FileObject: PVOID,
    /// `PIO_COMPLETION_ROUTINE`.
    pub CompletionRoutine: PVOID,
    /// Its context.
    pub Context: PVOID,
}
/// `PIO_STACK_LOCATION`.
pub type PIO_STACK_LOCATION = *mut IO_STACK_LOCATION;

const _: () = {
    assert!(size_of::<DRIVER_OBJECT>() == 0x150);
    assert!(offset_of!(DRIVER_OBJECT, DeviceObject) == 0x08);
    assert!(offset_of!(DRIVER_OBJECT, DriverExtension) == 0x30);
    assert!(offset_of!(DRIVER_OBJECT, DriverName) == 0x38);
    assert!(offset_of!(DRIVER_OBJECT, DriverInit) == 0x58);
    assert!(offset_of!(DRIVER_OBJECT, DriverUnload) == 0x68);
    assert!(offset_of!(DRIVER_OBJECT, MajorFunction) == 0x70);

    assert!(size_of::<DEVICE_OBJECT>() == 0x150);
    assert!(core::mem::align_of::<DEVICE_OBJECT>() == 16);
    assert!(offset_of!(DEVICE_OBJECT, DriverObject) == 0x08);
    assert!(offset_of!(DEVICE_OBJECT, NextDevice) == 0x10);
    assert!(offset_of!(DEVICE_OBJECT, Flags) == 0x30);
    assert!(offset_of!(DEVICE_OBJECT, DeviceExtension) == 0x40);
    assert!(offset_of!(DEVICE_OBJECT, DeviceType) == 0x48);
    assert!(offset_of!(DEVICE_OBJECT, StackSize) == 0x4C);

    assert!(size_of::<IO_STATUS_BLOCK>() == 0x10);
    assert!(offset_of!(IO_STATUS_BLOCK, Information) == 0x08);

    assert!(size_of::<IRP>() == 0xD0);
    assert!(offset_of!(IRP, MdlAddress) == 0x08);
    assert!(offset_of!(IRP, AssociatedIrp) == 0x18);
    assert!(offset_of!(IRP, IoStatus) == 0x30);
    assert!(offset_of!(IRP, CurrentStackLocation) == 0xB8);
    assert!(offset_of!(IRP, OriginalFileObject) == 0xC0);

    assert!(size_of::<IO_STACK_LOCATION>() == 0x48);
    assert!(offset_of!(IO_STACK_LOCATION, Parameters) == 0x08);
    assert!(offset_of!(IO_STACK_LOCATION, DeviceObject) == 0x28);
    assert!(offset_of!(IO_STACK_LOCATION, Context) == 0x40);
    // Parameters.DeviceIoControl.{OutputBufferLength, InputBufferLength, IoControlCode,
    // Type3InputBuffer} at 0x08, 0x10, 0x18, 0x20 of the stack location.
    assert!(offset_of!(DEVICE_IO_CONTROL_PARAMETERS, OutputBufferLength) == 0x00);
    assert!(offset_of!(DEVICE_IO_CONTROL_PARAMETERS, InputBufferLength) == 0x08);
    assert!(offset_of!(DEVICE_IO_CONTROL_PARAMETERS, IoControlCode) == 0x10);
    assert!(offset_of!(DEVICE_IO_CONTROL_PARAMETERS, Type3InputBuffer) == 0x18);
    assert!(size_of::<IO_STACK_LOCATION_PARAMETERS>() == 0x20);
};

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    /// `IoCreateDevice`: creates a device object with a zeroed, non-paged device extension
    /// of `DeviceExtensionSize` bytes. IRQL: `PASSIVE_LEVEL`.
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

    /// `IofCompleteRequest`, what the `IoCompleteRequest` macro calls. IRQL:
    /// `<= DISPATCH_LEVEL`.
    pub fn IofCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR);
}

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    /// `DbgPrint`: a `printf`-style message to the kernel debugger (512 bytes at most).
    /// IRQL: any, for the ANSI conversions used here (`%u`, `%X`, `%s` and `%.*s` of ANSI
    /// text).
    pub fn DbgPrint(Format: *const c_char, ...) -> ULONG;
}

/// A `UNICODE_STRING` over a constant UTF-16 name (no NUL; the kernel only reads it).
#[must_use]
pub fn unicode_string(units: &'static [u16]) -> UNICODE_STRING {
    // The names are a few dozen units; a longer one would be cut to what a count can hold.
    let bytes = u16::try_from(units.len() * 2).unwrap_or(u16::MAX - 1);
    UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: units.as_ptr().cast_mut(),
    }
}

/// The current stack location of `irp` (`IoGetCurrentIrpStackLocation`).
///
/// # Safety
/// `irp` must be a valid IRP owned by the caller's dispatch routine.
pub unsafe fn current_stack_location(irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees `irp` is a valid IRP.
    unsafe { (*irp).CurrentStackLocation }
}

/// Completes `irp` with `status` and `information` (`IoCompleteRequest` with no boost) and
/// returns `status`, the value the dispatch routine returns.
///
/// # Safety
/// `irp` must be a valid IRP that the caller owns and has not completed; the caller must not
/// touch it afterwards.
pub unsafe fn complete_request(irp: PIRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    // SAFETY: the caller owns the valid, uncompleted IRP (this function's contract); after
    // IofCompleteRequest it is never touched again.
    unsafe {
        (*irp).IoStatus.Status.Status = status;
        (*irp).IoStatus.Information = information;
        IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status
}
