//! The six endpoints: every routine the driver hands to the kernel, registered in one V1
//! table and handed out only as wrappers.
//!
//! | id | endpoint | handed out as |
//! |---|---|---|
//! | [`OPEN_CLOSE`] = 1 | [`dispatch_open_close`] | `MajorFunction[IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE]` |
//! | [`READ`] = 2 | [`dispatch_read`] | `MajorFunction[IRP_MJ_READ]` |
//! | [`WRITE`] = 3 | [`dispatch_write`] | `MajorFunction[IRP_MJ_WRITE]` |
//! | [`DEVICE_CONTROL`] = 4 | [`dispatch_device_control`] | `MajorFunction[IRP_MJ_DEVICE_CONTROL]` |
//! | [`UNLOAD`] = 5 | [`driver_unload`] | `DriverUnload` |
//! | [`FLUSH`] = 6 | [`flush_routine`] | the work item's routine (`IoQueueWorkItem`) |
//!
//! A swap is the incoming image registering the same ids with the same signatures. Every
//! endpoint keeps its state in the device extension ([`Pad`]), never in the image.

use core::sync::atomic::Ordering;

use driver_proxy::{
    EndpointEntry, EndpointId, EndpointTable, HotSwap, LookupError, NtStatus, RegisterError,
    Wrapped,
};
use scratchpad::{
    CAPACITY, CHECKSUM_SIZE, Checksum, INFO_SIZE, IOCTL_CHECKSUM, IOCTL_DUMP, IOCTL_FLUSH,
    IOCTL_INFO, IOCTL_LOAD, Info, MAGIC, STATUS_DISK_FULL, STATUS_END_OF_FILE, VERSION, checksum,
};

use super::pad::{self, Pad};
use super::wdm::{
    self, DRIVER_DISPATCH, DRIVER_UNLOAD, IO_WORKITEM_ROUTINE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE,
    IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, IRP_MJ_READ, IRP_MJ_WRITE, NTSTATUS, PDEVICE_OBJECT,
    PDRIVER_OBJECT, PIRP, PVOID, USER_MODE,
};

/// `IRP_MJ_CREATE`, `IRP_MJ_CLEANUP`, `IRP_MJ_CLOSE`.
pub const OPEN_CLOSE: EndpointId<DRIVER_DISPATCH> = EndpointId::new(1);
/// `IRP_MJ_READ`.
pub const READ: EndpointId<DRIVER_DISPATCH> = EndpointId::new(2);
/// `IRP_MJ_WRITE`.
pub const WRITE: EndpointId<DRIVER_DISPATCH> = EndpointId::new(3);
/// `IRP_MJ_DEVICE_CONTROL`.
pub const DEVICE_CONTROL: EndpointId<DRIVER_DISPATCH> = EndpointId::new(4);
/// `DriverUnload`.
pub const UNLOAD: EndpointId<DRIVER_UNLOAD> = EndpointId::new(5);
/// The flush work item's routine.
pub const FLUSH: EndpointId<IO_WORKITEM_ROUTINE> = EndpointId::new(6);

/// This image's V1 table.
///
/// # Errors
/// Never for this table (its ids are distinct and non-zero).
pub fn table() -> Result<EndpointTable<6>, RegisterError> {
    EndpointTable::new([
        EndpointEntry::new(OPEN_CLOSE, dispatch_open_close as DRIVER_DISPATCH),
        EndpointEntry::new(READ, dispatch_read as DRIVER_DISPATCH),
        EndpointEntry::new(WRITE, dispatch_write as DRIVER_DISPATCH),
        EndpointEntry::new(DEVICE_CONTROL, dispatch_device_control as DRIVER_DISPATCH),
        EndpointEntry::new(UNLOAD, driver_unload as DRIVER_UNLOAD),
        EndpointEntry::new(FLUSH, flush_routine as IO_WORKITEM_ROUTINE),
    ])
}

/// The wrappers of the endpoints (in fallback: the endpoints themselves).
#[derive(Clone, Copy, Debug)]
pub struct Wrappers {
    open_close: Wrapped<DRIVER_DISPATCH>,
    read: Wrapped<DRIVER_DISPATCH>,
    write: Wrapped<DRIVER_DISPATCH>,
    device_control: Wrapped<DRIVER_DISPATCH>,
    unload: Wrapped<DRIVER_UNLOAD>,
    /// The flush routine's wrapper, for `IoQueueWorkItem`.
    pub flush: Wrapped<IO_WORKITEM_ROUTINE>,
}

impl Wrappers {
    /// Looks every wrapper up after `table` was registered.
    ///
    /// # Errors
    /// [`LookupError`].
    pub fn look_up(hotswap: &HotSwap, table: &EndpointTable<6>) -> Result<Self, LookupError> {
        Ok(Self {
            open_close: hotswap.wrapper(table, OPEN_CLOSE)?,
            read: hotswap.wrapper(table, READ)?,
            write: hotswap.wrapper(table, WRITE)?,
            device_control: hotswap.wrapper(table, DEVICE_CONTROL)?,
            unload: hotswap.wrapper(table, UNLOAD)?,
            flush: hotswap.wrapper(table, FLUSH)?,
        })
    }

    /// Stores the wrappers in the driver object; a slot already holding its wrapper is left
    /// alone (a V1 swap keeps the wrappers).
    ///
    /// # Safety
    /// `driver` is this driver's object; each slot is written with one aligned store.
    pub unsafe fn install(&self, driver: PDRIVER_OBJECT) {
        let slots = [
            (IRP_MJ_CREATE, self.open_close),
            (IRP_MJ_CLEANUP, self.open_close),
            (IRP_MJ_CLOSE, self.open_close),
            (IRP_MJ_READ, self.read),
            (IRP_MJ_WRITE, self.write),
            (IRP_MJ_DEVICE_CONTROL, self.device_control),
        ];
        for (major, wrapper) in slots {
            // SAFETY: caller contract; `major` is inside the table.
            unsafe {
                let slot = &raw mut (*driver).MajorFunction[major];
                if slot.read().map(|f| f as usize) != Some(wrapper.address()) {
                    slot.write_volatile(Some(wrapper.get()));
                }
            }
        }
        // SAFETY: as above.
        unsafe {
            let slot = &raw mut (*driver).DriverUnload;
            if slot.read().map(|f| f as usize) != Some(self.unload.address()) {
                slot.write_volatile(Some(self.unload.get()));
            }
        }
    }
}

/// The current stack location of `irp`.
///
/// # Safety
/// `irp` is a live IRP.
unsafe fn stack<'i>(irp: PIRP) -> &'i wdm::IO_STACK_LOCATION {
    // SAFETY: caller contract.
    unsafe { &*(*irp).CurrentStackLocation }
}

/// Create, cleanup, close: nothing to do.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called by the I/O manager with a live IRP.
pub unsafe extern "system" fn dispatch_open_close(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager's IRP, completed once.
    unsafe { wdm::complete(irp, NtStatus::SUCCESS.raw(), 0) }
}

/// The offset and length of a read or write, checked against the store: `Err` for a
/// negative offset.
fn range(offset: i64, length: usize) -> Result<(usize, usize), NtStatus> {
    let offset = usize::try_from(offset).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    Ok((offset, length))
}

/// `IRP_MJ_READ` (direct I/O): the bytes at `ByteOffset`, as many as the store has.
///
/// IRQL: `<= APC_LEVEL` (the caller's thread).
///
/// # Safety
/// Called by the I/O manager with a device of this driver and a live IRP.
pub unsafe extern "system" fn dispatch_read(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: our device.
    let pad = unsafe { Pad::of(device) };
    pad.requests.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the I/O manager's read IRP.
    let stack = unsafe { stack(irp) };
    let (offset, length) = match range(stack.byte_offset(), stack.transfer_length()) {
        Ok(range) => range,
        // SAFETY: completed once.
        Err(status) => return unsafe { wdm::complete(irp, status.raw(), 0) },
    };
    let (status, information) = if length == 0 {
        (NtStatus::SUCCESS, 0)
    } else if offset >= CAPACITY {
        (NtStatus(STATUS_END_OF_FILE), 0)
    } else {
        // SAFETY: direct I/O with a length: the I/O manager's locked MDL of the buffer.
        let target = unsafe { wdm::system_address((*irp).MdlAddress) };
        if target.is_null() {
            (NtStatus::INSUFFICIENT_RESOURCES, 0)
        } else {
            let count = length.min(CAPACITY - offset);
            for (i, byte) in pad.store()[offset..offset + count].iter().enumerate() {
                // SAFETY: the mapping holds `length` >= `count` bytes.
                unsafe { target.add(i).write(byte.load(Ordering::Relaxed)) };
            }
            pad.reads.fetch_add(1, Ordering::Relaxed);
            (NtStatus::SUCCESS, count)
        }
    };
    // SAFETY: completed once.
    unsafe { wdm::complete(irp, status.raw(), information) }
}

/// Stores `count` bytes from `source` at `offset` (checked by the caller).
///
/// # Safety
/// `source` is readable for `count` bytes; `offset + count <= CAPACITY`.
unsafe fn store(pad: &Pad, offset: usize, source: *const u8, count: usize) {
    for (i, byte) in pad.store()[offset..offset + count].iter().enumerate() {
        // SAFETY: caller contract.
        byte.store(unsafe { source.add(i).read() }, Ordering::Relaxed);
    }
}

/// `IRP_MJ_WRITE` (direct I/O): stores the bytes at `ByteOffset`, or nothing if they do not
/// fit; queues the flush.
///
/// IRQL: `<= APC_LEVEL`.
///
/// # Safety
/// As [`dispatch_read`].
pub unsafe extern "system" fn dispatch_write(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: our device.
    let pad = unsafe { Pad::of(device) };
    pad.requests.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the I/O manager's write IRP.
    let stack = unsafe { stack(irp) };
    let (offset, length) = match range(stack.byte_offset(), stack.transfer_length()) {
        Ok(range) => range,
        // SAFETY: completed once.
        Err(status) => return unsafe { wdm::complete(irp, status.raw(), 0) },
    };
    let (status, information) = if offset.checked_add(length).is_none_or(|end| end > CAPACITY) {
        (NtStatus(STATUS_DISK_FULL), 0)
    } else if length == 0 {
        (NtStatus::SUCCESS, 0)
    } else {
        // SAFETY: direct I/O with a length: the I/O manager's locked MDL of the buffer.
        let source = unsafe { wdm::system_address((*irp).MdlAddress) };
        if source.is_null() {
            (NtStatus::INSUFFICIENT_RESOURCES, 0)
        } else {
            // SAFETY: the mapping holds `length` bytes; the range fits (checked).
            unsafe { store(pad, offset, source, length) };
            pad.writes.fetch_add(1, Ordering::Relaxed);
            pad.queue_flush();
            (NtStatus::SUCCESS, length)
        }
    };
    // SAFETY: completed once.
    unsafe { wdm::complete(irp, status.raw(), information) }
}

/// The `u32` offset at the start of a system buffer of `length` bytes.
///
/// # Safety
/// `buffer` is null or readable for `length` bytes.
unsafe fn offset_input(buffer: PVOID, length: usize) -> Option<usize> {
    if buffer.is_null() || length < 4 {
        return None;
    }
    // SAFETY: caller contract: at least 4 readable bytes.
    let raw = unsafe { buffer.cast::<[u8; 4]>().read_unaligned() };
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

/// `IRP_MJ_DEVICE_CONTROL`: the protocol's codes, one per transfer type (`src/lib.rs`).
///
/// IRQL: `PASSIVE_LEVEL` (the caller's thread: `METHOD_NEITHER`'s addresses are its own).
///
/// # Safety
/// As [`dispatch_read`].
pub unsafe extern "system" fn dispatch_device_control(
    device: PDEVICE_OBJECT,
    irp: PIRP,
) -> NTSTATUS {
    // SAFETY: our device.
    let pad = unsafe { Pad::of(device) };
    pad.requests.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the I/O manager's IRP; its buffers are as the code's transfer type says.
    let (status, information) = unsafe {
        let stack = stack(irp);
        let (input_length, output_length) = (stack.input_length(), stack.output_length());
        match stack.control_code() {
            IOCTL_INFO => info(pad, (*irp).SystemBuffer, output_length),
            IOCTL_LOAD => load(
                pad,
                offset_input((*irp).SystemBuffer, input_length),
                (*irp).MdlAddress,
                output_length,
            ),
            IOCTL_DUMP => dump(
                pad,
                offset_input((*irp).SystemBuffer, input_length),
                (*irp).MdlAddress,
                output_length,
            ),
            IOCTL_CHECKSUM => checksum_neither(
                pad,
                (*irp).RequestorMode == USER_MODE,
                (stack.type3_input().cast::<u8>(), input_length),
                ((*irp).UserBuffer.cast::<u8>(), output_length),
            ),
            IOCTL_FLUSH => (NtStatus::SUCCESS, usize::from(!pad.queue_flush())),
            _ => (NtStatus::INVALID_DEVICE_REQUEST, 0),
        }
    };
    // SAFETY: completed once.
    unsafe { wdm::complete(irp, status.raw(), information) }
}

/// `INFO` (`METHOD_BUFFERED`).
///
/// # Safety
/// `system_buffer` holds `output_length` writable bytes (or is null with 0).
unsafe fn info(pad: &Pad, system_buffer: PVOID, output_length: usize) -> (NtStatus, usize) {
    if system_buffer.is_null() || output_length < INFO_SIZE {
        return (NtStatus::BUFFER_TOO_SMALL, 0);
    }
    let info = Info {
        magic: MAGIC,
        version: VERSION,
        swaps: pad.swaps.load(Ordering::Acquire),
        last_flush_version: pad.last_flush_version.load(Ordering::Acquire),
        requests: pad.requests.load(Ordering::Relaxed),
        reads: pad.reads.load(Ordering::Relaxed),
        writes: pad.writes.load(Ordering::Relaxed),
        flushes: pad.flushes.load(Ordering::Acquire),
        flushed_checksum: pad.flushed_checksum.load(Ordering::Acquire),
    };
    // SAFETY: caller contract: at least INFO_SIZE writable bytes.
    unsafe {
        system_buffer
            .cast::<[u8; INFO_SIZE]>()
            .write_unaligned(info.to_bytes());
    }
    (NtStatus::SUCCESS, INFO_SIZE)
}

/// `LOAD` (`METHOD_IN_DIRECT`): the MDL's buffer (read access) stored at the offset.
///
/// # Safety
/// `mdl` null or the I/O manager's locked MDL of `length` bytes.
unsafe fn load(
    pad: &Pad,
    offset: Option<usize>,
    mdl: wdm::PMDL,
    length: usize,
) -> (NtStatus, usize) {
    let Some(offset) = offset else {
        return (NtStatus::INVALID_PARAMETER, 0);
    };
    if offset.checked_add(length).is_none_or(|end| end > CAPACITY) {
        return (NtStatus(STATUS_DISK_FULL), 0);
    }
    if length == 0 {
        return (NtStatus::SUCCESS, 0);
    }
    // SAFETY: caller contract: a locked MDL of `length` bytes.
    let source = unsafe { wdm::system_address(mdl) };
    if source.is_null() {
        return (NtStatus::INSUFFICIENT_RESOURCES, 0);
    }
    // SAFETY: the mapping holds `length` bytes; the range fits.
    unsafe { store(pad, offset, source, length) };
    (NtStatus::SUCCESS, length)
}

/// `DUMP` (`METHOD_OUT_DIRECT`): the MDL's buffer (write access) filled from the offset.
///
/// # Safety
/// As [`load`].
unsafe fn dump(
    pad: &Pad,
    offset: Option<usize>,
    mdl: wdm::PMDL,
    length: usize,
) -> (NtStatus, usize) {
    let Some(offset) = offset else {
        return (NtStatus::INVALID_PARAMETER, 0);
    };
    if offset >= CAPACITY {
        return (NtStatus(STATUS_END_OF_FILE), 0);
    }
    if length == 0 {
        return (NtStatus::SUCCESS, 0);
    }
    // SAFETY: caller contract.
    let target = unsafe { wdm::system_address(mdl) };
    if target.is_null() {
        return (NtStatus::INSUFFICIENT_RESOURCES, 0);
    }
    let count = length.min(CAPACITY - offset);
    for (i, byte) in pad.store()[offset..offset + count].iter().enumerate() {
        // SAFETY: the mapping holds `length` >= `count` bytes.
        unsafe { target.add(i).write(byte.load(Ordering::Relaxed)) };
    }
    (NtStatus::SUCCESS, count)
}

/// `CHECKSUM` (`METHOD_NEITHER`): the caller's raw addresses, probed when the caller is user
/// mode (a bad address raises an exception: this driver, like any Rust driver, has no SEH to
/// catch it, so a real kernel would bugcheck too).
///
/// # Safety
/// The request's `Type3InputBuffer` and `UserBuffer` with their lengths, on the caller's
/// thread.
unsafe fn checksum_neither(
    pad: &Pad,
    from_user: bool,
    (input, input_length): (*mut u8, usize),
    (output, output_length): (*mut u8, usize),
) -> (NtStatus, usize) {
    if output.is_null() || output_length < CHECKSUM_SIZE {
        return (NtStatus::BUFFER_TOO_SMALL, 0);
    }
    if from_user {
        // SAFETY: probes only read the addresses.
        unsafe {
            wdm::ProbeForRead(input.cast(), input_length, 1);
            wdm::ProbeForWrite(output.cast(), output_length, 1);
        }
    }
    let (value, length) = if input.is_null() || input_length == 0 {
        (
            checksum(pad.store().iter().map(|b| b.load(Ordering::Relaxed))),
            CAPACITY,
        )
    } else {
        // SAFETY: probed: readable for `input_length` bytes (the caller's buffer).
        let bytes = unsafe { core::slice::from_raw_parts(input, input_length) };
        (checksum(bytes.iter().copied()), input_length)
    };
    let answer = Checksum {
        value,
        version: VERSION,
        length: u32::try_from(length).unwrap_or(u32::MAX),
    };
    // SAFETY: probed: writable for at least CHECKSUM_SIZE bytes.
    unsafe {
        output
            .cast::<[u8; CHECKSUM_SIZE]>()
            .write_unaligned(answer.to_bytes());
    }
    (NtStatus::SUCCESS, CHECKSUM_SIZE)
}

/// `DriverUnload`: deletes the link and the device (its store and work item with it). The
/// kernel calls it once no work item runs; whichever image serves last runs it.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Safety
/// Called by the I/O manager with this driver's object, once, with no request in flight.
pub unsafe extern "system" fn driver_unload(driver: PDRIVER_OBJECT) {
    super::log(c"unloading");
    // SAFETY: our driver object at unload.
    unsafe { pad::remove(driver) };
}

/// The flush work item's routine: the store's checksum, recorded with this image's version.
///
/// IRQL: `PASSIVE_LEVEL` (a system worker thread).
///
/// # Safety
/// Called by the kernel (through the wrapper) with this driver's device.
pub unsafe extern "system" fn flush_routine(device: PDEVICE_OBJECT, _context: PVOID) {
    // SAFETY: our device: the work item was allocated for it.
    let pad = unsafe { Pad::of(device) };
    pad.flush_started();
    let value = checksum(pad.store().iter().map(|b| b.load(Ordering::Relaxed)));
    pad.flushed_checksum.store(value, Ordering::Release);
    pad.last_flush_version.store(VERSION, Ordering::Release);
    pad.flushes.fetch_add(1, Ordering::AcqRel);
}
