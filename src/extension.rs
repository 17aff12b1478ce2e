//! [`Extension`]: the driver's DriverProxy extension (`PDRIVER_PROXY_EXTENSION`).

use core::ffi::c_void;
use core::ptr::NonNull;

use crate::phase::{CallbackContext, callback_trampoline};
use crate::resolve::{Exports, exports};
use crate::{
    CreateError, DriverObject, Endpoint, EndpointId, EndpointTable, LookupError, RegisterError,
    SwapCallback, WrapError, Wrapped, sys,
};

/// The DriverProxy extension of a driver: all its DriverProxy state in the kernel.
///
/// At most one exists per driver object; the kernel frees it with the driver object (there
/// is no destroy routine), so the handle is valid for as long as the driver is loaded. It is
/// `Copy`, `Send` and `Sync`: the lookups are documented as callable from any thread at any
/// IRQL.
///
/// Most drivers use [`crate::HotSwap`], which holds an `Extension` when hot-swap is available
/// and falls back to plain calls when it is not.
#[derive(Clone, Copy)]
pub struct Extension {
    raw: NonNull<sys::DRIVER_PROXY_EXTENSION>,
    exports: &'static Exports,
}

// SAFETY: the extension is a kernel object usable from any thread; this handle only passes
// its address to kernel routines.
unsafe impl Send for Extension {}
// SAFETY: as above; a shared handle gives no access to the object's contents.
unsafe impl Sync for Extension {}

impl core::fmt::Debug for Extension {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Extension({:p})", self.raw)
    }
}

impl Extension {
    /// Creates the extension of `driver` (`IoCreateDriverProxyExtension`, flags 0). Do it
    /// early in `DriverEntry`, after [`crate::probe`] reported DriverProxy enabled.
    ///
    /// IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`CreateError::ExportMissing`] (kernel older than Driver Hot-Swap),
    /// [`CreateError::NotSupported`], [`CreateError::DriverBlocked`],
    /// [`CreateError::InsufficientResources`], [`CreateError::AlreadyExists`] (the driver
    /// object already owns one: use [`Extension::from_driver_object`]).
    pub fn create(driver: DriverObject) -> Result<Self, CreateError> {
        let exports = exports();
        let create = exports
            .proxy
            .create_extension
            .ok_or(CreateError::ExportMissing(
                sys::names::IO_CREATE_DRIVER_PROXY_EXTENSION.ascii,
            ))?;
        let mut raw = core::ptr::null_mut();
        let flags = sys::DRIVER_PROXY_EXTENSION_CREATION_FLAGS { AsUlong: 0 };
        // SAFETY: resolved under this name with this signature; `driver` is live (invariant of
        // DriverObject); `raw` is a valid local; flags are 0 as the DDI requires.
        let status = crate::NtStatus(unsafe { create(driver.as_raw(), flags, &raw mut raw) });
        if !status.is_success() {
            return Err(CreateError::from_status(status));
        }
        NonNull::new(raw)
            .map(|raw| Self { raw, exports })
            .ok_or(CreateError::Unexpected(status))
    }

    /// The extension `driver` already owns (`IoGetDriverProxyExtensionFromDriverObject`), for
    /// code that did not keep the handle; `None` if it owns none.
    ///
    /// IRQL: any, once the crate has resolved its routines (the first call into the crate,
    /// e.g. [`crate::probe`] or [`Extension::create`], must be at `PASSIVE_LEVEL`).
    ///
    /// # Errors
    /// [`CreateError::ExportMissing`] when the kernel lacks the routine.
    pub fn from_driver_object(driver: DriverObject) -> Result<Option<Self>, CreateError> {
        let exports = exports();
        let get = exports
            .proxy
            .extension_from_driver_object
            .ok_or(CreateError::ExportMissing(
                sys::names::IO_GET_DRIVER_PROXY_EXTENSION_FROM_DRIVER_OBJECT.ascii,
            ))?;
        // SAFETY: resolved under this name with this signature; `driver` is live.
        let raw = unsafe { get(driver.as_raw()) };
        Ok(NonNull::new(raw).map(|raw| Self { raw, exports }))
    }

    /// The wrapper of `endpoint` (V2: `IofGetDriverProxyWrapperFromEndpoint`, what the C macro
    /// `IoGetDriverProxyWrapperFromEndpoint` expands to), typed as the endpoint itself.
    ///
    /// Hand out the result, never `endpoint`: a raw endpoint pointer held elsewhere keeps
    /// calling the old code after a swap and pins the old image.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`WrapError::NotAnEndpoint`] when the kernel knows no endpoint at that address (for a
    /// V1 driver: it was never registered); [`WrapError::ExportMissing`] on a kernel without
    /// the V2 lookup.
    pub fn wrap<F: Endpoint>(self, endpoint: F) -> Result<Wrapped<F>, WrapError> {
        let () = F::FITS_SLOTS;
        let iof = self
            .exports
            .proxy
            .wrapper_from_endpoint
            .ok_or(WrapError::ExportMissing(
                sys::names::IOF_GET_DRIVER_PROXY_WRAPPER_FROM_ENDPOINT.ascii,
            ))?;
        let mut wrapper: Option<F> = None;
        // SAFETY: `iof` is the resolved routine; the extension is live (type invariant); F is a
        // function-pointer type (sealed Endpoint); `wrapper` is a valid local.
        let status = crate::NtStatus(unsafe {
            sys::IoGetDriverProxyWrapperFromEndpoint(
                iof,
                self.raw.as_ptr(),
                endpoint,
                &raw mut wrapper,
            )
        });
        match wrapper {
            // SAFETY: the kernel returned the wrapper of an endpoint of type F.
            Some(wrapper) if status.is_success() => Ok(unsafe { Wrapped::new_unchecked(wrapper) }),
            // The macro's documentation: `*Wrapper` is NULL when the endpoint is not found.
            _ if status.is_success() || status == crate::NtStatus::NOT_FOUND => {
                Err(WrapError::NotAnEndpoint)
            }
            _ => Err(WrapError::Unexpected(status)),
        }
    }

    /// Registers a V1 table (`IoRegisterDriverProxyEndpoints`). The first registration makes
    /// the wrappers; registering ids that exist again *is the V1 hot swap*: the kernel runs
    /// `callback` in each [`crate::Phase`], waits for calls in the old code to drain, and
    /// repoints the wrappers at the new endpoints.
    ///
    /// The callback must not call any wrapper of this extension (it would wait on itself).
    ///
    /// IRQL: `PASSIVE_LEVEL` (it may block while calls drain).
    ///
    /// # Errors
    /// [`RegisterError::ParameterCountMismatch`] (an id re-registered with another arity),
    /// [`RegisterError::DrainTimeout`], [`RegisterError::InsufficientResources`],
    /// [`RegisterError::Callback`] (the callback failed; rolled back),
    /// [`RegisterError::ExportMissing`]. On every error nothing changed.
    pub fn register<const N: usize>(
        self,
        table: &EndpointTable<N>,
        callback: Option<&mut dyn SwapCallback>,
    ) -> Result<(), RegisterError> {
        let register =
            self.exports
                .proxy
                .register_endpoints
                .ok_or(RegisterError::ExportMissing(
                    sys::names::IO_REGISTER_DRIVER_PROXY_ENDPOINTS.ascii,
                ))?;
        let mut info = table.raw_copy();
        let count = u32::try_from(N)
            .map_err(|_| RegisterError::Unexpected(crate::NtStatus::INVALID_PARAMETER))?;
        let mut context = callback.map(|callback| CallbackContext {
            callback,
            failure: None,
        });
        let (phased, context_ptr) = match context.as_mut() {
            Some(context) => (
                Some(callback_trampoline as sys::DRIVER_PROXY_REGISTER_CALLBACK),
                core::ptr::from_mut(context).cast::<c_void>(),
            ),
            None => (None, core::ptr::null_mut()),
        };
        // SAFETY: resolved routine; live extension; `info` holds `count` valid entries; the
        // context, when there is one, is a live local that the kernel passes back to the
        // trampoline only during this call, which is what the trampoline requires.
        let status = crate::NtStatus(unsafe {
            register(
                self.raw.as_ptr(),
                info.as_mut_ptr(),
                count,
                phased,
                context_ptr,
            )
        });
        let failure = context.and_then(|context| context.failure);
        match failure {
            Some((phase, status)) => Err(RegisterError::Callback { phase, status }),
            None if status.is_success() => Ok(()),
            None => Err(RegisterError::from_status(status)),
        }
    }

    /// The wrapper registered under `id` (V1: `IoGetDriverProxyEndpointWrapper`), typed by the
    /// table the id was registered from.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// [`LookupError::UnknownId`] / [`LookupError::TypeMismatch`] (checked against `table`),
    /// [`LookupError::NotRegistered`] (the kernel has no such id), [`LookupError::ExportMissing`].
    pub fn wrapper<F: Endpoint, const N: usize>(
        self,
        table: &EndpointTable<N>,
        id: EndpointId<F>,
    ) -> Result<Wrapped<F>, LookupError> {
        table.entry_for(id)?;
        let get = self
            .exports
            .proxy
            .endpoint_wrapper_by_id
            .ok_or(LookupError::ExportMissing(
                sys::names::IO_GET_DRIVER_PROXY_ENDPOINT_WRAPPER.ascii,
            ))?;
        // SAFETY: resolved routine; live extension.
        let wrapper = unsafe { get(self.raw.as_ptr(), id.raw()) }
            .ok_or(LookupError::NotRegistered(id.raw()))?;
        // SAFETY: the id was registered from `table`, whose entry for it has type F (checked).
        Ok(unsafe { Wrapped::new_unchecked(F::unerase(wrapper)) })
    }

    /// The raw `PDRIVER_PROXY_EXTENSION`, for calls this crate does not wrap.
    ///
    /// IRQL: any.
    #[must_use]
    pub fn as_raw(self) -> sys::PDRIVER_PROXY_EXTENSION {
        self.raw.as_ptr()
    }

    pub(crate) fn exports(self) -> &'static Exports {
        self.exports
    }
}
