//! The I/O manager model: device objects, the object namespace (device names and symbolic
//! links), file objects and IRPs, and the routines an image imports for them
//! (`IoCreateDevice`, `IoDeleteDevice`, `IoCreateSymbolicLink`, `IoDeleteSymbolicLink`,
//! `IofCompleteRequest`), all Microsoft x64. The contracts are in the docs of [`super`].

use std::alloc::Layout;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::ddi::{self, NTSTATUS, PVOID, ULONG, UNICODE_STRING};

use super::memory;
use super::status;
use super::types::{
    DEVICE_OBJECT, DEVOBJ_EXTENSION, DO_DEVICE_HAS_NAME, DO_DEVICE_INITIALIZING, DO_EXCLUSIVE,
    DRIVER_DISPATCH, DRIVER_OBJECT, FILE_OBJECT, IO_STACK_LOCATION, IO_TYPE_DEVICE,
    IO_TYPE_DEVICE_OBJECT_EXTENSION, IO_TYPE_IRP, IRP, IRP_MJ_DEVICE_CONTROL, IRP_MJ_READ,
    IRP_MJ_WRITE, MDL, SL_PENDING_RETURNED,
};
use crate::kernel::{BugCheck, bugcheck, context, faults, lock};

/// The address of a `DRIVER_OBJECT` of this I/O manager: a key of its tables (never
/// dereferenced through this type), distinct from a device's so that one cannot be passed
/// where the other is expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DriverAddress(usize);

impl DriverAddress {
    /// The address of `driver`.
    pub(crate) fn of(driver: *const DRIVER_OBJECT) -> Self {
        Self(driver as usize)
    }

    /// The address, as the model kernel's per-driver accounting knows it.
    pub(crate) fn as_usize(self) -> usize {
        self.0
    }
}

/// The address of a `DEVICE_OBJECT` of this I/O manager (see [`DriverAddress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DeviceAddress(usize);

impl DeviceAddress {
    /// The address of `device`.
    pub(crate) fn of(device: *const DEVICE_OBJECT) -> Self {
        Self(device as usize)
    }

    /// The device object (valid while the I/O manager keeps the device).
    pub(crate) fn as_ptr(self) -> *mut DEVICE_OBJECT {
        self.0 as *mut DEVICE_OBJECT
    }
}

impl core::fmt::LowerHex for DeviceAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, f)
    }
}

/// What a name in the namespace is.
#[derive(Clone, Debug)]
enum Named {
    Device(DeviceAddress),
    Link {
        target: String,
        owner: DriverAddress,
    },
    Driver,
}

#[derive(Debug)]
struct DeviceRecord {
    driver: DriverAddress,
    name: Option<String>,
    layout: Layout,
    open: usize,
    deleted: bool,
}

struct IrpRecord {
    completion: Mutex<Option<(NTSTATUS, usize)>>,
    completed: Condvar,
}

#[derive(Default)]
struct Io {
    /// Driver objects of this I/O manager.
    drivers: HashSet<DriverAddress>,
    /// Their names (for reports).
    driver_names: HashMap<DriverAddress, String>,
    devices: HashMap<DeviceAddress, DeviceRecord>,
    /// Normalised (upper-case, `\??\` for `\DosDevices\` and `\GLOBAL??\`) name → object.
    names: HashMap<String, Named>,
    irps: HashMap<usize, Arc<IrpRecord>>,
}

static IO: LazyLock<Mutex<Io>> = LazyLock::new(Mutex::default);

/// How long the I/O manager waits for a pended IRP to be completed, in milliseconds.
static PENDING_TIMEOUT_MS: AtomicU64 = AtomicU64::new(30_000);

/// Sets how long a request whose dispatch routine returned `STATUS_PENDING` may stay
/// uncompleted before the I/O manager bugchecks (default 30 s). Process-wide.
pub fn set_pending_timeout(timeout: Duration) {
    PENDING_TIMEOUT_MS.store(
        u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        Ordering::SeqCst,
    );
}

/// Normalises an object name: upper case; `\DosDevices\` and `\GLOBAL??\` become `\??\`.
/// `None` for a name that is not absolute or has an empty component.
pub(crate) fn normalize(name: &str) -> Option<String> {
    if !name.starts_with('\\') || name.len() < 2 || name[1..].split('\\').any(str::is_empty) {
        return None;
    }
    let upper = name.to_uppercase();
    for prefix in ["\\DOSDEVICES\\", "\\GLOBAL??\\"] {
        if let Some(rest) = upper.strip_prefix(prefix) {
            return Some(format!("\\??\\{rest}"));
        }
    }
    Some(upper)
}

/// A Win32 path (`\\.\X`, `\\?\X`) as the NT name `\??\X`; an NT name unchanged.
pub(crate) fn nt_path(path: &str) -> String {
    for prefix in ["\\\\.\\", "\\\\?\\"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            return format!("\\??\\{rest}");
        }
    }
    path.to_owned()
}

/// A counted string as Rust text; `None` if null, malformed (odd `Length`, `Length` above
/// `MaximumLength`, null buffer) or not UTF-16.
///
/// # Safety
/// `string` null or a `UNICODE_STRING` whose buffer holds `Length` bytes.
#[must_use]
pub unsafe fn read_unicode(string: *const UNICODE_STRING) -> Option<String> {
    // SAFETY: caller contract.
    let string = unsafe { string.as_ref() }?;
    if string.Buffer.is_null() || string.Length % 2 != 0 || string.Length > string.MaximumLength {
        return None;
    }
    // SAFETY: caller contract: `Length` bytes.
    let units =
        unsafe { std::slice::from_raw_parts(string.Buffer, usize::from(string.Length) / 2) };
    String::from_utf16(units).ok()
}

// ---------------------------------------------------------------------------------------
// Driver objects (used by `super::driver`).

/// Registers a driver object named `\Driver\<name>`.
pub(crate) fn add_driver(driver: DriverAddress, name: &str) -> Result<(), NTSTATUS> {
    let key = normalize(&format!("\\Driver\\{name}")).ok_or(status::OBJECT_NAME_INVALID)?;
    let mut io = lock(&IO);
    if io.names.contains_key(&key) {
        return Err(status::OBJECT_NAME_COLLISION);
    }
    io.names.insert(key, Named::Driver);
    io.drivers.insert(driver);
    io.driver_names.insert(driver, name.to_owned());
    Ok(())
}

/// The name a driver was loaded with (empty for an unknown driver).
pub(crate) fn driver_name(driver: DriverAddress) -> String {
    lock(&IO)
        .driver_names
        .get(&driver)
        .cloned()
        .unwrap_or_default()
}

/// The driver of a live (not deleted) device object of this I/O manager.
pub(crate) fn driver_of(device: DeviceAddress) -> Option<DriverAddress> {
    lock(&IO)
        .devices
        .get(&device)
        .filter(|r| !r.deleted)
        .map(|r| r.driver)
}

/// Takes a reference on a device (a queued work item's), as an open handle does: its memory
/// stays until [`release`]. Nothing for an unknown device.
pub(crate) fn reference(device: DeviceAddress) {
    if let Some(record) = lock(&IO).devices.get_mut(&device) {
        record.open += 1;
    }
}

/// Forgets a driver object and its name.
pub(crate) fn remove_driver(driver: DriverAddress, name: &str) {
    let mut io = lock(&IO);
    io.drivers.remove(&driver);
    io.driver_names.remove(&driver);
    if let Some(key) = normalize(&format!("\\Driver\\{name}")) {
        io.names.remove(&key);
    }
}

/// Clears `DO_DEVICE_INITIALIZING` on every device of `driver` (what the I/O manager does
/// after a legacy driver's `DriverEntry` succeeded).
pub(crate) fn ready_devices(driver: DriverAddress) {
    let io = lock(&IO);
    for (&device, record) in &io.devices {
        if record.driver == driver && !record.deleted {
            // SAFETY: a live device object of this I/O manager; its flags are shared with the
            // driver, which writes them only while no request can reach the device.
            unsafe { (*device.as_ptr()).Flags &= !DO_DEVICE_INITIALIZING };
        }
    }
}

/// What a driver left behind: (device names or addresses not deleted, links it created still
/// present).
pub(crate) fn leftovers(driver: DriverAddress) -> (Vec<String>, Vec<String>) {
    let io = lock(&IO);
    let devices = io
        .devices
        .iter()
        .filter(|(_, r)| r.driver == driver && !r.deleted)
        .map(|(&a, r)| {
            r.name
                .clone()
                .unwrap_or_else(|| format!("(unnamed {a:#x})"))
        })
        .collect();
    let links = io
        .names
        .iter()
        .filter(|(_, n)| matches!(n, Named::Link { owner, .. } if *owner == driver))
        .map(|(k, _)| k.clone())
        .collect();
    (devices, links)
}

// ---------------------------------------------------------------------------------------
// Devices.

/// The size of the `DEVOBJ_EXTENSION` after the device extension.
const DEVOBJ_EXTENSION_SIZE: usize = size_of::<DEVOBJ_EXTENSION>();

/// `IoCreateDevice` (contract in the docs of [`super`]).
///
/// # Safety
/// `DeviceName` null or a valid `UNICODE_STRING`; `DeviceObject` null or writable.
#[allow(clippy::too_many_arguments)]
pub unsafe extern "win64" fn IoCreateDevice(
    DriverObject: *mut DRIVER_OBJECT,
    DeviceExtensionSize: ULONG,
    DeviceName: *mut UNICODE_STRING,
    DeviceType: ULONG,
    DeviceCharacteristics: ULONG,
    Exclusive: ddi::BOOLEAN,
    DeviceObject: *mut *mut DEVICE_OBJECT,
) -> NTSTATUS {
    const NAME: &str = "IoCreateDevice";
    crate::kernel::irql::require(crate::kernel::irql::PASSIVE, "IoCreateDevice");
    if DeviceObject.is_null() {
        bugcheck(
            BugCheck::IoManagerViolation,
            NAME,
            format_args!("DeviceObject (the out-pointer) is null"),
        );
    }
    if !lock(&IO).drivers.contains(&DriverAddress::of(DriverObject)) {
        bugcheck(
            BugCheck::IoManagerViolation,
            NAME,
            format_args!("{DriverObject:p} is not a driver object of the I/O manager"),
        );
    }
    let key = if DeviceName.is_null() {
        None
    } else {
        // SAFETY: caller contract.
        match unsafe { read_unicode(DeviceName) }.and_then(|n| normalize(&n).map(|k| (n, k))) {
            Some(pair) => Some(pair),
            None => return status::OBJECT_NAME_INVALID,
        }
    };
    let extension_size = DeviceExtensionSize as usize;
    if extension_size > usize::from(u16::MAX) - size_of::<DEVICE_OBJECT>() {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    if faults::take(&faults::POOL) {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    let extension_space = extension_size.next_multiple_of(16);
    let Ok(layout) = Layout::from_size_align(
        size_of::<DEVICE_OBJECT>() + extension_space + DEVOBJ_EXTENSION_SIZE,
        16,
    ) else {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    };
    let mut io = lock(&IO);
    if let Some((_, key)) = &key
        && io.names.contains_key(key)
    {
        return status::OBJECT_NAME_COLLISION;
    }
    // SAFETY: the layout has a nonzero size.
    let block = unsafe { std::alloc::alloc_zeroed(layout) };
    if block.is_null() {
        return ddi::STATUS_INSUFFICIENT_RESOURCES;
    }
    #[allow(clippy::cast_ptr_alignment)] // the layout is 16-byte aligned
    let device = block.cast::<DEVICE_OBJECT>();
    // SAFETY: `block` is a fresh zeroed allocation holding the device object, the extension
    // and the DEVOBJ_EXTENSION; the driver object is live (checked above) and its device list
    // is changed under the I/O lock.
    unsafe {
        // 16-byte aligned: 0x150 + a multiple of 16 from a 16-byte aligned block.
        #[allow(clippy::cast_ptr_alignment)]
        let devobj_extension = block
            .add(size_of::<DEVICE_OBJECT>() + extension_space)
            .cast::<DEVOBJ_EXTENSION>();
        (*devobj_extension).Type = IO_TYPE_DEVICE_OBJECT_EXTENSION;
        #[allow(clippy::cast_possible_truncation)] // 0x70
        let devobj_size = DEVOBJ_EXTENSION_SIZE as u16;
        (*devobj_extension).Size = devobj_size;
        (*devobj_extension).DeviceObject = device;
        let d = &mut *device;
        d.Type = IO_TYPE_DEVICE;
        #[allow(clippy::cast_possible_truncation)] // checked above to fit
        let size = (size_of::<DEVICE_OBJECT>() + extension_size) as u16;
        d.Size = size;
        d.ReferenceCount = 0;
        d.DriverObject = DriverObject;
        d.Flags = DO_DEVICE_INITIALIZING
            | if Exclusive != 0 { DO_EXCLUSIVE } else { 0 }
            | if key.is_some() { DO_DEVICE_HAS_NAME } else { 0 };
        d.Characteristics = DeviceCharacteristics;
        d.DeviceExtension = if extension_size == 0 {
            std::ptr::null_mut()
        } else {
            block.add(size_of::<DEVICE_OBJECT>()).cast()
        };
        d.DeviceType = DeviceType;
        d.StackSize = 1;
        d.DeviceObjectExtension = devobj_extension;
        d.NextDevice = (*DriverObject).DeviceObject;
        (*DriverObject).DeviceObject = device;
    }
    if let Some((_, key)) = &key {
        io.names
            .insert(key.clone(), Named::Device(DeviceAddress::of(device)));
    }
    io.devices.insert(
        DeviceAddress::of(device),
        DeviceRecord {
            driver: DriverAddress::of(DriverObject),
            name: key.map(|(name, _)| name),
            layout,
            open: 0,
            deleted: false,
        },
    );
    drop(io);
    // SAFETY: caller contract: writable (checked non-null).
    unsafe { DeviceObject.write(device) };
    ddi::STATUS_SUCCESS
}

/// Frees a device's memory.
///
/// # Safety
/// `device` is a device allocated by `IoCreateDevice` with `layout`, deleted, with no open
/// handle, and never used again.
unsafe fn free_device(device: DeviceAddress, layout: Layout) {
    // SAFETY: caller contract.
    unsafe { std::alloc::dealloc(device.as_ptr().cast(), layout) };
}

/// `IoDeleteDevice` (contract in the docs of [`super`]).
///
/// # Safety
/// `DeviceObject` is not used by the caller afterwards.
pub unsafe extern "win64" fn IoDeleteDevice(DeviceObject: *mut DEVICE_OBJECT) {
    crate::kernel::irql::require(crate::kernel::irql::PASSIVE, "IoDeleteDevice");
    let mut io = lock(&IO);
    let device = DeviceAddress::of(DeviceObject);
    let Some(record) = io.devices.get_mut(&device).filter(|r| !r.deleted) else {
        drop(io);
        bugcheck(
            BugCheck::IoManagerViolation,
            "IoDeleteDevice",
            format_args!(
                "{DeviceObject:p} is not a live device object (deleted twice, or never created)"
            ),
        );
    };
    record.deleted = true;
    let driver = record.driver.0 as *mut DRIVER_OBJECT;
    let name = record.name.clone();
    let free = (record.open == 0).then_some(record.layout);
    // SAFETY: the driver object of a live device is live; its device list is changed under
    // the I/O lock; every element is a live device object of that driver.
    unsafe {
        let mut link = &raw mut (*driver).DeviceObject;
        while !(*link).is_null() {
            if *link == DeviceObject {
                *link = (*DeviceObject).NextDevice;
                break;
            }
            link = &raw mut (**link).NextDevice;
        }
    }
    if let Some(key) = name.as_deref().and_then(normalize) {
        io.names.remove(&key);
    }
    if let Some(layout) = free {
        io.devices.remove(&device);
        // SAFETY: deleted, no open handle; the caller does not use it afterwards.
        unsafe { free_device(device, layout) };
    }
}

// ---------------------------------------------------------------------------------------
// Symbolic links.

/// `IoCreateSymbolicLink` (contract in the docs of [`super`]).
///
/// # Safety
/// Both arguments null or valid `UNICODE_STRING`s.
pub unsafe extern "win64" fn IoCreateSymbolicLink(
    SymbolicLinkName: *mut UNICODE_STRING,
    DeviceName: *mut UNICODE_STRING,
) -> NTSTATUS {
    crate::kernel::irql::require(crate::kernel::irql::PASSIVE, "IoCreateSymbolicLink");
    // SAFETY: caller contract.
    let link = unsafe { read_unicode(SymbolicLinkName) }.and_then(|n| normalize(&n));
    // SAFETY: caller contract.
    let target = unsafe { read_unicode(DeviceName) }.filter(|n| normalize(n).is_some());
    let (Some(link), Some(target)) = (link, target) else {
        return status::OBJECT_NAME_INVALID;
    };
    let mut io = lock(&IO);
    if io.names.contains_key(&link) {
        return status::OBJECT_NAME_COLLISION;
    }
    io.names.insert(
        link,
        Named::Link {
            target,
            owner: DriverAddress(context::current()),
        },
    );
    ddi::STATUS_SUCCESS
}

/// `IoDeleteSymbolicLink` (contract in the docs of [`super`]).
///
/// # Safety
/// `SymbolicLinkName` null or a valid `UNICODE_STRING`.
pub unsafe extern "win64" fn IoDeleteSymbolicLink(
    SymbolicLinkName: *mut UNICODE_STRING,
) -> NTSTATUS {
    crate::kernel::irql::require(crate::kernel::irql::PASSIVE, "IoDeleteSymbolicLink");
    // SAFETY: caller contract.
    let Some(link) = (unsafe { read_unicode(SymbolicLinkName) }).and_then(|n| normalize(&n)) else {
        return status::OBJECT_NAME_INVALID;
    };
    let mut io = lock(&IO);
    match io.names.get(&link) {
        None => status::OBJECT_NAME_NOT_FOUND,
        Some(Named::Link { .. }) => {
            io.names.remove(&link);
            ddi::STATUS_SUCCESS
        }
        Some(_) => status::OBJECT_TYPE_MISMATCH,
    }
}

// ---------------------------------------------------------------------------------------
// IRPs.

/// `IofCompleteRequest` (contract in the docs of [`super`]).
///
/// # Safety
/// None beyond the C contract: `Irp` is an IRP the caller owns.
pub unsafe extern "win64" fn IofCompleteRequest(Irp: *mut IRP, PriorityBoost: ddi::CCHAR) {
    const NAME: &str = "IofCompleteRequest";
    crate::kernel::irql::require(crate::kernel::irql::DISPATCH, "IofCompleteRequest");
    let _ = PriorityBoost;
    hold::pass();
    let Some(record) = lock(&IO).irps.get(&(Irp as usize)).cloned() else {
        bugcheck(
            BugCheck::MultipleIrpCompleteRequests,
            NAME,
            format_args!(
                "{Irp:p} is not a live IRP (completed after the I/O manager finished it, or never sent)"
            ),
        );
    };
    // SAFETY: a live IRP of the I/O manager (in the table): its memory is valid until the I/O
    // manager removes it, which it does only after completion.
    let io_status = unsafe { (*Irp).IoStatus };
    if io_status.Status == ddi::STATUS_PENDING {
        bugcheck(
            BugCheck::IoManagerViolation,
            NAME,
            format_args!("{Irp:p} completed with STATUS_PENDING"),
        );
    }
    let mut completion = lock(&record.completion);
    if let Some((status, _)) = *completion {
        drop(completion);
        bugcheck(
            BugCheck::MultipleIrpCompleteRequests,
            NAME,
            format_args!(
                "{Irp:p} completed twice (first with {status:#010X}, again with {:#010X})",
                io_status.Status
            ),
        );
    }
    *completion = Some((io_status.Status, io_status.Information));
    record.completed.notify_all();
}

/// A fault for tests: [`hold::hold_next_completion`] makes the next `IofCompleteRequest` (of any
/// driver, on any thread) wait until released, so that the dispatch routine that called it,
/// and the DriverProxy call it runs in, stay in flight for as long as a test needs.
///
/// The gate is process-wide: it stops whichever completion comes first after it is armed. A
/// test that uses it must keep every other request of the process away meanwhile (run alone,
/// or serialised with the tests that send requests), or it may hold someone else's.
///
/// Races: the gate is armed while it is in the process-wide slot. A completion takes it out
/// of the slot under the slot's lock, so exactly one completion is held; releasing (or
/// dropping the [`Held`](hold::Held)) removes it from the slot first, so a later completion
/// passes, and then sets `released`, which a completion that already took the gate sees
/// whether it checks before or after.
pub mod hold {
    use std::sync::{Arc, Condvar, Mutex, PoisonError};
    use std::time::Duration;

    #[derive(Default)]
    struct Gate {
        /// A completion is waiting at the gate.
        waiting: bool,
        /// The waiting completion may go on.
        released: bool,
    }

    /// The gate's state and the condition variable its changes are signalled on.
    type Shared = Arc<(Mutex<Gate>, Condvar)>;

    /// The armed gate, if any: the next completion takes it out and waits at it.
    static GATE: Mutex<Option<Shared>> = Mutex::new(None);

    /// The next `IofCompleteRequest` waits until [`Held::release`] (or the `Held` is dropped).
    /// Arming a new gate disarms one not yet taken.
    #[must_use = "dropping the Held releases the completion"]
    pub fn hold_next_completion() -> Held {
        let gate: Shared = Arc::default();
        *GATE.lock().unwrap_or_else(PoisonError::into_inner) = Some(gate.clone());
        Held { gate }
    }

    /// Called by `IofCompleteRequest`: waits at the gate if one is armed.
    pub(super) fn pass() {
        let gate = GATE.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(gate) = gate else { return };
        let (state, changed) = &*gate;
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.waiting = true;
        changed.notify_all();
        while !state.released {
            state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A completion held (or about to be) at the gate.
    pub struct Held {
        gate: Shared,
    }

    impl Held {
        /// Waits at most `timeout` until a completion is waiting at the gate; whether one is.
        #[must_use]
        pub fn wait_until_held(&self, timeout: Duration) -> bool {
            let (state, changed) = &*self.gate;
            let state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let (state, _) = changed
                .wait_timeout_while(state, timeout, |s| !s.waiting)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting
        }

        /// Lets the held completion go on.
        pub fn release(self) {
            drop(self);
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            // Disarm first (if no completion took the gate yet), then release.
            let mut slot = GATE.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.as_ref().is_some_and(|g| Arc::ptr_eq(g, &self.gate)) {
                *slot = None;
            }
            drop(slot);
            let (state, changed) = &*self.gate;
            state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .released = true;
            changed.notify_all();
        }
    }
}

/// The dispatch routine of every `MajorFunction` slot the driver does not set: completes the
/// IRP with `STATUS_INVALID_DEVICE_REQUEST` (as the I/O manager's own default does).
///
/// # Safety
/// `Irp` is a live IRP.
pub unsafe extern "win64" fn invalid_device_request(
    DeviceObject: *mut DEVICE_OBJECT,
    Irp: *mut IRP,
) -> NTSTATUS {
    let _ = DeviceObject;
    // SAFETY: caller contract.
    unsafe {
        (*Irp).IoStatus.Status = ddi::STATUS_INVALID_DEVICE_REQUEST;
        (*Irp).IoStatus.Information = 0;
        IofCompleteRequest(Irp, 0);
    }
    ddi::STATUS_INVALID_DEVICE_REQUEST
}

/// The parameters of one request.
pub(crate) struct Request {
    pub(crate) major: usize,
    pub(crate) file: *mut FILE_OBJECT,
    pub(crate) system_buffer: PVOID,
    /// `Irp->MdlAddress`: an MDL of [`memory::for_request`] (freed with the request), or
    /// null.
    pub(crate) mdl: *mut MDL,
    /// `Irp->UserBuffer`.
    pub(crate) user_buffer: PVOID,
    pub(crate) flags: ULONG,
    pub(crate) parameters: [usize; 4],
}

impl Request {
    /// A request without buffers.
    pub(crate) fn plain(major: usize, file: *mut FILE_OBJECT, parameters: [usize; 4]) -> Self {
        Self {
            major,
            file,
            system_buffer: core::ptr::null_mut(),
            mdl: core::ptr::null_mut(),
            user_buffer: core::ptr::null_mut(),
            flags: 0,
            parameters,
        }
    }
}

/// An IRP and its stack location, allocated together.
#[repr(C)]
struct IrpBlock {
    irp: IRP,
    stack: IO_STACK_LOCATION,
}

static IRPS_SENT: AtomicUsize = AtomicUsize::new(0);

/// IRPs sent so far in this process.
#[must_use]
pub fn irps_sent() -> usize {
    IRPS_SENT.load(Ordering::Relaxed)
}

/// The name of major function `major`, for reports.
pub(crate) fn major_name(major: usize) -> &'static str {
    const NAMES: [&str; 0x1C] = [
        "IRP_MJ_CREATE",
        "IRP_MJ_CREATE_NAMED_PIPE",
        "IRP_MJ_CLOSE",
        "IRP_MJ_READ",
        "IRP_MJ_WRITE",
        "IRP_MJ_QUERY_INFORMATION",
        "IRP_MJ_SET_INFORMATION",
        "IRP_MJ_QUERY_EA",
        "IRP_MJ_SET_EA",
        "IRP_MJ_FLUSH_BUFFERS",
        "IRP_MJ_QUERY_VOLUME_INFORMATION",
        "IRP_MJ_SET_VOLUME_INFORMATION",
        "IRP_MJ_DIRECTORY_CONTROL",
        "IRP_MJ_FILE_SYSTEM_CONTROL",
        "IRP_MJ_DEVICE_CONTROL",
        "IRP_MJ_INTERNAL_DEVICE_CONTROL",
        "IRP_MJ_SHUTDOWN",
        "IRP_MJ_LOCK_CONTROL",
        "IRP_MJ_CLEANUP",
        "IRP_MJ_CREATE_MAILSLOT",
        "IRP_MJ_QUERY_SECURITY",
        "IRP_MJ_SET_SECURITY",
        "IRP_MJ_POWER",
        "IRP_MJ_SYSTEM_CONTROL",
        "IRP_MJ_DEVICE_CHANGE",
        "IRP_MJ_QUERY_QUOTA",
        "IRP_MJ_SET_QUOTA",
        "IRP_MJ_PNP",
    ];
    NAMES.get(major).copied().unwrap_or("an IRP")
}

/// Sends a request to `device` of `driver`: builds the IRP, calls
/// `DriverObject->MajorFunction[major]` (Microsoft x64) while running for the driver, and
/// enforces the completion rules. Returns the completion status and information.
///
/// # Safety
/// `device` is a live device object of `driver` that stays allocated during the call
/// (an open handle to it); `request.system_buffer` null or valid as the request says.
#[allow(clippy::too_many_lines)] // one sequence of checks, read top to bottom
pub(crate) unsafe fn send(
    driver: DriverAddress,
    device: DeviceAddress,
    request: &Request,
) -> (NTSTATUS, usize) {
    const NAME: &str = "I/O manager";
    let (driver, device) = (driver.0, device.0);
    let record = Arc::new(IrpRecord {
        completion: Mutex::new(None),
        completed: Condvar::new(),
    });
    // SAFETY: an all-zero IrpBlock is valid (integers and raw pointers).
    let mut block: Box<IrpBlock> = Box::new(unsafe { core::mem::zeroed() });
    let irp = &raw mut block.irp;
    let stack = &raw mut block.stack;
    // SAFETY: `block` is ours until the request is over; the fields are plain data.
    unsafe {
        let i = &mut *irp;
        i.Type = IO_TYPE_IRP;
        #[allow(clippy::cast_possible_truncation)] // 0x118
        let size = size_of::<IrpBlock>() as u16;
        i.Size = size;
        i.Flags = request.flags;
        i.SystemBuffer = request.system_buffer;
        i.MdlAddress = request.mdl;
        i.UserBuffer = request.user_buffer;
        i.RequestorMode = 1;
        i.StackCount = 1;
        i.CurrentLocation = 1;
        i.CurrentStackLocation = stack;
        i.OriginalFileObject = request.file;
        let s = &mut *stack;
        #[allow(clippy::cast_possible_truncation)] // a major function number
        let major = request.major as u8;
        s.MajorFunction = major;
        s.Parameters = request.parameters;
        s.DeviceObject = device as *mut DEVICE_OBJECT;
        s.FileObject = request.file;
    }
    if !request.mdl.is_null() {
        memory::attach(request.mdl, irp);
    }
    lock(&IO).irps.insert(irp as usize, record.clone());
    IRPS_SENT.fetch_add(1, Ordering::Relaxed);
    // SAFETY: a live driver object (the caller's device belongs to it); the slot is read
    // atomically because a swap-mode entry may rewrite it on another thread.
    let routine = unsafe {
        (*(&raw const (*(driver as *const DRIVER_OBJECT)).MajorFunction[request.major])
            .cast::<AtomicUsize>())
        .load(Ordering::Acquire)
    };
    if routine == 0 {
        bugcheck(
            BugCheck::IoManagerViolation,
            NAME,
            format_args!("MajorFunction[{:#x}] of {driver:#x} is null", request.major),
        );
    }
    // SAFETY: a dispatch routine the driver stored (win64 code, or the default).
    let dispatch = unsafe { core::mem::transmute::<usize, DRIVER_DISPATCH>(routine) };
    let returned = {
        let _running = context::enter(driver);
        let what = major_name(request.major);
        // Shown in reports: the control code, or the length of a read or write.
        let value = match request.major {
            IRP_MJ_DEVICE_CONTROL => request.parameters[2] as u64,
            IRP_MJ_READ | IRP_MJ_WRITE => request.parameters[0] as u64,
            _ => 0,
        };
        let driver_name = driver_name(DriverAddress(driver));
        let _doing = crate::image::activity::enter(what, value);
        let _watch = super::watchdog::watch(what, value, &driver_name);
        let level = crate::kernel::irql::current();
        // SAFETY: the driver's dispatch routine with its device and a fresh IRP.
        let returned = unsafe { dispatch(device as *mut DEVICE_OBJECT, irp) };
        crate::kernel::irql::check_returned(level, what, &driver_name);
        returned
    };
    let completion = if returned == ddi::STATUS_PENDING {
        // SAFETY: the IRP's memory is ours until removed below.
        let marked = unsafe { (*stack).Control } & SL_PENDING_RETURNED != 0;
        if !marked {
            bugcheck(
                BugCheck::IoManagerViolation,
                NAME,
                format_args!(
                    "MajorFunction[{:#x}] returned STATUS_PENDING without IoMarkIrpPending",
                    request.major
                ),
            );
        }
        let timeout = Duration::from_millis(PENDING_TIMEOUT_MS.load(Ordering::SeqCst));
        let deadline = Instant::now() + timeout;
        let mut completion = lock(&record.completion);
        while completion.is_none() {
            let now = Instant::now();
            if now >= deadline {
                drop(completion);
                bugcheck(
                    BugCheck::IoManagerViolation,
                    NAME,
                    format_args!(
                        "IRP {irp:p} (MajorFunction[{:#x}]) pended and not completed within {timeout:?}",
                        request.major
                    ),
                );
            }
            completion = record
                .completed
                .wait_timeout(completion, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        completion.unwrap_or_else(|| unreachable!("the loop waits for it"))
    } else {
        let Some((status, information)) = *lock(&record.completion) else {
            bugcheck(
                BugCheck::IoManagerViolation,
                NAME,
                format_args!(
                    "MajorFunction[{:#x}] returned {returned:#010X} without completing IRP {irp:p} (and not STATUS_PENDING)",
                    request.major
                ),
            );
        };
        if status != returned {
            bugcheck(
                BugCheck::IoManagerViolation,
                NAME,
                format_args!(
                    "MajorFunction[{:#x}] completed IRP {irp:p} with {status:#010X} but returned {returned:#010X}",
                    request.major
                ),
            );
        }
        (status, information)
    };
    lock(&IO).irps.remove(&(irp as usize));
    // SAFETY: the request is over: its IRP and the MDLs of its chain are ours again.
    unsafe { memory::release_request(irp, request.mdl) };
    drop(block);
    completion
}

// ---------------------------------------------------------------------------------------
// Opening and closing (used by `super::driver`).

/// Resolves `path` (Win32 `\\.\X` or NT) to a device, following symbolic links.
fn resolve(io: &Io, path: &str) -> Result<DeviceAddress, NTSTATUS> {
    let mut key = normalize(&nt_path(path)).ok_or(status::OBJECT_NAME_INVALID)?;
    for _ in 0..32 {
        match io.names.get(&key) {
            None => return Err(status::OBJECT_NAME_NOT_FOUND),
            Some(Named::Device(device)) => return Ok(*device),
            Some(Named::Driver) => return Err(status::OBJECT_TYPE_MISMATCH),
            Some(Named::Link { target, .. }) => {
                key = normalize(target).ok_or(status::OBJECT_NAME_INVALID)?;
            }
        }
    }
    Err(status::OBJECT_NAME_NOT_FOUND)
}

/// Reserves an open of the device `path` names, which must belong to `driver`: checks it
/// can be opened and counts the handle. Undo with [`release`].
pub(crate) fn reserve_open(driver: DriverAddress, path: &str) -> Result<DeviceAddress, NTSTATUS> {
    let mut io = lock(&IO);
    let device = resolve(&io, path)?;
    let record = io
        .devices
        .get_mut(&device)
        .ok_or(status::OBJECT_NAME_NOT_FOUND)?;
    if record.driver != driver {
        return Err(status::OBJECT_NAME_NOT_FOUND);
    }
    // SAFETY: a live device object (in the table, not deleted: it has a name).
    let flags = unsafe { (*device.as_ptr()).Flags };
    if flags & DO_DEVICE_INITIALIZING != 0 {
        return Err(status::NO_SUCH_DEVICE);
    }
    if flags & DO_EXCLUSIVE != 0 && record.open > 0 {
        return Err(status::ACCESS_DENIED);
    }
    record.open += 1;
    Ok(device)
}

/// Whether the device behind an open handle was deleted.
pub(crate) fn is_deleted(device: DeviceAddress) -> bool {
    lock(&IO).devices.get(&device).is_none_or(|r| r.deleted)
}

/// Releases one open handle of `device`; frees the device if it was deleted and this was
/// its last handle.
pub(crate) fn release(device: DeviceAddress) {
    let mut io = lock(&IO);
    let Some(record) = io.devices.get_mut(&device) else {
        return;
    };
    record.open -= 1;
    if record.deleted && record.open == 0 {
        let layout = record.layout;
        io.devices.remove(&device);
        // SAFETY: deleted, its last handle gone; nothing refers to it any more.
        unsafe { free_device(device, layout) };
    }
}
