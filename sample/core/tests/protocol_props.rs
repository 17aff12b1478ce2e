//! Property tests of the protocol: the request decoder, the dispatch routine and the response
//! decoder never panic on arbitrary bytes and either answer a documented NTSTATUS or a valid
//! result; encoding and decoding are inverse.
//!
//! Bounded: a few thousand cases per property (about a second in a debug build).

use hotswap_sample_core::{
    Completion, DriverVersion, NtStatus, RequestKind, Response, ResponseBody, State,
    dispatch_buffered_as, dispatch_device_control_as,
    protocol::{
        DOCUMENTED_STATUSES, MAX_TRANSFORM_PAYLOAD, Request, decode_request, decode_response,
        response_size,
    },
};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Mostly the sample's four codes, sometimes any 32-bit value.
fn control_code() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => prop::sample::select(RequestKind::ALL.map(RequestKind::control_code).to_vec()),
        1 => any::<u32>(),
    ]
}

fn version() -> impl Strategy<Value = DriverVersion> {
    prop::sample::select(DriverVersion::ALL.to_vec())
}

/// A request kind and a payload that is valid for it.
fn valid_request() -> impl Strategy<Value = (RequestKind, Vec<u8>)> {
    prop_oneof![
        Just((RequestKind::Version, Vec::new())),
        Just((RequestKind::Stats, Vec::new())),
        Just((RequestKind::Reset, Vec::new())),
        prop::collection::vec(any::<u8>(), 0..=MAX_TRANSFORM_PAYLOAD as usize)
            .prop_map(|payload| (RequestKind::Transform, payload)),
    ]
}

fn request_of(kind: RequestKind, payload: &[u8]) -> Request<'_> {
    match kind {
        RequestKind::Version => Request::Version,
        RequestKind::Transform => Request::Transform(payload),
        RequestKind::Stats => Request::Stats,
        RequestKind::Reset => Request::Reset,
    }
}

fn encode(request: &Request<'_>) -> Vec<u8> {
    let mut bytes = vec![0; request.encoded_len()];
    request.encode(&mut bytes).unwrap();
    bytes
}

/// Input bytes: random, or a valid request with a few bytes overwritten, cut or extended, so
/// that the decoder's later checks are reached as well as its first ones.
fn input_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Each kind of damage is absent three times in four, so about 40% stay valid.
    let patch = (any::<prop::sample::Index>(), any::<u8>());
    let patches = prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(patch, 1..4)];
    let cut = prop_oneof![3 => Just(0usize), 1 => 1usize..3];
    let extra = prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..3)];
    let mutated = (valid_request(), patches, cut, extra).prop_map(
        |((kind, payload), patches, cut, extra)| {
            let mut bytes = encode(&request_of(kind, &payload));
            for (index, value) in patches {
                // Patches land in the 16-byte header more often than not.
                let limit = if value % 2 == 0 { 16 } else { bytes.len() };
                let at = index.index(limit);
                bytes[at] = value;
            }
            bytes.truncate(bytes.len() - cut.min(bytes.len()));
            bytes.extend(extra);
            bytes
        },
    );
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        3 => mutated,
    ]
}

fn output_length() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..100,
        Just(response_size(RequestKind::Stats, 0)),
        0usize..=(16 + MAX_TRANSFORM_PAYLOAD as usize + 8)
    ]
}

fn is_documented(status: NtStatus) -> bool {
    DOCUMENTED_STATUSES.contains(&status)
}

proptest! {
    #![proptest_config(config(4096))]

    /// The decoder never panics; what it accepts re-encodes to exactly the input, and what it
    /// refuses gets a documented status.
    #[test]
    fn decoder_accepts_exactly_valid_requests(code in control_code(), input in input_bytes()) {
        match decode_request(code, &input) {
            Ok(request) => {
                prop_assert_eq!(request.control_code(), code);
                prop_assert_eq!(encode(&request), input);
            }
            Err(error) => prop_assert!(is_documented(error.status()), "{error:?}"),
        }
    }

    /// Every valid request survives encode → decode unchanged.
    #[test]
    fn requests_round_trip((kind, payload) in valid_request()) {
        let request = request_of(kind, &payload);
        let bytes = encode(&request);
        prop_assert_eq!(bytes.len(), 16 + payload.len());
        prop_assert_eq!(decode_request(kind.control_code(), &bytes), Ok(request));
    }

    /// The response decoder never panics on arbitrary bytes.
    #[test]
    fn response_decoder_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
        kind in prop::sample::select(RequestKind::ALL.to_vec()),
    ) {
        if let Ok(response) = decode_response(kind, &bytes) {
            let mut again = vec![0; response.encoded_len()];
            prop_assert_eq!(response.encode(&mut again), Ok(bytes.len()));
            prop_assert_eq!(again, bytes);
        }
    }
}

proptest! {
    #![proptest_config(config(2048))]

    /// Dispatch on arbitrary input never panics: it fails with a documented status and writes
    /// nothing, or succeeds with a response that decodes and answers the request; the
    /// in-place METHOD_BUFFERED path agrees with the separate-buffer path byte for byte.
    #[test]
    fn dispatch_answers_or_fails_documented(
        version in version(),
        code in control_code(),
        input in input_bytes(),
        output_len in output_length(),
    ) {
        let state = State::new();
        let mut output = vec![0xA5; output_len];
        let completion = dispatch_device_control_as(version, &state, code, &input, &mut output);

        let buffered_state = State::new();
        let mut system = vec![0xA5; input.len().max(output_len)];
        system[..input.len()].copy_from_slice(&input);
        let in_place = dispatch_buffered_as(
            version, &buffered_state, code, &mut system, input.len(), output_len,
        );
        prop_assert_eq!(in_place, completion);
        let written = completion.information;
        prop_assert_eq!(&system[..written], &output[..written]);

        // RESET zeroes the counters after reporting them (itself included).
        let counters = match decode_response(RequestKind::Reset, &output[..written]) {
            Ok(Response { body: ResponseBody::Reset(before), .. }) => {
                prop_assert_eq!(state.stats().served, 0);
                before
            }
            _ => state.stats(),
        };
        prop_assert_eq!(counters.served + counters.rejected, 1);
        if completion.status == NtStatus::SUCCESS {
            prop_assert_eq!(counters.served_by(version), 1);
            let request = decode_request(code, &input).expect("served an invalid request");
            prop_assert_eq!(written, request.response_size());
            let response = decode_response(request.kind(), &output[..written]);
            let Ok(Response { driver_version, body }) = response else {
                return Err(TestCaseError::fail(format!("bad response: {response:?}")));
            };
            prop_assert_eq!(driver_version, version);
            if let (Request::Transform(payload), ResponseBody::Transform(answer)) = (request, body) {
                let expected: Vec<u8> =
                    payload.iter().map(|&b| version.transform_byte(b)).collect();
                prop_assert_eq!(answer, &expected[..]);
            }
        } else {
            prop_assert_eq!(completion, Completion::failed(completion.status));
            prop_assert!(is_documented(completion.status), "{}", completion.status);
            prop_assert!(output.iter().all(|&b| b == 0xA5), "a failed request wrote output");
            prop_assert_eq!(counters.rejected, 1);
        }
    }
}
