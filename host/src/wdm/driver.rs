//! The driver API a loader glues to: [`Driver`] (load = `DriverEntry`, requests, swap-mode
//! entry, unload) and [`FileHandle`]. Contracts in the docs of [`super`].

use std::fmt;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::ddi::{self, UNICODE_STRING};
use driver_proxy::NtStatus;

use super::io::{self, Request};
use super::types::{
    DO_BUFFERED_IO, DO_DIRECT_IO, DRIVER_EXTENSION, DRIVER_INITIALIZE, DRIVER_OBJECT,
    DRIVER_UNLOAD, FILE_OBJECT, FILE_OPEN_OPTIONS, GENERIC_READ_WRITE, IO_SECURITY_CONTEXT,
    IO_TYPE_DRIVER, IO_TYPE_FILE, IRP_BUFFERED_IO, IRP_DEALLOCATE_BUFFER, IRP_INPUT_OPERATION,
    IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, IRP_MJ_MAXIMUM_FUNCTION,
    IRP_MJ_READ, IRP_MJ_WRITE, IRP_READ_OPERATION, IRP_WRITE_OPERATION, MDL, METHOD_BUFFERED,
    METHOD_IN_DIRECT, METHOD_NEITHER, METHOD_OUT_DIRECT, SHARE_READ_WRITE,
};
use super::{memory, status, workitem};
use crate::kernel::context;
use crate::kernel::control::{DriverControl, PoolLeak, pool_outstanding_for_driver};

/// A counted UTF-16 string with its own buffer, at a stable address.
struct OwnedUnicode {
    string: Box<UNICODE_STRING>,
    _buffer: Box<[u16]>,
}

impl OwnedUnicode {
    fn new(text: &str) -> Result<Self, NtStatus> {
        let mut buffer: Box<[u16]> = text.encode_utf16().collect();
        let length =
            u16::try_from(buffer.len() * 2).map_err(|_| NtStatus(status::OBJECT_NAME_INVALID))?;
        let string = Box::new(UNICODE_STRING {
            Length: length,
            MaximumLength: length,
            Buffer: buffer.as_mut_ptr(),
        });
        Ok(Self {
            string,
            _buffer: buffer,
        })
    }

    fn as_ptr(&self) -> *mut UNICODE_STRING {
        core::ptr::from_ref(&*self.string).cast_mut()
    }
}

/// The memory of a driver object, freed only when the driver was unloaded cleanly.
struct Storage {
    _object: Box<DRIVER_OBJECT>,
    _extension: Box<DRIVER_EXTENSION>,
    _name: OwnedUnicode,
    _service: OwnedUnicode,
    _hardware: OwnedUnicode,
    registry_path: OwnedUnicode,
}

/// A loaded driver: its `DRIVER_OBJECT` (the real x64 layout), its registry path, and the
/// I/O manager's view of it.
///
/// `Driver` is `Send + Sync`: requests may be sent from several threads at once, and a
/// swap-mode entry ([`Driver::call_entry_again`]) may run meanwhile.
///
/// Dropping a `Driver` that was not unloaded leaves it loaded for the rest of the process:
/// its driver object, devices and threads stay (like a driver that is never stopped); use
/// [`Driver::unload`] to end it.
pub struct Driver {
    storage: ManuallyDrop<Storage>,
    object: NonNull<DRIVER_OBJECT>,
    name: String,
    /// The `DbgPrint` sequence number when the driver was created: its messages come after.
    log_from: u64,
    /// What its (first) `DriverEntry` returned.
    entry_status: NtStatus,
}

// SAFETY: the driver object is shared with driver code on any thread by design (the kernel's
// contract with the driver); the Rust side only reads it through raw pointers and atomics.
unsafe impl Send for Driver {}
// SAFETY: as above; every mutable state of the model is behind its locks.
unsafe impl Sync for Driver {}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("name", &self.name)
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

/// What an unload left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leaks {
    /// Devices not deleted (their names, or `(unnamed …)`).
    pub devices: Vec<String>,
    /// Symbolic links the driver created and did not delete (normalised names).
    pub links: Vec<String>,
    /// Pool blocks allocated for the driver and not freed, per tag.
    pub pool: Vec<PoolLeak>,
    /// System threads started for the driver still running.
    pub threads: usize,
    /// Kernel handles opened for the driver (thread handles of `PsCreateSystemThread` and of
    /// hot-swappable worker threads) and not closed with `ZwClose`.
    pub handles: usize,
    /// MDLs allocated with `IoAllocateMdl` for the driver and not freed (MDLs attached to an
    /// IRP are freed with it and never counted).
    pub mdls: usize,
    /// Work items allocated with `IoAllocateWorkItem` for the driver's devices and not freed
    /// with `IoFreeWorkItem`.
    pub work_items: usize,
}

impl Leaks {
    /// Whether nothing was left behind.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.links.is_empty()
            && self.pool.is_empty()
            && self.threads == 0
            && self.handles == 0
            && self.mdls == 0
            && self.work_items == 0
    }
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "driver left behind:")?;
        for device in &self.devices {
            write!(f, " device {device};")?;
        }
        for link in &self.links {
            write!(f, " symbolic link {link};")?;
        }
        for leak in &self.pool {
            write!(f, " pool {leak};")?;
        }
        if self.threads > 0 {
            write!(f, " {} system thread(s) still running;", self.threads)?;
        }
        if self.handles > 0 {
            write!(f, " {} kernel handle(s) not closed;", self.handles)?;
        }
        if self.mdls > 0 {
            write!(f, " {} MDL(s) not freed;", self.mdls)?;
        }
        if self.work_items > 0 {
            write!(f, " {} work item(s) not freed;", self.work_items)?;
        }
        Ok(())
    }
}

/// Why [`Driver::unload`] failed.
pub enum UnloadError {
    /// The driver set no `DriverUnload`: a legacy driver without one cannot be unloaded. It
    /// stays loaded; here it is.
    NoUnloadRoutine(Box<Driver>),
    /// `DriverUnload` ran but left things behind. The driver object's memory is freed only
    /// when no device and no thread was left (else it stays, leaked, so that what is left can
    /// keep using it).
    Leaked(Leaks),
}

impl fmt::Debug for UnloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoUnloadRoutine(driver) => {
                write!(f, "{} has no DriverUnload routine", driver.name)
            }
            Self::Leaked(leaks) => write!(f, "{leaks}"),
        }
    }
}

impl fmt::Display for UnloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for UnloadError {}

impl Driver {
    /// Loads a driver: creates its driver object `\Driver\<name>` and the registry path
    /// `registry_path` (e.g. `\REGISTRY\MACHINE\SYSTEM\CurrentControlSet\Services\<name>`),
    /// fills every `MajorFunction` slot with the I/O manager's default (completes with
    /// `STATUS_INVALID_DEVICE_REQUEST`), and calls `DriverEntry(DriverObject, RegistryPath)`
    /// at `entry` with the Microsoft x64 convention, on this thread. On success, clears
    /// `DO_DEVICE_INITIALIZING` on the devices the entry created (as the I/O manager does for
    /// a legacy driver).
    ///
    /// # Errors
    /// `STATUS_OBJECT_NAME_INVALID` for an empty name or one with a backslash;
    /// `STATUS_OBJECT_NAME_COLLISION` when a driver of that name is loaded; otherwise the
    /// status `DriverEntry` returned if it is not a success code (no `DriverUnload` is
    /// called, as on Windows; the driver object's memory is kept if the entry left a device
    /// or a thread behind).
    ///
    /// # Safety
    /// `entry` must be the address of code with the `DRIVER_INITIALIZE` signature and the
    /// Microsoft x64 convention, which with everything it calls behaves as a driver.
    pub unsafe fn start(name: &str, registry_path: &str, entry: usize) -> Result<Self, NtStatus> {
        // SAFETY: forwarded.
        unsafe { Self::start_image(name, registry_path, entry, 0, 0) }
    }

    /// [`Driver::start`] for a mapped image: `DriverStart` and `DriverSize` of the driver
    /// object are `image_base` and `image_size`.
    ///
    /// # Errors
    /// As [`Driver::start`].
    ///
    /// # Safety
    /// As [`Driver::start`].
    pub unsafe fn start_image(
        name: &str,
        registry_path: &str,
        entry: usize,
        image_base: usize,
        image_size: u32,
    ) -> Result<Self, NtStatus> {
        // SAFETY: forwarded.
        unsafe {
            Self::start_image_with(
                name,
                registry_path,
                entry,
                image_base,
                image_size,
                &mut |_| {},
            )
        }
    }

    /// [`Driver::start_image`], calling `before_entry` with the new driver (its driver object
    /// exists, `DriverEntry` has not run) first: to configure the DriverProxy model for it
    /// ([`Driver::control`]: features, faults) before the driver sees the kernel.
    ///
    /// # Errors
    /// As [`Driver::start`].
    ///
    /// # Safety
    /// As [`Driver::start`].
    pub unsafe fn start_image_with(
        name: &str,
        registry_path: &str,
        entry: usize,
        image_base: usize,
        image_size: u32,
        before_entry: &mut dyn FnMut(&Self),
    ) -> Result<Self, NtStatus> {
        if name.is_empty() || name.contains('\\') {
            return Err(NtStatus(status::OBJECT_NAME_INVALID));
        }
        let driver_name = OwnedUnicode::new(&format!("\\Driver\\{name}"))?;
        let service = OwnedUnicode::new(name)?;
        let hardware = OwnedUnicode::new("\\REGISTRY\\MACHINE\\HARDWARE\\DESCRIPTION\\SYSTEM")?;
        let registry_path = OwnedUnicode::new(registry_path)?;
        // SAFETY: all-zero is valid for these plain-data structures.
        let mut object: Box<DRIVER_OBJECT> = Box::new(unsafe { core::mem::zeroed() });
        // SAFETY: as above.
        let mut extension: Box<DRIVER_EXTENSION> = Box::new(unsafe { core::mem::zeroed() });
        let raw: *mut DRIVER_OBJECT = &raw mut *object;
        extension.DriverObject = raw;
        // SAFETY: `service` outlives the extension (both in `Storage`).
        extension.ServiceKeyName = unsafe { service.as_ptr().read() };
        object.Type = IO_TYPE_DRIVER;
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // 0x150
        let size = size_of::<DRIVER_OBJECT>() as i16;
        object.Size = size;
        object.DriverStart = image_base as ddi::PVOID;
        object.DriverSize = image_size;
        object.DriverExtension = &raw mut *extension;
        // SAFETY: `driver_name` outlives the object (both in `Storage`).
        object.DriverName = unsafe { driver_name.as_ptr().read() };
        object.HardwareDatabase = hardware.as_ptr();
        object.DriverInit = entry as ddi::PVOID;
        object.MajorFunction =
            [io::invalid_device_request as *const () as usize; IRP_MJ_MAXIMUM_FUNCTION + 1];
        io::add_driver(io::DriverAddress::of(raw), name).map_err(NtStatus)?;
        let log_from = super::dbgprint::next_sequence();
        let driver = Self {
            storage: ManuallyDrop::new(Storage {
                _object: object,
                _extension: extension,
                _name: driver_name,
                _service: service,
                _hardware: hardware,
                registry_path,
            }),
            object: NonNull::new(raw).unwrap_or_else(|| unreachable!("a Box")),
            name: name.to_owned(),
            log_from,
            entry_status: NtStatus::SUCCESS,
        };
        before_entry(&driver);
        let mut driver = driver;
        // SAFETY: caller contract.
        let status = unsafe { driver.call_entry(entry) };
        driver.entry_status = status;
        if status.is_success() {
            return Ok(driver);
        }
        let leaks = driver.leaks();
        io::remove_driver(driver.address(), &driver.name);
        if leaks.devices.is_empty() && leaks.threads == 0 {
            driver.release_storage();
        }
        Err(status)
    }

    fn raw_usize(&self) -> usize {
        self.object.as_ptr() as usize
    }

    /// The driver object's address, as the I/O manager's tables know it.
    fn address(&self) -> io::DriverAddress {
        io::DriverAddress::of(self.object.as_ptr())
    }

    /// Calls `entry` as `DriverEntry` on this driver object, running for the driver.
    ///
    /// # Safety
    /// As [`Driver::start`].
    unsafe fn call_entry(&self, entry: usize) -> NtStatus {
        if entry == 0 {
            return NtStatus(ddi::STATUS_INVALID_PARAMETER);
        }
        // SAFETY: caller contract: DRIVER_INITIALIZE code, Microsoft x64.
        let entry = unsafe { core::mem::transmute::<usize, DRIVER_INITIALIZE>(entry) };
        let status = {
            let _running = context::enter(self.raw_usize());
            let _doing = crate::image::activity::enter("DriverEntry", 0);
            let _watch = super::watchdog::watch("DriverEntry", 0, &self.name);
            let level = crate::kernel::irql::current();
            // SAFETY: the driver's own live driver object and registry path.
            let status =
                unsafe { entry(self.object.as_ptr(), self.storage.registry_path.as_ptr()) };
            crate::kernel::irql::check_returned(level, "DriverEntry", &self.name);
            NtStatus(status)
        };
        if status.is_success() {
            io::ready_devices(self.address());
        }
        status
    }

    /// Calls another image's `DriverEntry` at `entry` against this same driver object (the
    /// sample's swap mode: the incoming image takes the driver over through DriverProxy),
    /// with the Microsoft x64 convention, on this thread, while requests may be running on
    /// others. Returns its status. On success, devices the entry created are readied as in
    /// [`Driver::start`].
    ///
    /// # Safety
    /// As [`Driver::start`].
    #[must_use]
    pub unsafe fn call_entry_again(&self, entry: usize) -> NtStatus {
        // SAFETY: forwarded.
        unsafe { self.call_entry(entry) }
    }

    /// The `PDRIVER_OBJECT`.
    #[must_use]
    pub fn as_raw(&self) -> *mut DRIVER_OBJECT {
        self.object.as_ptr()
    }

    /// The registry path handed to `DriverEntry`.
    #[must_use]
    pub fn registry_path(&self) -> *mut UNICODE_STRING {
        self.storage.registry_path.as_ptr()
    }

    /// The driver's name (`\Driver\<name>`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the driver's first `DriverEntry` returned (a success code: a failed entry does not
    /// make a `Driver`).
    #[must_use]
    pub fn entry_status(&self) -> NtStatus {
        self.entry_status
    }

    /// What the driver printed with `DbgPrint` since it was created (its `DriverEntry`,
    /// dispatch routines, work items, system threads, `DriverUnload`), in order.
    #[must_use]
    pub fn dbg_print(&self) -> Vec<String> {
        super::dbgprint::log_of(self.raw_usize(), self.log_from)
    }

    /// The pool blocks the driver holds now (allocated by threads running for it and not
    /// freed), per tag, sorted by tag.
    #[must_use]
    pub fn pool(&self) -> Vec<PoolLeak> {
        pool_outstanding_for_driver(self.as_raw().cast())
    }

    /// The DriverProxy model's control of this driver object (features, faults, extension).
    #[must_use]
    pub fn control(&self) -> DriverControl {
        DriverControl::new(self.as_raw())
    }

    /// The device objects of the driver, newest first (`DriverObject->DeviceObject` and the
    /// `NextDevice` chain).
    #[must_use]
    pub fn devices(&self) -> Vec<usize> {
        let mut devices = Vec::new();
        // SAFETY: the driver object and its devices are live; the list is changed only by
        // IoCreateDevice / IoDeleteDevice, which run in the driver's own calls.
        unsafe {
            let mut device = (*self.as_raw()).DeviceObject;
            while !device.is_null() {
                devices.push(device as usize);
                device = (*device).NextDevice;
            }
        }
        devices
    }

    /// Opens `path` (`\\.\X`, `\??\X`, `\DosDevices\X` or a device name such as `\Device\X`),
    /// following symbolic links to a device of this driver, and sends `IRP_MJ_CREATE`.
    ///
    /// # Errors
    /// `STATUS_OBJECT_NAME_INVALID` (malformed path); `STATUS_OBJECT_NAME_NOT_FOUND` (no such
    /// name, a dangling link, a path below a device, or a device of another driver);
    /// `STATUS_OBJECT_TYPE_MISMATCH` (a driver name); `STATUS_NO_SUCH_DEVICE` (the device is
    /// still `DO_DEVICE_INITIALIZING`); `STATUS_ACCESS_DENIED` (an exclusive device already
    /// open); the status the driver completed `IRP_MJ_CREATE` with, if not a success (or
    /// `STATUS_PENDING`-then-failure).
    pub fn open(&self, path: &str) -> Result<FileHandle<'_>, NtStatus> {
        self.open_file(path).map(|(device, file)| FileHandle {
            owner: Owner::Borrowed(self),
            device,
            file: Some(file),
        })
    }

    /// [`Driver::open`] for a handle that keeps its driver alive through `owner` (an `Arc`
    /// of whatever holds the driver) instead of borrowing it: no lifetime, usable on any
    /// thread.
    ///
    /// # Errors
    /// As [`Driver::open`].
    pub fn open_shared(
        owner: Arc<dyn AsRef<Self> + Send + Sync>,
        path: &str,
    ) -> Result<FileHandle<'static>, NtStatus> {
        let (device, file) = owner.as_ref().as_ref().open_file(path)?;
        Ok(FileHandle {
            owner: Owner::Shared(owner),
            device,
            file: Some(file),
        })
    }

    /// Opens `path`: the device and its file object, after a successful `IRP_MJ_CREATE`.
    fn open_file(&self, path: &str) -> Result<(io::DeviceAddress, Box<FILE_OBJECT>), NtStatus> {
        let device = io::reserve_open(self.address(), path).map_err(NtStatus)?;
        // SAFETY: all-zero is valid for these plain-data structures.
        let mut file: Box<FILE_OBJECT> = Box::new(unsafe { core::mem::zeroed() });
        file.Type = IO_TYPE_FILE;
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // 0xD8
        let size = size_of::<FILE_OBJECT>() as i16;
        file.Size = size;
        file.DeviceObject = device.as_ptr();
        let mut security = Box::new(IO_SECURITY_CONTEXT {
            SecurityQos: core::ptr::null_mut(),
            AccessState: core::ptr::null_mut(),
            DesiredAccess: GENERIC_READ_WRITE,
            FullCreateOptions: 0,
        });
        let request = Request::plain(
            IRP_MJ_CREATE,
            &raw mut *file,
            [
                (&raw mut *security) as usize,
                FILE_OPEN_OPTIONS as usize,
                usize::from(SHARE_READ_WRITE) << 16,
                0,
            ],
        );
        // SAFETY: the device is live and counted open (reserved) for the call.
        let (status, _) = unsafe { io::send(self.address(), device, &request) };
        drop(security);
        if !NtStatus(status).is_success() {
            io::release(device);
            return Err(NtStatus(status));
        }
        Ok((device, file))
    }

    /// Sends `IRP_MJ_DEVICE_CONTROL` with control code `code` on `handle`, built as the I/O
    /// manager builds it for the code's transfer type (its two low bits):
    ///
    /// | type | input | output |
    /// |---|---|---|
    /// | `METHOD_BUFFERED` | one system buffer (`AssociatedIrp.SystemBuffer`) of `max(input.len(), output.len())` bytes (none when both are 0) holding the input | after completion, unless the status is an error, the first `Information` bytes of the system buffer are copied to `output` |
    /// | `METHOD_IN_DIRECT`, `METHOD_OUT_DIRECT` | a system buffer of `input.len()` bytes holding the input (none when empty) | `Irp->MdlAddress`: an MDL of `output`, locked for read access (`IN_DIRECT`: the driver reads it) or write access (`OUT_DIRECT`); none when empty |
    /// | `METHOD_NEITHER` | `Parameters.DeviceIoControl.Type3InputBuffer`: the input's address (null when empty) | `Irp->UserBuffer`: `output`'s address (null when empty) |
    ///
    /// For the direct and neither types nothing is copied: the driver reads and writes the
    /// caller's memory (`output` holds what it wrote, whatever the status). Returns the
    /// completion status and `Information`. Callable from several threads at once, also with
    /// the same handle.
    ///
    /// Refused without reaching the driver: `STATUS_DELETE_PENDING` when the device was
    /// deleted; `STATUS_INVALID_PARAMETER` for a buffer longer than 4 GiB − 1;
    /// `STATUS_INSUFFICIENT_RESOURCES` when the MDL cannot be allocated. Every control code
    /// reaches the driver, as on Windows (an unknown one is the driver's to refuse).
    ///
    /// `METHOD_BUFFERED`: a successful completion with `Information` larger than the output
    /// buffer bugchecks (`DRIVER_VERIFIER_IOMANAGER_VIOLATION`): the copy would overrun the
    /// caller's buffer.
    ///
    /// # Panics
    /// If `handle` belongs to another driver.
    #[must_use]
    pub fn device_control(
        &self,
        handle: &FileHandle<'_>,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> (NtStatus, usize) {
        self.check_handle(handle);
        if io::is_deleted(handle.device) {
            return (NtStatus(status::DELETE_PENDING), 0);
        }
        let (Ok(in_len), Ok(out_len)) = (u32::try_from(input.len()), u32::try_from(output.len()))
        else {
            return (NtStatus(ddi::STATUS_INVALID_PARAMETER), 0);
        };
        let parameters = [out_len as usize, in_len as usize, code as usize, 0];
        let method = code & 3;
        if method == METHOD_BUFFERED {
            return self.buffered(
                handle,
                IRP_MJ_DEVICE_CONTROL,
                parameters,
                input,
                output,
                IRP_BUFFERED_IO
                    | IRP_DEALLOCATE_BUFFER
                    | if output.is_empty() {
                        0
                    } else {
                        IRP_INPUT_OPERATION
                    },
            );
        }
        let mut user_input = UserBuffer::copy_of(input);
        let mut user_output = UserBuffer::copy_of(output);
        let mut request = Request::plain(IRP_MJ_DEVICE_CONTROL, handle.file_ptr(), parameters);
        if method == METHOD_NEITHER {
            request.parameters[3] = user_input.address() as usize;
            request.user_buffer = user_output.address().cast();
        } else {
            debug_assert!(method == METHOD_IN_DIRECT || method == METHOD_OUT_DIRECT);
            if !input.is_empty() {
                request.system_buffer = user_input.address().cast();
                request.flags = IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER;
            }
            match user_output.lock(method == METHOD_OUT_DIRECT) {
                Ok(mdl) => request.mdl = mdl,
                Err(status) => return (status, 0),
            }
        }
        // SAFETY: the handle keeps the device allocated; the buffers and the MDL outlive the
        // call (the I/O manager frees the MDL when the request is over).
        let (status, information) = unsafe { io::send(self.address(), handle.device, &request) };
        output.copy_from_slice(user_output.bytes());
        (NtStatus(status), information)
    }

    /// Sends `IRP_MJ_READ` of `buffer.len()` bytes at `offset` on `handle`, buffered as the
    /// device's flags say (read when the request is sent):
    ///
    /// * `DO_BUFFERED_IO`: a system buffer of `buffer.len()` bytes; after completion, unless
    ///   the status is an error, its first `Information` bytes are copied to `buffer` (more
    ///   than `buffer.len()` bugchecks: `DRIVER_VERIFIER_IOMANAGER_VIOLATION`);
    /// * `DO_DIRECT_IO`: `Irp->MdlAddress`, an MDL of `buffer` locked for write access (null
    ///   for a read of 0 bytes);
    /// * neither: `Irp->UserBuffer` is `buffer`'s address.
    ///
    /// `Parameters.Read`: `Length`, `Key` 0, `ByteOffset` = `offset`. Returns the completion
    /// status and `Information`. Refused without reaching the driver as
    /// [`Driver::device_control`] is.
    ///
    /// # Panics
    /// If `handle` belongs to another driver.
    #[must_use]
    pub fn read(
        &self,
        handle: &FileHandle<'_>,
        buffer: &mut [u8],
        offset: u64,
    ) -> (NtStatus, usize) {
        self.read_write(handle, IRP_MJ_READ, &mut Transfer::Read(buffer), offset)
    }

    /// Sends `IRP_MJ_WRITE` of `data` at `offset` on `handle`, buffered as the device's flags
    /// say: `DO_BUFFERED_IO`, a system buffer holding a copy of `data`; `DO_DIRECT_IO`, an
    /// MDL of `data` locked for read access (null for 0 bytes); neither, `Irp->UserBuffer`.
    /// `Parameters.Write`: `Length`, `Key` 0, `ByteOffset` = `offset`. Returns the
    /// completion status and `Information` (the bytes the driver says it wrote). Refused
    /// without reaching the driver as [`Driver::device_control`] is.
    ///
    /// # Panics
    /// If `handle` belongs to another driver.
    #[must_use]
    pub fn write(&self, handle: &FileHandle<'_>, data: &[u8], offset: u64) -> (NtStatus, usize) {
        self.read_write(handle, IRP_MJ_WRITE, &mut Transfer::Write(data), offset)
    }

    /// `IRP_MJ_READ` or `IRP_MJ_WRITE` (see [`Driver::read`], [`Driver::write`]).
    fn read_write(
        &self,
        handle: &FileHandle<'_>,
        major: usize,
        transfer: &mut Transfer<'_, '_>,
        offset: u64,
    ) -> (NtStatus, usize) {
        self.check_handle(handle);
        if io::is_deleted(handle.device) {
            return (NtStatus(status::DELETE_PENDING), 0);
        }
        let length = transfer.len();
        let Ok(length_u32) = u32::try_from(length) else {
            return (NtStatus(ddi::STATUS_INVALID_PARAMETER), 0);
        };
        #[allow(clippy::cast_possible_truncation)] // the LARGE_INTEGER's bits
        let parameters = [length_u32 as usize, 0, offset as usize, 0];
        // SAFETY: the handle keeps the device allocated; its flags are plain data the driver
        // sets before requests arrive.
        let device_flags = unsafe { (*handle.device()).Flags };
        let operation = if major == IRP_MJ_READ {
            IRP_READ_OPERATION
        } else {
            IRP_WRITE_OPERATION
        };
        if device_flags & DO_BUFFERED_IO != 0 {
            return match transfer {
                Transfer::Read(buffer) => self.buffered(
                    handle,
                    major,
                    parameters,
                    &[],
                    buffer,
                    IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | IRP_INPUT_OPERATION | operation,
                ),
                Transfer::Write(data) => {
                    let (status, information) = self.buffered(
                        handle,
                        major,
                        parameters,
                        data,
                        &mut [],
                        IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | operation,
                    );
                    (status, information)
                }
            };
        }
        let mut user = UserBuffer::copy_of(transfer.bytes());
        let mut request = Request::plain(major, handle.file_ptr(), parameters);
        request.flags = operation;
        if device_flags & DO_DIRECT_IO != 0 {
            match user.lock(major == IRP_MJ_READ) {
                Ok(mdl) => request.mdl = mdl,
                Err(status) => return (status, 0),
            }
        } else {
            request.user_buffer = user.address().cast();
        }
        // SAFETY: the handle keeps the device allocated; the buffer and the MDL outlive the
        // call.
        let (status, information) = unsafe { io::send(self.address(), handle.device, &request) };
        if let Transfer::Read(buffer) = transfer {
            buffer.copy_from_slice(user.bytes());
        }
        (NtStatus(status), information)
    }

    /// A request with one system buffer of `max(input.len(), output.len())` bytes holding
    /// `input`, whose first `Information` bytes are copied to `output` after a completion
    /// that is not an error (`METHOD_BUFFERED`, and reads and writes of `DO_BUFFERED_IO`).
    fn buffered(
        &self,
        handle: &FileHandle<'_>,
        major: usize,
        parameters: [usize; 4],
        input: &[u8],
        output: &mut [u8],
        flags: ddi::ULONG,
    ) -> (NtStatus, usize) {
        let length = input.len().max(output.len());
        // 16-byte aligned, as pool is.
        let mut buffer: Vec<u128> = vec![0; length.div_ceil(16)];
        let system_buffer = if length == 0 {
            core::ptr::null_mut()
        } else {
            buffer.as_mut_ptr().cast::<u8>()
        };
        if !input.is_empty() {
            // SAFETY: the buffer holds at least `input.len()` bytes; no overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(input.as_ptr(), system_buffer, input.len());
            }
        }
        let mut request = Request::plain(major, handle.file_ptr(), parameters);
        request.system_buffer = system_buffer.cast();
        request.flags = flags;
        // SAFETY: the handle keeps the device allocated; the system buffer outlives the call.
        let (status, information) = unsafe { io::send(self.address(), handle.device, &request) };
        // A write's Information is the bytes written: nothing comes back.
        if major != IRP_MJ_WRITE && !NtStatus(status).is_error() {
            if information > output.len() {
                crate::kernel::bugcheck(
                    crate::kernel::BugCheck::IoManagerViolation,
                    io::major_name(major),
                    format_args!(
                        "completed with Information {information} > {} {}",
                        if major == IRP_MJ_READ {
                            "Length"
                        } else {
                            "OutputBufferLength"
                        },
                        output.len()
                    ),
                );
            }
            if information > 0 {
                // SAFETY: `information` ≤ both lengths (the buffer holds max(in, out)).
                unsafe {
                    core::ptr::copy_nonoverlapping(system_buffer, output.as_mut_ptr(), information);
                }
            }
        }
        drop(buffer);
        (NtStatus(status), information)
    }

    /// Panics when `handle` is not a handle of this driver.
    fn check_handle(&self, handle: &FileHandle<'_>) {
        assert!(
            core::ptr::eq(handle.owner.driver(), self),
            "the handle belongs to another driver"
        );
    }

    /// Closes `handle`: sends `IRP_MJ_CLEANUP` then `IRP_MJ_CLOSE` (also when the device was
    /// deleted meanwhile, as Windows does: the device object lives until its last handle is
    /// closed). Returns the status `IRP_MJ_CLOSE` completed with; the handle is closed
    /// whatever it is. Dropping a handle closes it the same way.
    ///
    /// # Panics
    /// If `handle` belongs to another driver.
    #[allow(clippy::needless_pass_by_value)] // consumed: the handle is gone afterwards
    #[allow(clippy::must_use_candidate)] // closing is done for its effect
    pub fn close(&self, mut handle: FileHandle<'_>) -> NtStatus {
        self.check_handle(&handle);
        handle.close_now().close
    }

    /// The leaks of this driver as they are now.
    fn leaks(&self) -> Leaks {
        let (devices, links) = io::leftovers(self.address());
        Leaks {
            devices,
            links,
            pool: pool_outstanding_for_driver(self.as_raw().cast()),
            threads: crate::kernel::threads::live_threads_of(self.raw_usize()),
            handles: crate::kernel::threads::open_handles_of(self.raw_usize()),
            mdls: memory::outstanding_of(self.raw_usize()),
            work_items: workitem::outstanding_of(self.address()),
        }
    }

    /// Frees the driver object (the driver is gone: nothing refers to it any more) and
    /// deletes it in the DriverProxy model (its extension is released).
    fn release_storage(mut self) {
        self.control().delete();
        // SAFETY: taken once; `self` is forgotten below so Drop does not see it again.
        let storage = unsafe { ManuallyDrop::take(&mut self.storage) };
        drop(storage);
        std::mem::forget(self);
    }

    /// Unloads the driver: waits for its work items to finish running (as Windows defers the
    /// unload while they hold device references; bugcheck when they have not after the
    /// watchdog's limit), calls `DriverUnload` (Microsoft x64) while running for the driver,
    /// then checks that it deleted its devices, removed the symbolic links it created, ended
    /// the system threads it started and freed its pool (blocks allocated while running for
    /// it). The driver object is then deleted (its DriverProxy extension released).
    ///
    /// # Errors
    /// [`UnloadError::NoUnloadRoutine`] (nothing done); [`UnloadError::Leaked`] with what was
    /// left behind.
    pub fn unload(self) -> Result<(), UnloadError> {
        // SAFETY: the live driver object; the slot is read atomically (a swap may write it).
        let unload = unsafe {
            (*(&raw const (*self.as_raw()).DriverUnload).cast::<std::sync::atomic::AtomicUsize>())
                .load(std::sync::atomic::Ordering::Acquire)
        };
        if unload == 0 {
            return Err(UnloadError::NoUnloadRoutine(Box::new(self)));
        }
        // SAFETY: the driver's unload routine (win64 code it stored).
        let unload = unsafe { core::mem::transmute::<usize, DRIVER_UNLOAD>(unload) };
        // As Windows: DriverUnload runs once no work item holds a reference on a device.
        let limit = super::watchdog::call_limit();
        let pending = workitem::wait_idle(self.address(), limit);
        if pending > 0 {
            crate::kernel::bugcheck(
                crate::kernel::BugCheck::IoManagerViolation,
                "DriverUnload",
                format_args!(
                    "{pending} work item(s) of driver {} still queued or running after {:.1} s: the unload cannot proceed (on Windows it would wait forever)",
                    self.name,
                    limit.as_secs_f64()
                ),
            );
        }
        {
            let _running = context::enter(self.raw_usize());
            let _doing = crate::image::activity::enter("DriverUnload", 0);
            let _watch = super::watchdog::watch("DriverUnload", 0, &self.name);
            let level = crate::kernel::irql::current();
            // SAFETY: the driver's own driver object; no handle is open (they borrow `self`).
            unsafe { unload(self.as_raw()) };
            crate::kernel::irql::check_returned(level, "DriverUnload", &self.name);
        }
        let leaks = self.leaks();
        io::remove_driver(self.address(), &self.name);
        if leaks.devices.is_empty() && leaks.threads == 0 {
            self.release_storage();
        }
        if leaks.is_empty() {
            Ok(())
        } else {
            Err(UnloadError::Leaked(leaks))
        }
    }
}

/// An open file handle on a device of a [`Driver`]. Closing it (or dropping it) sends
/// `IRP_MJ_CLEANUP` and `IRP_MJ_CLOSE`. `Send + Sync`: one handle may carry requests from
/// several threads at once.
pub struct FileHandle<'d> {
    owner: Owner<'d>,
    device: io::DeviceAddress,
    file: Option<Box<FILE_OBJECT>>,
}

/// How a [`FileHandle`] keeps its driver alive: a borrow, or a share of what owns it.
enum Owner<'d> {
    Borrowed(&'d Driver),
    Shared(Arc<dyn AsRef<Driver> + Send + Sync>),
}

impl Owner<'_> {
    fn driver(&self) -> &Driver {
        match self {
            Self::Borrowed(driver) => driver,
            Self::Shared(owner) => owner.as_ref().as_ref(),
        }
    }
}

// SAFETY: the file object is only read by driver code (any thread) and freed by close, which
// takes the handle by value or runs in Drop.
unsafe impl Send for FileHandle<'_> {}
// SAFETY: as above: shared use only sends requests, which the I/O manager serialises where
// needed.
unsafe impl Sync for FileHandle<'_> {}

impl fmt::Debug for FileHandle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileHandle")
            .field("driver", &self.owner.driver().name)
            .field("device", &format_args!("{:#x}", self.device))
            .finish_non_exhaustive()
    }
}

impl FileHandle<'_> {
    fn file_ptr(&self) -> *mut FILE_OBJECT {
        self.file.as_ref().map_or(core::ptr::null_mut(), |f| {
            core::ptr::from_ref(&**f).cast_mut()
        })
    }

    /// The device object the handle is open on.
    #[must_use]
    pub fn device(&self) -> *mut super::types::DEVICE_OBJECT {
        self.device.as_ptr()
    }

    /// The `FILE_OBJECT` of the handle.
    #[must_use]
    pub fn file_object(&self) -> *mut FILE_OBJECT {
        self.file_ptr()
    }

    fn close_now(&mut self) -> Closed {
        let Some(mut file) = self.file.take() else {
            return Closed {
                cleanup: NtStatus::SUCCESS,
                close: NtStatus::SUCCESS,
            };
        };
        let driver = self.owner.driver().address();
        let mut statuses = [ddi::STATUS_SUCCESS; 2];
        for (major, status) in [IRP_MJ_CLEANUP, IRP_MJ_CLOSE]
            .into_iter()
            .zip(&mut statuses)
        {
            let request = Request::plain(major, &raw mut *file, [0; 4]);
            // SAFETY: the handle keeps the device allocated until `release` below.
            *status = unsafe { io::send(driver, self.device, &request) }.0;
        }
        drop(file);
        io::release(self.device);
        Closed {
            cleanup: NtStatus(statuses[0]),
            close: NtStatus(statuses[1]),
        }
    }

    /// Closes the handle: sends `IRP_MJ_CLEANUP` then `IRP_MJ_CLOSE` and returns both
    /// completion statuses (see [`Driver::close`]).
    #[allow(clippy::must_use_candidate)] // closing is done for its effect
    pub fn close(mut self) -> Closed {
        self.close_now()
    }
}

/// The completion statuses of the two requests that close a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed {
    /// How the driver completed `IRP_MJ_CLEANUP`.
    pub cleanup: NtStatus,
    /// How the driver completed `IRP_MJ_CLOSE`.
    pub close: NtStatus,
}

/// The caller's side of a direct or neither transfer: a 16-byte aligned copy of the caller's
/// buffer that the driver reads and writes in place (the caller sees its bytes afterwards),
/// and the MDL the I/O manager builds for it.
struct UserBuffer {
    storage: Vec<u128>,
    len: usize,
}

impl UserBuffer {
    fn copy_of(bytes: &[u8]) -> Self {
        let mut storage: Vec<u128> = vec![0; bytes.len().div_ceil(16)];
        if !bytes.is_empty() {
            // SAFETY: the storage holds at least `bytes.len()` bytes; no overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    storage.as_mut_ptr().cast::<u8>(),
                    bytes.len(),
                );
            }
        }
        Self {
            storage,
            len: bytes.len(),
        }
    }

    /// The buffer's address, null when it is empty (as the I/O manager passes no buffer).
    fn address(&mut self) -> *mut u8 {
        if self.len == 0 {
            core::ptr::null_mut()
        } else {
            self.storage.as_mut_ptr().cast()
        }
    }

    /// An MDL of the buffer, locked for write access (`write`: the driver fills it) or read
    /// access; null for an empty buffer.
    fn lock(&mut self, write: bool) -> Result<*mut MDL, NtStatus> {
        if self.len == 0 {
            return Ok(core::ptr::null_mut());
        }
        memory::for_request(self.address() as usize, self.len, write)
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the storage holds at least `len` initialised bytes.
        unsafe { core::slice::from_raw_parts(self.storage.as_ptr().cast::<u8>(), self.len) }
    }
}

/// The caller's buffer of a read or a write.
enum Transfer<'a, 'b> {
    Read(&'a mut [u8]),
    Write(&'b [u8]),
}

impl Transfer<'_, '_> {
    fn len(&self) -> usize {
        self.bytes().len()
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Read(buffer) => buffer,
            Self::Write(data) => data,
        }
    }
}

impl Drop for FileHandle<'_> {
    fn drop(&mut self) {
        let _ = self.close_now();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Not unloaded: the driver stays loaded for the rest of the process (type docs); its
        // storage is deliberately leaked (the ManuallyDrop is never taken).
    }
}
