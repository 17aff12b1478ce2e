//! The device context ([`DeviceContext`], defined and tested in the core) and its type
//! description, which lives in a driver object extension rather than in an image, so that
//! every image of the driver finds the context the first one created
//! (`hotswap_sample_core::pnp`, *The device context across images*).

use core::mem::size_of;
use core::ptr;

use driver_proxy::NtStatus;
use hotswap_sample_core::pnp::{CONTEXT_TYPE_EXTENSION_KEY, DEVICE_CONTEXT_NAME, DeviceContext};
use wdk_sys::ntddk::{IoAllocateDriverObjectExtension, IoGetDriverObjectExtension};
use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, PCWDF_OBJECT_CONTEXT_TYPE_INFO,
    PDRIVER_OBJECT, PVOID, ULONG, WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO, WDFDEVICE,
    call_unsafe_wdf_function_binding,
};

use crate::wdf_size;

/// The bytes of [`DEVICE_CONTEXT_NAME`], with its NUL.
const NAME_LEN: usize = DEVICE_CONTEXT_NAME.to_bytes_with_nul().len();
const NAME: [u8; NAME_LEN] = {
    let bytes = DEVICE_CONTEXT_NAME.to_bytes_with_nul();
    let mut out = [0u8; NAME_LEN];
    let mut i = 0;
    while i < NAME_LEN {
        out[i] = bytes[i];
        i += 1;
    }
    out
};

/// What the extension holds: the description (first, so that its address is the
/// extension's) and the name it points to.
#[repr(C)]
struct ContextType {
    info: WDF_OBJECT_CONTEXT_TYPE_INFO,
    name: [u8; NAME_LEN],
}

/// The key, as the pointer the I/O manager compares (never dereferenced).
fn key() -> PVOID {
    ptr::without_provenance_mut(CONTEXT_TYPE_EXTENSION_KEY)
}

/// Allocates the description (first load): `Size`, the name beside it, `ContextSize` of a
/// [`DeviceContext`], `UniqueType` the description itself (as `WDF_DECLARE_CONTEXT_TYPE`
/// makes it), no `EvtDriverGetUniqueContextType`.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// `IoAllocateDriverObjectExtension`'s status; `STATUS_INVALID_DEVICE_STATE` if the memory is
/// not aligned for the description.
///
/// # Safety
/// `driver` must be this driver's own `DRIVER_OBJECT`, in `DriverEntry`.
pub unsafe fn allocate(driver: PDRIVER_OBJECT) -> Result<(), NtStatus> {
    let mut raw: PVOID = ptr::null_mut();
    #[allow(
        clippy::cast_possible_truncation,
        reason = "a few dozen bytes: the description and a short name"
    )]
    let size = size_of::<ContextType>() as ULONG;
    // SAFETY: our driver object (contract); a local out pointer.
    NtStatus(unsafe { IoAllocateDriverObjectExtension(driver, key(), size, &raw mut raw) }).ok()?;
    let slot = raw.cast::<ContextType>();
    if slot.is_null() || !slot.is_aligned() {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    // SAFETY: fresh non-paged memory of the extension's size, aligned (checked), used by
    // nobody else yet; it lives as long as the driver object, longer than every device.
    unsafe {
        let name = &raw mut (*slot).name;
        name.write(NAME);
        (&raw mut (*slot).info).write(WDF_OBJECT_CONTEXT_TYPE_INFO {
            Size: wdf_size::<WDF_OBJECT_CONTEXT_TYPE_INFO>(),
            ContextName: name.cast(),
            ContextSize: size_of::<DeviceContext>(),
            UniqueType: slot.cast(),
            EvtDriverGetUniqueContextType: None,
        });
    }
    Ok(())
}

/// The description the first image allocated, checked.
///
/// IRQL: `<= DISPATCH_LEVEL`.
///
/// # Errors
/// `STATUS_INVALID_DEVICE_STATE` when there is none; `STATUS_REVISION_MISMATCH` when it does
/// not describe a [`DeviceContext`] of this layout.
///
/// # Safety
/// `driver` must be this driver's own `DRIVER_OBJECT`.
pub unsafe fn type_info(
    driver: PDRIVER_OBJECT,
) -> Result<PCWDF_OBJECT_CONTEXT_TYPE_INFO, NtStatus> {
    // SAFETY: our driver object (contract); the key is only compared.
    let raw = unsafe { IoGetDriverObjectExtension(driver, key()) };
    let info = raw.cast::<WDF_OBJECT_CONTEXT_TYPE_INFO>().cast_const();
    if info.is_null() {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    // SAFETY: the extension under this key is a ContextType written by `allocate` of an
    // image of this driver; it lives as long as the driver object.
    let described = unsafe { &*info };
    if described.Size != wdf_size::<WDF_OBJECT_CONTEXT_TYPE_INFO>()
        || described.ContextSize != size_of::<DeviceContext>()
        || described.UniqueType != info
    {
        return Err(NtStatus::REVISION_MISMATCH);
    }
    Ok(info)
}

/// `WDF_OBJECT_ATTRIBUTES_INIT_CONTEXT_TYPE` with the description `info`: execution level
/// and synchronization scope inherited from the parent (0 is invalid for both), the context
/// typed by `info`.
#[must_use]
pub fn attributes(info: PCWDF_OBJECT_CONTEXT_TYPE_INFO) -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: wdf_size::<WDF_OBJECT_ATTRIBUTES>(),
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ContextTypeInfo: info,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

/// The framework's context memory of `device`, unchecked (null when the device has no
/// context of this type).
///
/// # Safety
/// `device` is a live `WDFDEVICE` of this driver; `info` is [`type_info`]'s.
unsafe fn raw_context(
    device: WDFDEVICE,
    info: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
) -> *mut DeviceContext {
    // SAFETY: a live device (contract) and the description its context was created with.
    unsafe {
        call_unsafe_wdf_function_binding!(WdfObjectGetTypedContextWorker, device.cast(), info)
    }
    .cast::<DeviceContext>()
}

/// Writes a fresh [`DeviceContext`] into the context memory of `device`, just created by
/// `WdfDeviceCreate` with [`attributes`]`(info)`.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// `STATUS_INVALID_DEVICE_STATE` when the device has no such context or it is misaligned.
///
/// # Safety
/// `device` was just created with `attributes(info)`, in `EvtDriverDeviceAdd`: no callback
/// of the device runs yet.
pub unsafe fn initialise(
    device: WDFDEVICE,
    info: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
) -> Result<(), NtStatus> {
    // SAFETY: forwarded contract.
    let context = unsafe { raw_context(device, info) };
    if context.is_null() || !context.is_aligned() {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    // SAFETY: the framework's context memory of `ContextSize` = size_of::<DeviceContext>()
    // bytes (zeroed, aligned: checked), which nobody reads before the device's first
    // callback, after EvtDriverDeviceAdd returns.
    unsafe { context.write(DeviceContext::new()) };
    Ok(())
}

/// The context of `device`, checked ([`DeviceContext::check`]).
///
/// IRQL: `<= DISPATCH_LEVEL`.
///
/// # Errors
/// Those of [`type_info`]; `STATUS_INVALID_DEVICE_STATE` when the device has no context of
/// this type; the context's header check.
///
/// # Safety
/// `device` is a live `WDFDEVICE` of this driver, and stays so for `'a` (a callback of the
/// device uses the context during the callback).
pub unsafe fn of<'a>(device: WDFDEVICE) -> Result<&'a DeviceContext, NtStatus> {
    // SAFETY: a live device of this driver (contract).
    let wdf_driver = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetDriver, device) };
    // SAFETY: this driver's framework driver object.
    let driver =
        unsafe { call_unsafe_wdf_function_binding!(WdfDriverWdmGetDriverObject, wdf_driver) };
    // SAFETY: this driver's own DRIVER_OBJECT.
    let info = unsafe { type_info(driver) }?;
    // SAFETY: as above.
    let context = unsafe { raw_context(device, info) };
    if context.is_null() || !context.is_aligned() {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    // SAFETY: the device's context, written by `initialise` before any callback of the device
    // ran, freed with the device (which outlives 'a: contract); its mutable fields are atomics.
    let context = unsafe { &*context };
    context.check()?;
    Ok(context)
}
