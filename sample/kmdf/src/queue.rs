//! The device's default queue and its `EvtIoDeviceControl`, which serves the sample's
//! protocol with the core's `serve_device_control` (`METHOD_BUFFERED` only: one system buffer).

use driver_proxy::{NtStatus, Wrapped};
use hotswap_sample_core::device_control::{
    BufferKind, DeviceControlRequest, RetrievedBuffer, serve_device_control,
};
use wdk_sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_TRI_STATE, PVOID, ULONG, ULONG_PTR, WDF_IO_QUEUE_CONFIG,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDEVICE, WDFQUEUE, WDFREQUEST, call_unsafe_wdf_function_binding,
};

use crate::abi::callback;
use crate::endpoints::EvtIoDeviceControl;
use crate::{STATE, wdf_size};

/// Creates the device's default queue: parallel, power-managed (the framework's default for
/// a function driver: requests wait while the device is not in D0), with `device_control` as
/// `EvtIoDeviceControl` (`WDF_IO_QUEUE_CONFIG_INIT_DEFAULT_QUEUE`). The queue is a child of
/// the device: the framework deletes it with the device.
///
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
/// `WdfIoQueueCreate`'s status.
///
/// # Safety
/// `device` is this driver's device, in `EvtDriverDeviceAdd`.
pub unsafe fn create(
    device: WDFDEVICE,
    device_control: Wrapped<EvtIoDeviceControl>,
) -> Result<WDFQUEUE, NtStatus> {
    let mut config = WDF_IO_QUEUE_CONFIG {
        Size: wdf_size::<WDF_IO_QUEUE_CONFIG>(),
        PowerManaged: _WDF_TRI_STATE::WdfUseDefault,
        DefaultQueue: 1,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        EvtIoDeviceControl: callback(device_control),
        ..WDF_IO_QUEUE_CONFIG::default()
    };
    // As WDF_IO_QUEUE_CONFIG_INIT does for a parallel queue: no limit on presented requests.
    config.Settings.Parallel.NumberOfPresentedRequests = ULONG::MAX;
    let mut queue: WDFQUEUE = core::ptr::null_mut();
    // SAFETY: our device (contract); a complete config whose callback is a wrapper; a local
    // out handle.
    NtStatus(unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    })
    .ok()?;
    Ok(queue)
}

/// `EvtIoDeviceControl`: serves one request of the sample's protocol with the core's
/// `serve_device_control` (method check, system buffer from `WdfRequestRetrieve*Buffer`,
/// `dispatch_buffered`) and completes it with `WdfRequestCompleteWithInformation`.
///
/// IRQL: `<= DISPATCH_LEVEL` (a parallel queue without an execution-level constraint).
///
/// # Safety
/// Called by the framework (through the wrapper) with a request it presents to this queue.
pub unsafe extern "system" fn evt_io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    io_control_code: ULONG,
) {
    let parameters = DeviceControlRequest {
        io_control_code,
        input_length,
        output_length,
    };
    let completion = serve_device_control(
        &STATE,
        parameters,
        |kind| retrieve(request, kind),
        |located| {
            // SAFETY: `located` is the request's METHOD_BUFFERED system buffer (non-null,
            // max(input, output) bytes, checked by the core), lent by the framework until
            // the request completes, which happens below after the slice's last use.
            unsafe { core::slice::from_raw_parts_mut(located.address.cast::<u8>(), located.length) }
        },
    );
    // SAFETY: the request was presented to us and is completed once, here; it is not touched
    // afterwards.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            completion.status.raw(),
            completion.information as ULONG_PTR
        );
    }
}

/// `WdfRequestRetrieveInputBuffer` or `WdfRequestRetrieveOutputBuffer`, any length.
fn retrieve(request: WDFREQUEST, kind: BufferKind) -> Result<RetrievedBuffer, NtStatus> {
    let mut address: PVOID = core::ptr::null_mut();
    let mut length: usize = 0;
    // SAFETY: a request presented to the running callback; the out pointers are locals.
    let status = unsafe {
        match kind {
            BufferKind::Input => call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request,
                0,
                &raw mut address,
                &raw mut length
            ),
            BufferKind::Output => call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                0,
                &raw mut address,
                &raw mut length
            ),
        }
    };
    NtStatus(status).ok()?;
    Ok(RetrievedBuffer { address, length })
}
