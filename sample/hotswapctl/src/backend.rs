//! How the client reaches a driver: the [`Backend`] trait, one I/O control request at a time.
//!
//! | backend | where | what it talks to |
//! |---|---|---|
//! | `windows::DeviceBackend` | Windows only (`cfg(windows)`) | the installed sample driver, through `\\.\HotSwapSample` and `NtDeviceIoControlFile` |
//! | `crate::host::HostBackend` | x86-64 Linux (`cfg(all(target_os = "linux", target_arch = "x86_64"))`) | the WDM sample's real `.sys` images running in the in-process host kernel |
//! | [`crate::fake::FakeBackend`] | everywhere | an in-memory simulation for testing the client's own logic; not a driver |

use std::{fmt, io};

pub use hotswap_sample_core::Completion;

/// Sends one I/O control request and returns how it completed.
///
/// A backend is one connection (one open handle). It is `Send` so that each stress thread
/// can own one; it need not be `Sync`.
pub trait Backend: Send {
    /// Sends control code `code` with `input`, giving the driver `output` for its answer.
    /// Returns the completion status and the number of bytes written to `output`
    /// (`Information`). A status the driver completed the request with, success or failure,
    /// is an `Ok`.
    ///
    /// # Errors
    /// [`BackendError`] when the request could not be delivered at all (no device, buffers
    /// too large for the transport, the host kernel failed).
    fn device_control(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Completion, BackendError>;

    /// What this backend talks to, for messages (`\\.\HotSwapSample`, …).
    fn describe(&self) -> String;
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn device_control(
        &mut self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<Completion, BackendError> {
        (**self).device_control(code, input, output)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A request that could not be delivered.
#[derive(Debug)]
pub enum BackendError {
    /// The device could not be opened.
    Open {
        /// The path tried.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The transport failed.
    Io(io::Error),
    /// The backend does not exist on this platform or build.
    Unavailable(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { path, source } => write!(f, "cannot open {path}: {source}"),
            Self::Io(source) => write!(f, "I/O control request failed: {source}"),
            Self::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open { source, .. } | Self::Io(source) => Some(source),
            Self::Unavailable(_) => None,
        }
    }
}

/// The Windows backend: the installed driver, through its device.
#[cfg(windows)]
pub mod windows {
    use std::{ffi::c_void, io, os::windows::ffi::OsStrExt, ptr};

    use hotswap_sample_core::{Completion, NtStatus, names::WIN32_DEVICE_PATH};
    use windows_sys::{
        Wdk::System::IO::NtDeviceIoControlFile,
        Win32::{
            Foundation::{CloseHandle, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE},
            Storage::FileSystem::{
                CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE,
                OPEN_EXISTING,
            },
            System::IO::IO_STATUS_BLOCK,
        },
    };

    use super::{Backend, BackendError};

    /// An open handle to the sample's device.
    ///
    /// Requests go through `NtDeviceIoControlFile` rather than `DeviceIoControl` so that the
    /// client sees the driver's exact NTSTATUS (`DeviceIoControl` maps it to a Win32 error,
    /// and several NTSTATUS codes share one). The handle is opened for synchronous I/O, so
    /// each call returns when the request is complete; the I/O manager serialises the
    /// requests on one handle, which is why each stress thread opens its own.
    #[derive(Debug)]
    pub struct DeviceBackend {
        handle: HANDLE,
        path: String,
    }

    // SAFETY: a kernel handle is a process-wide value usable from any thread; `DeviceBackend`
    // owns it exclusively and only closes it in `drop`.
    unsafe impl Send for DeviceBackend {}

    impl DeviceBackend {
        /// Opens the sample's device at [`WIN32_DEVICE_PATH`].
        ///
        /// # Errors
        /// [`BackendError::Open`] with the Win32 error (for instance "file not found" when no
        /// build of the sample is installed and started).
        pub fn open_default() -> Result<Self, BackendError> {
            Self::open(WIN32_DEVICE_PATH)
        }

        /// Opens the device at `path` (`\\.\Name`).
        ///
        /// # Errors
        /// [`BackendError::Open`] with the Win32 error.
        pub fn open(path: &str) -> Result<Self, BackendError> {
            let wide: Vec<u16> = std::ffi::OsStr::new(path)
                .encode_wide()
                .chain([0])
                .collect();
            // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives the call; the
            // security attributes and template handle may be null.
            let handle = unsafe {
                CreateFileW(
                    wide.as_ptr(),
                    GENERIC_READ | GENERIC_WRITE,
                    FILE_SHARE_READ | FILE_SHARE_WRITE,
                    ptr::null(),
                    OPEN_EXISTING,
                    FILE_ATTRIBUTE_NORMAL,
                    ptr::null_mut(),
                )
            };
            if handle == INVALID_HANDLE_VALUE {
                return Err(BackendError::Open {
                    path: path.to_owned(),
                    source: io::Error::last_os_error(),
                });
            }
            Ok(Self {
                handle,
                path: path.to_owned(),
            })
        }
    }

    impl Backend for DeviceBackend {
        fn device_control(
            &mut self,
            code: u32,
            input: &[u8],
            output: &mut [u8],
        ) -> Result<Completion, BackendError> {
            let too_long =
                |what| BackendError::Io(io::Error::new(io::ErrorKind::InvalidInput, what));
            let input_length =
                u32::try_from(input.len()).map_err(|_| too_long("input longer than 4 GiB"))?;
            let output_length =
                u32::try_from(output.len()).map_err(|_| too_long("output longer than 4 GiB"))?;
            let mut io_status = IO_STATUS_BLOCK::default();
            // SAFETY: `self.handle` is an open synchronous handle; the buffers are valid for
            // the lengths given for the whole call, which returns only when the request is
            // complete (synchronous handle, no event, no APC); `io_status` outlives the call.
            let status = unsafe {
                NtDeviceIoControlFile(
                    self.handle,
                    ptr::null_mut(),
                    None,
                    ptr::null(),
                    &raw mut io_status,
                    code,
                    input.as_ptr().cast::<c_void>(),
                    input_length,
                    output.as_mut_ptr().cast::<c_void>(),
                    output_length,
                )
            };
            let information = if NtStatus(status).is_error() {
                0
            } else {
                io_status.Information.min(output.len())
            };
            Ok(Completion {
                status: NtStatus(status),
                information,
            })
        }

        fn describe(&self) -> String {
            self.path.clone()
        }
    }

    impl Drop for DeviceBackend {
        fn drop(&mut self) {
            // SAFETY: the handle was opened by `open` and is closed exactly once, here.
            unsafe {
                CloseHandle(self.handle);
            }
        }
    }
}
