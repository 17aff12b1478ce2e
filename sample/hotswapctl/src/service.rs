//! The installed driver as a kernel service (Windows): [`Service`] stops, starts and
//! re-points it through the Service Control Manager, and [`ServiceLab`] is the
//! [`Lab`] of the WDM build (a legacy kernel service, `HotSwapSampleWdm`):
//!
//! | operation | what [`ServiceLab`] does |
//! |---|---|
//! | connect | opens the device ([`DeviceBackend`]) |
//! | unload / reload | stops / starts the service and waits until it is stopped / running |
//! | hot swap | runs `--swap-command` if given; otherwise unsupported, with the reason (under Wine: it has no DriverProxy) |
//! | disable / enable | unsupported: a legacy service has no device node to disable |
//!
//! `hotswapctl service NAME stop|start|set-image PATH|query` exposes [`Service`] on the
//! command line; a *cold* swap (a different image loaded from scratch, no state carried
//! over) is `stop`, `set-image`, `start`. Under Wine, whose `sc.exe` has no `config`, that
//! is the way to point a service at another image (`cargo xtask wine` does it).

use std::{
    ffi::{CStr, OsStr, c_char},
    io,
    os::windows::ffi::OsStrExt,
    ptr, thread,
    time::{Duration, Instant},
};

use windows_sys::Win32::System::{
    LibraryLoader::{GetModuleHandleW, GetProcAddress},
    Services::{
        ChangeServiceConfigW, CloseServiceHandle, ControlService, OpenSCManagerW, OpenServiceW,
        QueryServiceStatus, SC_HANDLE, SC_MANAGER_CONNECT, SERVICE_CHANGE_CONFIG,
        SERVICE_CONTROL_STOP, SERVICE_NO_CHANGE, SERVICE_QUERY_STATUS, SERVICE_RUNNING,
        SERVICE_START, SERVICE_STATUS, SERVICE_STOP, SERVICE_STOPPED, StartServiceW,
    },
};

use crate::{
    backend::{Backend, BackendError, windows::DeviceBackend},
    lab::{Lab, LabError, run_command},
};

/// `text` as a NUL-terminated UTF-16 string.
fn wide(text: &str) -> Vec<u16> {
    OsStr::new(text).encode_wide().chain([0]).collect()
}

/// A handle of the Service Control Manager or of a service, closed on drop.
struct ScHandle(SC_HANDLE);

impl ScHandle {
    /// Takes `handle`, or the thread's last error when it is null.
    fn new(handle: SC_HANDLE) -> io::Result<Self> {
        if handle.is_null() {
            Err(io::Error::last_os_error())
        } else {
            Ok(Self(handle))
        }
    }
}

impl Drop for ScHandle {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by `OpenSCManagerW` / `OpenServiceW` and is closed
        // exactly once, here.
        unsafe {
            CloseServiceHandle(self.0);
        }
    }
}

/// A win32 `BOOL` result as an `io::Result`.
fn check(result: i32) -> io::Result<()> {
    if result == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A service, by name, controlled through the Service Control Manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    name: String,
}

impl Service {
    /// The service called `name` (`HotSwapSampleWdm`).
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the service with `access`.
    fn open(&self, access: u32) -> io::Result<ScHandle> {
        // SAFETY: null machine and database names mean the local, active database.
        let manager =
            ScHandle::new(unsafe { OpenSCManagerW(ptr::null(), ptr::null(), SC_MANAGER_CONNECT) })?;
        let name = wide(&self.name);
        // SAFETY: `manager` is open; `name` is NUL-terminated and outlives the call.
        ScHandle::new(unsafe { OpenServiceW(manager.0, name.as_ptr(), access) })
    }

    /// The service's current state (`SERVICE_STOPPED` = 1 … `SERVICE_RUNNING` = 4).
    ///
    /// # Errors
    /// The Win32 error of opening or querying the service.
    pub fn state(&self) -> io::Result<u32> {
        let service = self.open(SERVICE_QUERY_STATUS)?;
        query(&service)
    }

    /// Stops the service and waits, at most `timeout`, until it is stopped.
    ///
    /// # Errors
    /// The Win32 error (`ERROR_SERVICE_NOT_ACTIVE` when it is not running), or `TimedOut`.
    pub fn stop(&self, timeout: Duration) -> io::Result<()> {
        let service = self.open(SERVICE_STOP | SERVICE_QUERY_STATUS)?;
        let mut status = SERVICE_STATUS::default();
        // SAFETY: `service` is open with SERVICE_STOP; `status` outlives the call.
        check(unsafe { ControlService(service.0, SERVICE_CONTROL_STOP, &raw mut status) })?;
        wait_for(&service, SERVICE_STOPPED, timeout)
    }

    /// Starts the service and waits, at most `timeout`, until it is running.
    ///
    /// # Errors
    /// The Win32 error (a driver whose `DriverEntry` failed, `ERROR_SERVICE_ALREADY_RUNNING`,
    /// …), or `TimedOut`.
    pub fn start(&self, timeout: Duration) -> io::Result<()> {
        let service = self.open(SERVICE_START | SERVICE_QUERY_STATUS)?;
        // SAFETY: `service` is open with SERVICE_START; no arguments.
        check(unsafe { StartServiceW(service.0, 0, ptr::null()) })?;
        wait_for(&service, SERVICE_RUNNING, timeout)
    }

    /// Points the service at the image `path` (its `ImagePath`; takes effect at the next
    /// start).
    ///
    /// # Errors
    /// The Win32 error of opening or changing the service.
    pub fn set_image(&self, path: &str) -> io::Result<()> {
        let service = self.open(SERVICE_CHANGE_CONFIG)?;
        let path = wide(path);
        // SAFETY: `service` is open with SERVICE_CHANGE_CONFIG; `path` is NUL-terminated and
        // outlives the call; every other setting is left unchanged (SERVICE_NO_CHANGE, null).
        check(unsafe {
            ChangeServiceConfigW(
                service.0,
                SERVICE_NO_CHANGE,
                SERVICE_NO_CHANGE,
                SERVICE_NO_CHANGE,
                path.as_ptr(),
                ptr::null(),
                ptr::null_mut(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
            )
        })
    }
}

/// The current state of the open `service`.
fn query(service: &ScHandle) -> io::Result<u32> {
    let mut status = SERVICE_STATUS::default();
    // SAFETY: `service` is open with SERVICE_QUERY_STATUS; `status` outlives the call.
    check(unsafe { QueryServiceStatus(service.0, &raw mut status) })?;
    Ok(status.dwCurrentState)
}

/// Polls the open `service` until it is in `state`, at most `timeout`.
fn wait_for(service: &ScHandle, state: u32, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let current = query(service)?;
        if current == state {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("state {current} after {timeout:?}, expected {state}"),
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The version of Wine this runs under (`wine_get_version` of its ntdll), if it does.
#[must_use]
pub fn wine_version() -> Option<String> {
    let ntdll = wide("ntdll.dll");
    // SAFETY: `ntdll` is NUL-terminated; ntdll is loaded in every process.
    let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
    if module.is_null() {
        return None;
    }
    // SAFETY: `module` is ntdll's handle; the name is a NUL-terminated C string.
    let address = unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()) }?;
    // SAFETY: Wine's ntdll exports `const char *wine_get_version(void)`, a C function
    // returning a static NUL-terminated string; its address is that function's.
    let get_version = unsafe {
        std::mem::transmute::<
            unsafe extern "system" fn() -> isize,
            unsafe extern "C" fn() -> *const c_char,
        >(address)
    };
    // SAFETY: see above.
    let text = unsafe { get_version() };
    if text.is_null() {
        return None;
    }
    // SAFETY: a static NUL-terminated string (see above), not null.
    let text = unsafe { CStr::from_ptr(text) };
    Some(text.to_string_lossy().into_owned())
}

/// Why a hot swap cannot be done without a swap command.
#[must_use]
pub fn no_hot_swap_reason() -> String {
    match wine_version() {
        Some(version) => format!(
            "Wine {version} has no DriverProxy (no IoRegisterDriverProxyEndpoints), so there is no hot swap: the driver runs the library's fallback"
        ),
        None => "no swap command given (--swap-command)".to_owned(),
    }
}

/// The WDM build as a lab: its device, and its kernel service for unload and reload
/// (module docs).
#[derive(Debug)]
pub struct ServiceLab {
    service: Service,
    device: String,
    swap_command: Option<String>,
    timeout: Duration,
}

impl ServiceLab {
    /// A lab on `service` whose device is at `device`; `swap_command` hot-swaps (if any);
    /// each operation may take `timeout`.
    #[must_use]
    pub fn new(
        service: Service,
        device: &str,
        swap_command: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            service,
            device: device.to_owned(),
            swap_command,
            timeout,
        }
    }

    fn failed(&self, what: &str, error: &io::Error) -> LabError {
        LabError::Failed(format!("{what} service {}: {error}", self.service.name()))
    }
}

impl Lab for ServiceLab {
    fn describe(&self) -> String {
        let under = wine_version().map_or_else(String::new, |v| format!(" under Wine {v}"));
        format!(
            "kernel service {} (device {}){under}",
            self.service.name(),
            self.device
        )
    }

    fn connect(&self) -> Result<Box<dyn Backend>, BackendError> {
        Ok(Box::new(DeviceBackend::open(&self.device)?))
    }

    fn swap_to(&self, version: hotswap_sample_core::DriverVersion) -> Result<(), LabError> {
        match &self.swap_command {
            Some(line) => run_command(
                &line.replace("{version}", &version.to_string()),
                self.timeout,
            ),
            None => Err(LabError::Unsupported(no_hot_swap_reason())),
        }
    }

    fn disable(&self) -> Result<(), LabError> {
        Err(LabError::Unsupported(
            "a legacy kernel service (the WDM build) has no device node to disable".to_owned(),
        ))
    }

    fn enable(&self) -> Result<(), LabError> {
        self.disable()
    }

    fn unload(&self) -> Result<(), LabError> {
        self.service
            .stop(self.timeout)
            .map_err(|error| self.failed("stopping", &error))
    }

    fn reload(&self) -> Result<(), LabError> {
        self.service
            .start(self.timeout)
            .map_err(|error| self.failed("starting", &error))
    }
}
