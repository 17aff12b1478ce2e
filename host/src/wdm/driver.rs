//! The driver API a loader glues to: [`Driver`] (load = `DriverEntry`, requests, swap-mode
//! entry, unload) and [`FileHandle`]. Contracts in the docs of [`super`].

use std::fmt;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;

use driver_proxy::NtStatus;
use driver_proxy::sys::{self, UNICODE_STRING};

use super::io::{self, Request};
use super::status;
use super::types::{
    DRIVER_EXTENSION, DRIVER_INITIALIZE, DRIVER_OBJECT, DRIVER_UNLOAD, FILE_OBJECT,
    FILE_OPEN_OPTIONS, GENERIC_READ_WRITE, IO_SECURITY_CONTEXT, IO_TYPE_DRIVER, IO_TYPE_FILE,
    IRP_BUFFERED_IO, IRP_DEALLOCATE_BUFFER, IRP_INPUT_OPERATION, IRP_MJ_CLEANUP, IRP_MJ_CLOSE,
    IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, IRP_MJ_MAXIMUM_FUNCTION, METHOD_BUFFERED,
    SHARE_READ_WRITE,
};
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
}

impl Leaks {
    /// Whether nothing was left behind.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.links.is_empty()
            && self.pool.is_empty()
            && self.threads == 0
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
        object.DriverStart = image_base as sys::PVOID;
        object.DriverSize = image_size;
        object.DriverExtension = &raw mut *extension;
        // SAFETY: `driver_name` outlives the object (both in `Storage`).
        object.DriverName = unsafe { driver_name.as_ptr().read() };
        object.HardwareDatabase = hardware.as_ptr();
        object.DriverInit = entry as sys::PVOID;
        object.MajorFunction =
            [io::invalid_device_request as *const () as usize; IRP_MJ_MAXIMUM_FUNCTION + 1];
        io::add_driver(io::DriverAddress::of(raw), name).map_err(NtStatus)?;
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
        };
        // SAFETY: caller contract.
        let status = unsafe { driver.call_entry(entry) };
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
            return NtStatus(sys::STATUS_INVALID_PARAMETER);
        }
        // SAFETY: caller contract: DRIVER_INITIALIZE code, Microsoft x64.
        let entry = unsafe { core::mem::transmute::<usize, DRIVER_INITIALIZE>(entry) };
        let status = {
            let _running = context::enter(self.raw_usize());
            let _doing = crate::image::activity::enter("DriverEntry", 0);
            let _watch = super::watchdog::watch("DriverEntry", 0, &self.name);
            // SAFETY: the driver's own live driver object and registry path.
            NtStatus(unsafe { entry(self.object.as_ptr(), self.storage.registry_path.as_ptr()) })
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

    /// The DriverProxy model's control of this driver object (features, faults, extension).
    #[must_use]
    pub fn control(&self) -> DriverControl {
        DriverControl::new(self.as_raw().cast())
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
        let request = Request {
            major: IRP_MJ_CREATE,
            file: &raw mut *file,
            system_buffer: core::ptr::null_mut(),
            flags: 0,
            parameters: [
                (&raw mut *security) as usize,
                FILE_OPEN_OPTIONS as usize,
                usize::from(SHARE_READ_WRITE) << 16,
                0,
            ],
        };
        // SAFETY: the device is live and counted open (reserved) for the call.
        let (status, _) = unsafe { io::send(self.address(), device, &request) };
        drop(security);
        if !NtStatus(status).is_success() {
            io::release(device);
            return Err(NtStatus(status));
        }
        Ok((device, file))
    }

    /// Sends `IRP_MJ_DEVICE_CONTROL` with control code `code` on `handle`, `METHOD_BUFFERED`:
    /// the system buffer holds `max(input.len(), output.len())` bytes (none when both are 0),
    /// `input` is copied into it, and after completion, unless the status is an error, the
    /// first `Information` bytes are copied to `output`. Returns the completion status and
    /// `Information`. Callable from several threads at once, also with the same handle.
    ///
    /// Refused without reaching the driver: `STATUS_DELETE_PENDING` when the device was
    /// deleted; `STATUS_NOT_IMPLEMENTED` for a transfer method other than `METHOD_BUFFERED`
    /// (not modelled); `STATUS_INVALID_PARAMETER` for a buffer longer than 4 GiB − 1.
    ///
    /// A successful completion with `Information` larger than the output buffer bugchecks
    /// (`DRIVER_VERIFIER_IOMANAGER_VIOLATION`): the copy would overrun the caller's buffer.
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
        assert!(
            core::ptr::eq(handle.owner.driver(), self),
            "the handle belongs to another driver"
        );
        if io::is_deleted(handle.device) {
            return (NtStatus(status::DELETE_PENDING), 0);
        }
        if code & 3 != METHOD_BUFFERED {
            return (NtStatus(sys::STATUS_NOT_IMPLEMENTED), 0);
        }
        let (Ok(in_len), Ok(out_len)) = (u32::try_from(input.len()), u32::try_from(output.len()))
        else {
            return (NtStatus(sys::STATUS_INVALID_PARAMETER), 0);
        };
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
        let request = Request {
            major: IRP_MJ_DEVICE_CONTROL,
            file: handle.file_ptr(),
            system_buffer: system_buffer.cast(),
            flags: IRP_BUFFERED_IO
                | IRP_DEALLOCATE_BUFFER
                | if output.is_empty() {
                    0
                } else {
                    IRP_INPUT_OPERATION
                },
            parameters: [out_len as usize, in_len as usize, code as usize, 0],
        };
        // SAFETY: the handle keeps the device allocated; the system buffer outlives the call.
        let (status, information) = unsafe { io::send(self.address(), handle.device, &request) };
        // NT_ERROR: severity 3.
        #[allow(clippy::cast_sign_loss)]
        let is_error = (status as u32) >> 30 == 3;
        if !is_error {
            if information > output.len() {
                crate::kernel::bugcheck(
                    crate::kernel::BugCheck::IoManagerViolation,
                    "IRP_MJ_DEVICE_CONTROL",
                    format_args!(
                        "completed with Information {information} > OutputBufferLength {}",
                        output.len()
                    ),
                );
            }
            // SAFETY: `information` ≤ both lengths (the buffer holds max(in, out)).
            unsafe {
                core::ptr::copy_nonoverlapping(system_buffer, output.as_mut_ptr(), information);
            }
        }
        drop(buffer);
        (NtStatus(status), information)
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
        assert!(
            core::ptr::eq(handle.owner.driver(), self),
            "the handle belongs to another driver"
        );
        handle.close_now()
    }

    /// The leaks of this driver as they are now.
    fn leaks(&self) -> Leaks {
        let (devices, links) = io::leftovers(self.address());
        Leaks {
            devices,
            links,
            pool: pool_outstanding_for_driver(self.as_raw().cast()),
            threads: crate::kernel::threads::live_threads_of(self.raw_usize()),
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

    /// Unloads the driver: calls `DriverUnload` (Microsoft x64) while running for the driver,
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
        {
            let _running = context::enter(self.raw_usize());
            let _doing = crate::image::activity::enter("DriverUnload", 0);
            let _watch = super::watchdog::watch("DriverUnload", 0, &self.name);
            // SAFETY: the driver's own driver object; no handle is open (they borrow `self`).
            unsafe { unload(self.as_raw()) };
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

    fn close_now(&mut self) -> NtStatus {
        let Some(mut file) = self.file.take() else {
            return NtStatus::SUCCESS;
        };
        let driver = self.owner.driver().address();
        let mut status = sys::STATUS_SUCCESS;
        for major in [IRP_MJ_CLEANUP, IRP_MJ_CLOSE] {
            let request = Request {
                major,
                file: &raw mut *file,
                system_buffer: core::ptr::null_mut(),
                flags: 0,
                parameters: [0; 4],
            };
            // SAFETY: the handle keeps the device allocated until `release` below.
            status = unsafe { io::send(driver, self.device, &request) }.0;
        }
        drop(file);
        io::release(self.device);
        NtStatus(status)
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
