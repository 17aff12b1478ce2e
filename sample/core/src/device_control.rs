//! A device-control request as a framework presents it, served by the core: the
//! parameters an `EvtIoDeviceControl` callback receives ([`DeviceControlRequest`]) and the
//! buffers the framework's retrievals (`WdfRequestRetrieveInputBuffer` /
//! `WdfRequestRetrieveOutputBuffer`) hand out ([`RetrievedBuffer`]), mapped onto
//! [`dispatch_buffered`] by [`serve_device_control`].
//!
//! No framework code: the KMDF front end (`sample/kmdf`, which builds only on Windows with
//! the WDK) passes the framework's calls in as closures, so Linux CI tests everything here,
//! the validation of what the framework handed out included.

use core::ffi::c_void;

use driver_proxy::NtStatus;

use crate::{
    dispatch::{Completion, dispatch_buffered},
    ioctl::{ControlCode, Method},
    state::State,
};

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
    use std::{vec, vec::Vec};

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
}
