//! The endpoint logic behind the device-control dispatch routine.
//!
//! Both front ends call one of two functions from their hot-swappable device-control
//! endpoint (`IRP_MJ_DEVICE_CONTROL` for WDM, `EvtIoDeviceControl` for KMDF), complete the
//! request with [`Completion::status`] and set `Information` to
//! [`Completion::information`]:
//!
//! * [`dispatch_buffered`]: for the `METHOD_BUFFERED` system buffer, which holds the input
//!   on entry and receives the output in place (`Irp->AssociatedIrp.SystemBuffer`, or the
//!   one buffer KMDF's `WdfRequestRetrieveInputBuffer` and `…OutputBuffer` both return).
//!   It never needs a second buffer: a `TRANSFORM` payload sits at the same offset in the
//!   request and in the response and is transformed where it lies.
//! * [`dispatch_device_control`]: separate input and output buffers (host tests, the
//!   client's fake, a front end that copies).
//!
//! Both validate the request in the order of the [`protocol`](crate::protocol) table,
//! count it in the [`State`] (served by the answering build, or rejected), and on success
//! write the response. A failed request writes nothing and returns `Information` = 0.
//!
//! Counting happens before a `STATS` or `RESET` response is built, so the counters a
//! request reports include the request itself.
//!
//! IRQL: any (no allocation, no blocking, no pageable code), so the endpoint may run at
//! `DISPATCH_LEVEL` when the framework calls it there.

use driver_proxy::NtStatus;

use crate::{
    ioctl::RequestKind,
    protocol::{
        ProtocolError, REQUEST_HEADER_SIZE, RESPONSE_HEADER_SIZE, ResponseHeader, Validated,
        VersionInfo, response_size, validate_request,
    },
    state::State,
    version::{DriverVersion, THIS_BUILD},
};

/// How a request completes: the NTSTATUS and the number of output bytes written (the IRP's
/// `IoStatus.Information`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Completion status.
    pub status: NtStatus,
    /// Bytes of output written (0 on failure).
    pub information: usize,
}

impl Completion {
    /// A failure with no output.
    #[must_use]
    pub const fn failed(status: NtStatus) -> Self {
        Self {
            status,
            information: 0,
        }
    }
}

/// Serves one request with separate buffers, as [`THIS_BUILD`].
///
/// IRQL: any.
#[must_use]
pub fn dispatch_device_control(
    state: &State,
    code: u32,
    input: &[u8],
    output: &mut [u8],
) -> Completion {
    dispatch_device_control_as(THIS_BUILD, state, code, input, output)
}

/// Serves one request with separate buffers, as `version`.
///
/// IRQL: any.
#[must_use]
pub fn dispatch_device_control_as(
    version: DriverVersion,
    state: &State,
    code: u32,
    input: &[u8],
    output: &mut [u8],
) -> Completion {
    let outcome = validate_request(code, input).and_then(|request| {
        let out = response_buffer(request, output)?;
        if request.kind == RequestKind::Transform {
            let payload = REQUEST_HEADER_SIZE..REQUEST_HEADER_SIZE + request.payload_length;
            let source = input
                .get(payload.clone())
                .ok_or(ProtocolError::BufferLengths)?;
            out.get_mut(payload)
                .ok_or(ProtocolError::BufferLengths)?
                .copy_from_slice(source);
        }
        Ok((request, out))
    });
    complete(version, state, outcome)
}

/// Serves one request in a `METHOD_BUFFERED` system buffer, as [`THIS_BUILD`].
///
/// `system_buffer` is the whole buffer (`max(input_length, output_length)` bytes); the
/// request is its first `input_length` bytes and the response may use its first
/// `output_length` bytes.
///
/// IRQL: any.
#[must_use]
pub fn dispatch_buffered(
    state: &State,
    code: u32,
    system_buffer: &mut [u8],
    input_length: usize,
    output_length: usize,
) -> Completion {
    dispatch_buffered_as(
        THIS_BUILD,
        state,
        code,
        system_buffer,
        input_length,
        output_length,
    )
}

/// Serves one request in a `METHOD_BUFFERED` system buffer, as `version` (see
/// [`dispatch_buffered`]).
///
/// IRQL: any.
#[must_use]
pub fn dispatch_buffered_as(
    version: DriverVersion,
    state: &State,
    code: u32,
    system_buffer: &mut [u8],
    input_length: usize,
    output_length: usize,
) -> Completion {
    let outcome = if input_length > system_buffer.len() || output_length > system_buffer.len() {
        Err(ProtocolError::BufferLengths)
    } else {
        let input = system_buffer.get(..input_length).unwrap_or_default();
        validate_request(code, input).and_then(|request| {
            let output = system_buffer.get_mut(..output_length).unwrap_or_default();
            // The payload is already at REQUEST_HEADER_SIZE == RESPONSE_HEADER_SIZE.
            Ok((request, response_buffer(request, output)?))
        })
    };
    complete(version, state, outcome)
}

/// The first `response_size` bytes of `output`, or row 10 of the status table.
fn response_buffer(request: Validated, output: &mut [u8]) -> Result<&mut [u8], ProtocolError> {
    let needed = response_size(request.kind, request.payload_length);
    let actual = output.len();
    output
        .get_mut(..needed)
        .ok_or(ProtocolError::OutputTooSmall { needed, actual })
}

/// Counts the request and, for a valid one, writes the response into `out`, which is exactly
/// the response's size and (for `TRANSFORM`) holds the payload at the header's end.
fn complete(
    version: DriverVersion,
    state: &State,
    outcome: Result<(Validated, &mut [u8]), ProtocolError>,
) -> Completion {
    let (request, out) = match outcome {
        Ok(valid) => valid,
        Err(error) => {
            state.record_rejected();
            return Completion::failed(error.status());
        }
    };
    // `out` is a whole response, so it holds the header (never taken, kept panic-free).
    let Some((header, payload)) = out.split_at_mut_checked(RESPONSE_HEADER_SIZE) else {
        state.record_rejected();
        return Completion::failed(NtStatus::BUFFER_TOO_SMALL);
    };
    state.record_served(version);
    let written = match request.kind {
        RequestKind::Version => VersionInfo::of(version).write(payload),
        RequestKind::Transform => {
            version.transform_in_place(payload);
            Some(())
        }
        RequestKind::Stats => state.stats().write(payload),
        RequestKind::Reset => state.take_stats().write(payload),
    };
    // `payload` is exactly the response payload, so its length fits the u32 field (at most
    // MAX_TRANSFORM_PAYLOAD for TRANSFORM, a fixed size otherwise).
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let header_written = ResponseHeader::new(request.kind, version, length).write(header);
    match (written, header_written) {
        (Some(()), Some(())) => Completion {
            status: NtStatus::SUCCESS,
            information: out.len(),
        },
        _ => Completion::failed(NtStatus::BUFFER_TOO_SMALL),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;
    use crate::{
        ioctl::{
            IOCTL_HOTSWAP_RESET, IOCTL_HOTSWAP_STATS, IOCTL_HOTSWAP_TRANSFORM,
            IOCTL_HOTSWAP_VERSION,
        },
        protocol::{
            DOCUMENTED_STATUSES, MAX_TRANSFORM_PAYLOAD, Request, ResponseBody, StatsInfo,
            decode_response,
        },
    };

    fn encode(request: &Request<'_>) -> Vec<u8> {
        let mut bytes = vec![0; request.encoded_len()];
        request.encode(&mut bytes).unwrap();
        bytes
    }

    /// Sends `request` with separate buffers and an output of exactly the response size.
    fn call(version: DriverVersion, state: &State, request: &Request<'_>) -> (Completion, Vec<u8>) {
        let mut output = vec![0xCC; request.response_size()];
        let completion = dispatch_device_control_as(
            version,
            state,
            request.control_code(),
            &encode(request),
            &mut output,
        );
        output.truncate(completion.information);
        (completion, output)
    }

    /// Sends `request` in one system buffer as `METHOD_BUFFERED` does.
    fn call_buffered(
        version: DriverVersion,
        state: &State,
        request: &Request<'_>,
        output_length: usize,
    ) -> (Completion, Vec<u8>) {
        let input = encode(request);
        let mut system = vec![0xCC; input.len().max(output_length)];
        system[..input.len()].copy_from_slice(&input);
        let completion = dispatch_buffered_as(
            version,
            state,
            request.control_code(),
            &mut system,
            input.len(),
            output_length,
        );
        system.truncate(completion.information);
        (completion, system)
    }

    #[test]
    fn version_names_the_answering_build() {
        for version in DriverVersion::ALL {
            let state = State::new();
            let (completion, output) = call(version, &state, &Request::Version);
            assert_eq!(
                completion,
                Completion {
                    status: NtStatus::SUCCESS,
                    information: 48
                }
            );
            let response = decode_response(RequestKind::Version, &output).unwrap();
            assert_eq!(response.driver_version, version);
            assert_eq!(
                response.body,
                ResponseBody::Version(VersionInfo::of(version))
            );
        }
    }

    #[test]
    fn transform_differs_between_builds() {
        let state = State::new();
        let input = b"Hello, swap! \xE2\x9C\x93";
        let (_, v1) = call(DriverVersion::V1, &state, &Request::Transform(input));
        let (_, v2) = call(DriverVersion::V2, &state, &Request::Transform(input));
        let v1 = decode_response(RequestKind::Transform, &v1).unwrap();
        let v2 = decode_response(RequestKind::Transform, &v2).unwrap();
        assert_eq!(
            v1.body,
            ResponseBody::Transform(b"HELLO, SWAP! \xE2\x9C\x93")
        );
        assert_eq!(
            v2.body,
            ResponseBody::Transform(b"Uryyb, fjnc! \xE2\x9C\x93")
        );
        assert_eq!(
            (v1.driver_version, v2.driver_version),
            (DriverVersion::V1, DriverVersion::V2)
        );
    }

    #[test]
    fn transform_accepts_empty_and_maximum_payloads() {
        let state = State::new();
        let (completion, output) = call(DriverVersion::V1, &state, &Request::Transform(b""));
        assert_eq!(completion.information, 16);
        assert_eq!(
            decode_response(RequestKind::Transform, &output)
                .unwrap()
                .body,
            ResponseBody::Transform(b"")
        );
        let max = vec![b'q'; MAX_TRANSFORM_PAYLOAD as usize];
        let (completion, output) = call(DriverVersion::V2, &state, &Request::Transform(&max));
        assert_eq!(completion.information, 16 + max.len());
        assert!(output[16..].iter().all(|&b| b == b'd'));
    }

    #[test]
    fn stats_counts_itself_and_reset_zeroes() {
        let state = State::new();
        call(DriverVersion::V1, &state, &Request::Version);
        call(DriverVersion::V1, &state, &Request::Transform(b"x"));
        let mut short = [0u8; 4];
        let rejected = dispatch_device_control_as(
            DriverVersion::V1,
            &state,
            IOCTL_HOTSWAP_VERSION,
            &encode(&Request::Version),
            &mut short,
        );
        assert_eq!(rejected.status, NtStatus::BUFFER_TOO_SMALL);
        call(DriverVersion::V2, &state, &Request::Version);

        let (_, output) = call(DriverVersion::V2, &state, &Request::Stats);
        let ResponseBody::Stats(counters) =
            decode_response(RequestKind::Stats, &output).unwrap().body
        else {
            panic!()
        };
        // v1: VERSION, TRANSFORM; v2: VERSION and this STATS itself; one rejected.
        assert_eq!(
            (
                counters.served,
                counters.served_v1,
                counters.served_v2,
                counters.rejected
            ),
            (4, 2, 2, 1)
        );

        let (_, output) = call(DriverVersion::V2, &state, &Request::Reset);
        let ResponseBody::Reset(before) =
            decode_response(RequestKind::Reset, &output).unwrap().body
        else {
            panic!()
        };
        assert_eq!(
            (before.served, before.served_v2, before.rejected),
            (5, 3, 1)
        );
        assert_eq!(state.stats(), StatsInfo::default());
    }

    #[test]
    fn buffered_dispatch_matches_separate_buffers() {
        let payload: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let requests = [
            Request::Version,
            Request::Transform(&payload),
            Request::Transform(b""),
            Request::Stats,
            Request::Reset,
        ];
        for version in DriverVersion::ALL {
            for request in &requests {
                let (a, b) = (State::new(), State::new());
                let separate = call(version, &a, request);
                // Output buffers both shorter and longer than the input share the system buffer.
                for extra in [0, 100] {
                    let in_place =
                        call_buffered(version, &b, request, request.response_size() + extra);
                    assert_eq!(in_place.0, separate.0, "{request:?}");
                    if !matches!(request, Request::Stats | Request::Reset) {
                        assert_eq!(in_place.1, separate.1, "{request:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_malformed_request_fails_without_output() {
        let good = encode(&Request::Transform(b"abc"));
        let mut bad_magic = good.clone();
        bad_magic[1] ^= 0xFF;
        let mut bad_version = good.clone();
        bad_version[4] = 0;
        let mut bad_length = good.clone();
        bad_length[12] = 4;
        let cases: Vec<(u32, Vec<u8>, usize, NtStatus)> = vec![
            (
                0x0022_0000,
                good.clone(),
                64,
                NtStatus::INVALID_DEVICE_REQUEST,
            ),
            (
                IOCTL_HOTSWAP_TRANSFORM,
                good[..8].to_vec(),
                64,
                NtStatus::BUFFER_TOO_SMALL,
            ),
            (
                IOCTL_HOTSWAP_TRANSFORM,
                bad_magic,
                64,
                NtStatus::INVALID_PARAMETER,
            ),
            (
                IOCTL_HOTSWAP_TRANSFORM,
                bad_version,
                64,
                NtStatus::REVISION_MISMATCH,
            ),
            (
                IOCTL_HOTSWAP_TRANSFORM,
                bad_length,
                64,
                NtStatus::INVALID_PARAMETER,
            ),
            (
                IOCTL_HOTSWAP_STATS,
                good.clone(),
                128,
                NtStatus::INVALID_PARAMETER,
            ),
            (
                IOCTL_HOTSWAP_TRANSFORM,
                good.clone(),
                18,
                NtStatus::BUFFER_TOO_SMALL,
            ),
            (
                IOCTL_HOTSWAP_RESET,
                encode(&Request::Reset),
                79,
                NtStatus::BUFFER_TOO_SMALL,
            ),
            (
                IOCTL_HOTSWAP_VERSION,
                encode(&Request::Version),
                0,
                NtStatus::BUFFER_TOO_SMALL,
            ),
        ];
        let state = State::new();
        for (i, (code, input, output_length, status)) in cases.iter().enumerate() {
            let mut output = vec![0xA5; *output_length];
            let completion =
                dispatch_device_control_as(DriverVersion::V1, &state, *code, input, &mut output);
            assert_eq!(completion, Completion::failed(*status), "case {i}");
            assert!(
                output.iter().all(|&b| b == 0xA5),
                "case {i}: output untouched"
            );
            assert!(DOCUMENTED_STATUSES.contains(status));

            let mut system = vec![0xA5; input.len().max(*output_length)];
            system[..input.len()].copy_from_slice(input);
            let completion = dispatch_buffered_as(
                DriverVersion::V1,
                &state,
                *code,
                &mut system,
                input.len(),
                *output_length,
            );
            assert_eq!(
                completion,
                Completion::failed(*status),
                "case {i} (buffered)"
            );
            assert_eq!(
                &system[..input.len()],
                &input[..],
                "case {i}: system buffer untouched"
            );
        }
        let counters = state.stats();
        assert_eq!(
            (counters.served, counters.rejected),
            (0, 2 * cases.len() as u64)
        );
    }

    #[test]
    fn buffered_dispatch_refuses_lengths_beyond_the_buffer() {
        let state = State::new();
        let mut system = encode(&Request::Version);
        let len = system.len();
        let over_input = dispatch_buffered(&state, IOCTL_HOTSWAP_VERSION, &mut system, len + 1, 48);
        assert_eq!(over_input, Completion::failed(NtStatus::INVALID_PARAMETER));
        let over_output = dispatch_buffered(&state, IOCTL_HOTSWAP_VERSION, &mut system, len, 48);
        assert_eq!(over_output, Completion::failed(NtStatus::INVALID_PARAMETER));
    }

    /// The un-suffixed entry points answer as the build the features select.
    #[test]
    fn default_entry_points_answer_as_this_build() {
        let state = State::new();
        let input = encode(&Request::Transform(b"abc"));
        let mut output = [0u8; 19];
        let completion =
            dispatch_device_control(&state, IOCTL_HOTSWAP_TRANSFORM, &input, &mut output);
        assert_eq!(completion.information, 19);
        let expected: &[u8] = if cfg!(feature = "v2") { b"nop" } else { b"ABC" };
        assert_eq!(&output[16..], expected);
        assert_eq!(output[10..12], THIS_BUILD.raw().to_le_bytes());

        let mut system = input.clone();
        let completion = dispatch_buffered(&state, IOCTL_HOTSWAP_TRANSFORM, &mut system, 19, 19);
        assert_eq!(completion.information, 19);
        assert_eq!(&system[16..], expected);
        assert_eq!(state.stats().served_by(THIS_BUILD), 2);
        assert_eq!(state.stats().served_by(THIS_BUILD.other()), 0);
    }
}
