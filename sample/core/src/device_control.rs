//! The framework-free half of the KMDF front end (`sample/kmdf`): everything it does that is
//! not a call into the framework, here so that Linux CI compiles and tests it (the `wdk`
//! crates, and therefore `sample/kmdf` itself, build only on Windows with the WDK).
//!
//! * [`CONTROL_DEVICE_SDDL`]: the security descriptor of the control device
//!   (`WdfControlDeviceInitAllocate`).
//! * [`ENDPOINTS`]: the V1 endpoint ids of the KMDF build and the parameter count of each
//!   routine, the contract between two KMDF images of a swap.
//! * [`DeviceControlRequest`] and [`serve_device_control`]: how the parameters
//!   `EvtIoDeviceControl` receives, and the buffers `WdfRequestRetrieveInputBuffer` /
//!   `WdfRequestRetrieveOutputBuffer` hand out, map onto the core's
//!   [`dispatch_buffered`].
//!
//! The state both images reach is [`crate::shared`]; the swap callback is
//! [`crate::takeover`].

use core::ffi::c_void;

use driver_proxy::NtStatus;

use crate::{
    dispatch::{Completion, dispatch_buffered},
    ioctl::{ControlCode, Method},
    names::ascii_to_utf16,
    state::State,
};

/// The control device's security descriptor, `SDDL_DEVOBJ_SYS_ALL_ADM_ALL` of `wdmsec.h`:
/// protected DACL (`P`), generic all (`GA`) for the local system (`SY`) and the built-in
/// administrators (`BA`), nobody else. `hotswapctl` must run elevated.
///
/// `wdmsec.h` declares it with `DECLARE_CONST_UNICODE_STRING`, which `wdk-sys`'s bindgen
/// does not turn into a binding, so the front end builds the `UNICODE_STRING` from
/// [`CONTROL_DEVICE_SDDL_UTF16`].
pub const CONTROL_DEVICE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)";

/// [`CONTROL_DEVICE_SDDL`] as UTF-16 code units (no terminating NUL).
pub const CONTROL_DEVICE_SDDL_UTF16: [u16; CONTROL_DEVICE_SDDL.len()] =
    ascii_to_utf16(CONTROL_DEVICE_SDDL);

/// One routine the KMDF build hands out, as registered in its V1 endpoint table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The V1 id (`DRIVER_PROXY_ENDPOINT_INFORMATION.Id`).
    pub id: u32,
    /// The routine's parameter count (`ParameterCount`). `driver-proxy` derives it from the
    /// routine's type; the front end asserts at compile time that the two agree.
    pub parameter_count: u32,
    /// The callback's name in the WDF / DriverProxy documentation.
    pub callback: &'static str,
    /// Where the front end hands its wrapper out.
    pub handed_out_as: &'static str,
}

/// `EvtIoDeviceControl`: `VOID (WDFQUEUE, WDFREQUEST, size_t OutputBufferLength,
/// size_t InputBufferLength, ULONG IoControlCode)`.
pub const DEVICE_CONTROL: EndpointSpec = EndpointSpec {
    id: 1,
    parameter_count: 5,
    callback: "EvtIoDeviceControl",
    handed_out_as: "WDF_IO_QUEUE_CONFIG.EvtIoDeviceControl of the control device's default queue",
};

/// `EvtDriverUnload`: `VOID (WDFDRIVER)`.
pub const DRIVER_UNLOAD: EndpointSpec = EndpointSpec {
    id: 2,
    parameter_count: 1,
    callback: "EvtDriverUnload",
    handed_out_as: "WDF_DRIVER_CONFIG.EvtDriverUnload",
};

/// The worker routine, `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE`:
/// `BOOLEAN (PVOID WorkerContext, NTSTATUS WaitStatus)`.
pub const WORKER: EndpointSpec = EndpointSpec {
    id: 3,
    parameter_count: 2,
    callback: "DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE",
    handed_out_as: "the hot-swappable worker thread's start context",
};

/// Every routine the KMDF build hands to the framework or the kernel. A swap between two
/// KMDF images registers the same ids with the same parameter counts
/// (`IoRegisterDriverProxyEndpoints` refuses another count with
/// `STATUS_INVALID_PARAMETER_3`).
pub const ENDPOINTS: [EndpointSpec; 3] = [DEVICE_CONTROL, DRIVER_UNLOAD, WORKER];

const _: () = assert!(
    <crate::worker::SampleWorkerRoutine as driver_proxy::Endpoint>::ARITY == WORKER.parameter_count
);

/// The parameters KMDF passes to `EvtIoDeviceControl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceControlRequest {
    /// `IoControlCode`.
    pub io_control_code: u32,
    /// `InputBufferLength`.
    pub input_length: usize,
    /// `OutputBufferLength`.
    pub output_length: usize,
}

/// Which of the request's buffers to retrieve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    /// `WdfRequestRetrieveInputBuffer`.
    Input,
    /// `WdfRequestRetrieveOutputBuffer`.
    Output,
}

/// A buffer as the framework handed it out: its address and length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrievedBuffer {
    /// `*Buffer`.
    pub address: *mut c_void,
    /// `*Length`.
    pub length: usize,
}

impl DeviceControlRequest {
    /// The `METHOD_BUFFERED` system buffer of the request: `None` when both lengths are
    /// zero, else its address and length (`max(input, output)` bytes, which is what the I/O
    /// manager allocates for `METHOD_BUFFERED`).
    ///
    /// `retrieve` is called for each buffer whose length is non-zero (KMDF fails a retrieval
    /// of a zero-length buffer with `STATUS_BUFFER_TOO_SMALL`), with a minimum length of
    /// zero. For `METHOD_BUFFERED` both retrievals return the same address: the one system
    /// buffer holds the input on entry and receives the output in place.
    ///
    /// IRQL: any.
    ///
    /// # Errors
    /// `STATUS_INVALID_DEVICE_REQUEST` for another transfer method (before any retrieval:
    /// the buffers of other methods are not a system buffer), or when a retrieval does not
    /// describe the system buffer (null, shorter than the request says, or input and output
    /// at different addresses); a failed retrieval's own status.
    pub fn locate_system_buffer(
        &self,
        mut retrieve: impl FnMut(BufferKind) -> Result<RetrievedBuffer, NtStatus>,
    ) -> Result<Option<RetrievedBuffer>, NtStatus> {
        if ControlCode::decode(self.io_control_code).method != Method::Buffered {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let mut located: Option<RetrievedBuffer> = None;
        for (kind, length) in [
            (BufferKind::Input, self.input_length),
            (BufferKind::Output, self.output_length),
        ] {
            if length == 0 {
                continue;
            }
            let buffer = retrieve(kind)?;
            if buffer.address.is_null() || buffer.length < length {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            match located {
                Some(first) if first.address != buffer.address => {
                    return Err(NtStatus::INVALID_DEVICE_REQUEST);
                }
                _ => located = Some(buffer),
            }
        }
        Ok(located.map(|buffer| RetrievedBuffer {
            address: buffer.address,
            length: self.input_length.max(self.output_length),
        }))
    }
}

/// Serves one `EvtIoDeviceControl` request: locates the system buffer
/// ([`DeviceControlRequest::locate_system_buffer`] with `retrieve`), views it as a byte
/// slice with `view`, and runs [`dispatch_buffered`] on it. A request refused before the
/// dispatch is counted as rejected in `state`, as the dispatch counts its own refusals.
/// Complete the request with the returned status and information
/// (`WdfRequestCompleteWithInformation`).
///
/// `view` is the front end's one unsafe step: it turns the located buffer, which the
/// framework lent for this request until its completion, into a `&mut [u8]` of its length.
///
/// IRQL: any (the framework calls `EvtIoDeviceControl` at `PASSIVE_LEVEL` or
/// `DISPATCH_LEVEL`; nothing here blocks).
pub fn serve_device_control<'buffer>(
    state: &State,
    request: DeviceControlRequest,
    retrieve: impl FnMut(BufferKind) -> Result<RetrievedBuffer, NtStatus>,
    view: impl FnOnce(RetrievedBuffer) -> &'buffer mut [u8],
) -> Completion {
    let buffer: &mut [u8] = match request.locate_system_buffer(retrieve) {
        Ok(Some(located)) => view(located),
        // Both lengths zero: the dispatch refuses the empty request with its own status.
        Ok(None) => &mut [],
        Err(status) => {
            state.record_rejected();
            return Completion::failed(status);
        }
    };
    dispatch_buffered(
        state,
        request.io_control_code,
        buffer,
        request.input_length,
        request.output_length,
    )
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{string::String, vec, vec::Vec};

    use driver_proxy::Endpoint;

    use super::*;
    use crate::{
        THIS_BUILD,
        ioctl::RequestKind,
        ioctl::{Access, IOCTL_HOTSWAP_TRANSFORM, IOCTL_HOTSWAP_VERSION, ctl_code},
        protocol::{Request, ResponseBody, decode_response},
    };

    /// A request's system buffer as the I/O manager builds it for `METHOD_BUFFERED`.
    struct SystemBuffer {
        bytes: Vec<u8>,
        request: DeviceControlRequest,
        retrieved: Vec<BufferKind>,
    }

    impl SystemBuffer {
        fn new(request: &Request<'_>, output_length: usize) -> Self {
            let mut input = vec![0; request.encoded_len()];
            request.encode(&mut input).unwrap();
            let mut bytes = vec![0xCC; input.len().max(output_length)];
            bytes[..input.len()].copy_from_slice(&input);
            Self {
                request: DeviceControlRequest {
                    io_control_code: request.control_code(),
                    input_length: input.len(),
                    output_length,
                },
                bytes,
                retrieved: Vec::new(),
            }
        }

        /// Serves the request as the KMDF front end does, with the framework's retrievals
        /// modelled on this buffer.
        fn serve(&mut self, state: &State) -> Completion {
            let address = self.bytes.as_mut_ptr();
            let request = self.request;
            let retrieved = &mut self.retrieved;
            let bytes = &mut self.bytes;
            serve_device_control(
                state,
                request,
                |kind| {
                    retrieved.push(kind);
                    let length = match kind {
                        BufferKind::Input => request.input_length,
                        BufferKind::Output => request.output_length,
                    };
                    Ok(RetrievedBuffer {
                        address: address.cast(),
                        length,
                    })
                },
                |located| {
                    assert_eq!(located.address, address.cast());
                    &mut bytes[..located.length]
                },
            )
        }
    }

    #[test]
    fn a_request_is_served_in_its_system_buffer() {
        let state = State::new();
        let mut system = SystemBuffer::new(&Request::Transform(b"abc"), 19);
        let completion = system.serve(&state);
        assert_eq!(
            completion,
            Completion {
                status: NtStatus::SUCCESS,
                information: 19
            }
        );
        assert_eq!(system.retrieved, [BufferKind::Input, BufferKind::Output]);
        let response = decode_response(RequestKind::Transform, &system.bytes[..19]).unwrap();
        let expected: &[u8] = if cfg!(feature = "v2") { b"nop" } else { b"ABC" };
        assert_eq!(response.body, ResponseBody::Transform(expected));
        assert_eq!(response.driver_version, THIS_BUILD);
        assert_eq!(state.stats().served_by(THIS_BUILD), 1);
    }

    #[test]
    fn the_system_buffer_spans_the_longer_of_input_and_output() {
        for output_length in [0, 4, 48, 500] {
            let system = SystemBuffer::new(&Request::Version, output_length);
            let address = core::ptr::without_provenance_mut(0x1000);
            let located = system
                .request
                .locate_system_buffer(|kind| {
                    Ok(RetrievedBuffer {
                        address,
                        length: match kind {
                            BufferKind::Input => system.request.input_length,
                            BufferKind::Output => output_length,
                        },
                    })
                })
                .unwrap()
                .unwrap();
            assert_eq!(located.length, system.bytes.len(), "{output_length}");
        }
    }

    #[test]
    fn zero_length_buffers_are_never_retrieved() {
        let state = State::new();
        let request = DeviceControlRequest {
            io_control_code: IOCTL_HOTSWAP_VERSION,
            input_length: 0,
            output_length: 0,
        };
        let completion = serve_device_control(
            &state,
            request,
            |_| panic!("retrieved a zero-length buffer"),
            |_| panic!("nothing to view"),
        );
        assert_eq!(completion, Completion::failed(NtStatus::BUFFER_TOO_SMALL));
        assert_eq!(state.stats().rejected, 1);

        // Output only (no input): one retrieval, then the dispatch refuses the short input.
        let mut kinds = Vec::new();
        let mut bytes = vec![0u8; 48];
        let address = bytes.as_mut_ptr().cast();
        let completion = serve_device_control(
            &state,
            DeviceControlRequest {
                output_length: 48,
                ..request
            },
            |kind| {
                kinds.push(kind);
                Ok(RetrievedBuffer {
                    address,
                    length: 48,
                })
            },
            |located| &mut bytes[..located.length],
        );
        assert_eq!(kinds, [BufferKind::Output]);
        assert_eq!(completion, Completion::failed(NtStatus::BUFFER_TOO_SMALL));
    }

    #[test]
    fn other_transfer_methods_are_refused_before_any_retrieval() {
        let state = State::new();
        for method in [Method::InDirect, Method::OutDirect, Method::Neither] {
            let code = ctl_code(crate::ioctl::DEVICE_TYPE, 0x900, method, Access::Any);
            let completion = serve_device_control(
                &state,
                DeviceControlRequest {
                    io_control_code: code,
                    input_length: 16,
                    output_length: 48,
                },
                |_| panic!("retrieved a buffer of {method:?}"),
                |_| panic!("viewed a buffer of {method:?}"),
            );
            assert_eq!(
                completion,
                Completion::failed(NtStatus::INVALID_DEVICE_REQUEST)
            );
        }
        assert_eq!(state.stats().rejected, 3);
    }

    #[test]
    fn retrievals_that_are_not_one_system_buffer_are_refused() {
        let request = DeviceControlRequest {
            io_control_code: IOCTL_HOTSWAP_TRANSFORM,
            input_length: 19,
            output_length: 19,
        };
        let at = |address: usize, length: usize| RetrievedBuffer {
            address: core::ptr::without_provenance_mut(address),
            length,
        };
        let cases: [(RetrievedBuffer, RetrievedBuffer, &str); 3] = [
            (at(0x1000, 19), at(0x2000, 19), "two addresses"),
            (at(0, 19), at(0, 19), "null"),
            (at(0x1000, 18), at(0x1000, 19), "shorter than the request"),
        ];
        for (input, output, what) in cases {
            let located = request.locate_system_buffer(|kind| {
                Ok(match kind {
                    BufferKind::Input => input,
                    BufferKind::Output => output,
                })
            });
            assert_eq!(located, Err(NtStatus::INVALID_DEVICE_REQUEST), "{what}");
        }
    }

    #[test]
    fn a_failed_retrieval_completes_with_its_status_and_counts_as_rejected() {
        let state = State::new();
        let completion = serve_device_control(
            &state,
            DeviceControlRequest {
                io_control_code: IOCTL_HOTSWAP_VERSION,
                input_length: 16,
                output_length: 48,
            },
            |_| Err(NtStatus::INSUFFICIENT_RESOURCES),
            |_| panic!("nothing to view"),
        );
        assert_eq!(
            completion,
            Completion::failed(NtStatus::INSUFFICIENT_RESOURCES)
        );
        assert_eq!(state.stats().rejected, 1);
    }

    #[test]
    fn endpoint_ids_are_distinct_and_counts_match_the_documented_prototypes() {
        // The C prototypes, with WDF handles as the opaque pointers they are.
        type EvtIoDeviceControl =
            unsafe extern "system" fn(*mut c_void, *mut c_void, usize, usize, u32);
        type EvtDriverUnload = unsafe extern "system" fn(*mut c_void);
        for (i, spec) in ENDPOINTS.iter().enumerate() {
            assert_ne!(spec.id, 0);
            assert!(ENDPOINTS[..i].iter().all(|earlier| earlier.id != spec.id));
        }
        assert_eq!(EvtIoDeviceControl::ARITY, DEVICE_CONTROL.parameter_count);
        assert_eq!(EvtDriverUnload::ARITY, DRIVER_UNLOAD.parameter_count);
        assert_eq!(
            crate::worker::SampleWorkerRoutine::ARITY,
            WORKER.parameter_count
        );
    }

    #[test]
    fn the_sddl_is_system_and_administrators_only() {
        assert_eq!(
            String::from_utf16(&CONTROL_DEVICE_SDDL_UTF16).unwrap(),
            CONTROL_DEVICE_SDDL
        );
        assert!(CONTROL_DEVICE_SDDL.starts_with("D:P"));
        let aces: Vec<&str> = CONTROL_DEVICE_SDDL[3..]
            .split(')')
            .filter(|ace| !ace.is_empty())
            .collect();
        assert_eq!(aces, ["(A;;GA;;;SY", "(A;;GA;;;BA"]);
    }
}
