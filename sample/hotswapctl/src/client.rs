//! Typed requests over any [`Backend`]: encode, send, check the status, decode.

use std::fmt;

use hotswap_sample_core::{
    DriverVersion, NtStatus, ProtocolError, Request, ResponseBody, StatsInfo, VersionInfo,
    protocol::decode_response,
};

use crate::backend::{Backend, BackendError};

/// Why a request did not produce an answer.
#[derive(Debug)]
pub enum ClientError {
    /// It could not be delivered.
    Backend(BackendError),
    /// The driver failed it with this status.
    Status(NtStatus),
    /// The request was refused before sending (for instance a payload above the maximum).
    Request(ProtocolError),
    /// The driver's answer is malformed.
    Protocol(ProtocolError),
}

impl ClientError {
    /// The driver's failure status, if that is what this is.
    #[must_use]
    pub fn status(&self) -> Option<NtStatus> {
        match self {
            Self::Status(status) => Some(*status),
            Self::Backend(_) | Self::Request(_) | Self::Protocol(_) => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backend(error) => error.fmt(f),
            Self::Status(status) => write!(f, "the driver failed the request: {status}"),
            Self::Request(error) => write!(f, "invalid request: {error}"),
            Self::Protocol(error) => write!(f, "malformed response: {error}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(error) => Some(error),
            Self::Request(error) | Self::Protocol(error) => Some(error),
            Self::Status(_) => None,
        }
    }
}

impl From<BackendError> for ClientError {
    fn from(error: BackendError) -> Self {
        Self::Backend(error)
    }
}

impl From<ProtocolError> for ClientError {
    fn from(error: ProtocolError) -> Self {
        Self::Protocol(error)
    }
}

/// An answer and the build that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<T> {
    /// The answering build (the response header's `driver_version`).
    pub driver_version: DriverVersion,
    /// The answer.
    pub value: T,
}

/// The sample's requests over a backend.
#[derive(Debug)]
pub struct Client<B> {
    backend: B,
}

impl<B: Backend> Client<B> {
    /// A client sending through `backend`.
    pub fn new(backend: B) -> Self {
        Self { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, to send raw requests on the same connection.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Sends `request` and hands the decoded response to `take`.
    ///
    /// # Errors
    /// [`ClientError::Request`] if it cannot be encoded; [`ClientError::Backend`] if it could
    /// not be sent; [`ClientError::Status`] if the driver failed it;
    /// [`ClientError::Protocol`] if the response does not decode as the answer to `request`.
    pub fn call<T>(
        &mut self,
        request: &Request<'_>,
        take: impl FnOnce(ResponseBody<'_>) -> Option<T>,
    ) -> Result<Reply<T>, ClientError> {
        let mut input = vec![0; request.encoded_len()];
        request.encode(&mut input).map_err(ClientError::Request)?;
        let mut output = vec![0; request.response_size()];
        let completion =
            self.backend
                .device_control(request.control_code(), &input, &mut output)?;
        if !completion.status.is_success() {
            return Err(ClientError::Status(completion.status));
        }
        let written =
            output
                .get(..completion.information)
                .ok_or(ProtocolError::LengthMismatch {
                    declared: completion.information as u64,
                    actual: output.len(),
                })?;
        let response = decode_response(request.kind(), written)?;
        let value = take(response.body).ok_or(ProtocolError::BadField("response body"))?;
        Ok(Reply {
            driver_version: response.driver_version,
            value,
        })
    }

    /// `VERSION`.
    ///
    /// # Errors
    /// As [`Self::call`].
    pub fn version(&mut self) -> Result<Reply<VersionInfo>, ClientError> {
        self.call(&Request::Version, |body| match body {
            ResponseBody::Version(info) => Some(info),
            _ => None,
        })
    }

    /// `TRANSFORM` of `payload`.
    ///
    /// # Errors
    /// As [`Self::call`]; a payload above the protocol maximum is refused before sending
    /// ([`ClientError::Request`] with [`ProtocolError::PayloadTooLarge`]), and an answer of
    /// another length than the payload is [`ProtocolError::LengthMismatch`].
    pub fn transform(&mut self, payload: &[u8]) -> Result<Reply<Vec<u8>>, ClientError> {
        let reply = self.call(&Request::Transform(payload), |body| match body {
            ResponseBody::Transform(bytes) => Some(bytes.to_vec()),
            _ => None,
        })?;
        if reply.value.len() != payload.len() {
            return Err(ProtocolError::LengthMismatch {
                declared: payload.len() as u64,
                actual: reply.value.len(),
            }
            .into());
        }
        Ok(reply)
    }

    /// `STATS`.
    ///
    /// # Errors
    /// As [`Self::call`].
    pub fn stats(&mut self) -> Result<Reply<StatsInfo>, ClientError> {
        self.call(&Request::Stats, |body| match body {
            ResponseBody::Stats(stats) => Some(stats),
            _ => None,
        })
    }

    /// `RESET`: the counters just before the driver zeroed them.
    ///
    /// # Errors
    /// As [`Self::call`].
    pub fn reset(&mut self) -> Result<Reply<StatsInfo>, ClientError> {
        self.call(&Request::Reset, |body| match body {
            ResponseBody::Reset(stats) => Some(stats),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use hotswap_sample_core::{
        Completion, IOCTL_HOTSWAP_TRANSFORM, RequestKind,
        protocol::{MAX_TRANSFORM_PAYLOAD, ResponseHeader},
    };

    use super::*;
    use crate::fake::FakeDevice;

    /// A backend that answers with a closure and counts its calls.
    struct Scripted<F> {
        answer: F,
        calls: usize,
    }

    impl<F> Backend for Scripted<F>
    where
        F: FnMut(u32, &[u8], &mut [u8]) -> Completion + Send,
    {
        fn device_control(
            &mut self,
            code: u32,
            input: &[u8],
            output: &mut [u8],
        ) -> Result<Completion, BackendError> {
            self.calls += 1;
            Ok((self.answer)(code, input, output))
        }

        fn describe(&self) -> String {
            "scripted".to_owned()
        }
    }

    fn scripted<F>(answer: F) -> Client<Scripted<F>>
    where
        F: FnMut(u32, &[u8], &mut [u8]) -> Completion + Send,
    {
        Client::new(Scripted { answer, calls: 0 })
    }

    #[test]
    fn typed_calls_decode_the_answers() {
        let device = FakeDevice::new(DriverVersion::V2);
        let mut client = Client::new(device.connect());
        let version = client.version().unwrap();
        assert_eq!(version.driver_version, DriverVersion::V2);
        assert_eq!(version.value.build_tag_str(), Some("hotswap v2"));
        assert_eq!(client.transform(b"Az").unwrap().value, b"Nm");
        assert_eq!(client.stats().unwrap().value.served, 3);
        assert_eq!(client.reset().unwrap().value.served, 4);
        assert_eq!(client.stats().unwrap().value.served, 1);
    }

    #[test]
    fn a_failed_request_is_its_status() {
        let mut client = scripted(|_, _, _| Completion::failed(NtStatus::INVALID_DEVICE_REQUEST));
        let error = client.version().unwrap_err();
        assert_eq!(error.status(), Some(NtStatus::INVALID_DEVICE_REQUEST));
        assert!(
            error.to_string().contains("STATUS_INVALID_DEVICE_REQUEST"),
            "{error}"
        );
    }

    #[test]
    fn an_oversized_payload_is_refused_before_sending() {
        let mut client = scripted(|_, _, _| unreachable!("nothing may be sent"));
        let payload = vec![0; MAX_TRANSFORM_PAYLOAD as usize + 1];
        let error = client.transform(&payload).unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Request(ProtocolError::PayloadTooLarge { .. })
            ),
            "{error}"
        );
        assert_eq!(client.backend().calls, 0);
    }

    #[test]
    fn malformed_answers_are_protocol_errors() {
        // Claims more bytes than the buffer holds.
        let mut client = scripted(|_, _, output: &mut [u8]| Completion {
            status: NtStatus::SUCCESS,
            information: output.len() + 1,
        });
        assert!(matches!(
            client.stats(),
            Err(ClientError::Protocol(ProtocolError::LengthMismatch { .. }))
        ));

        // Answers as if it were another request.
        let mut client = scripted(|_, _, output: &mut [u8]| {
            ResponseHeader::new(RequestKind::Transform, DriverVersion::V1, 0)
                .write(output)
                .unwrap();
            Completion {
                status: NtStatus::SUCCESS,
                information: 16,
            }
        });
        let error = client.version().unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Protocol(ProtocolError::RequestMismatch { .. })
            ),
            "{error}"
        );
        assert!(
            error.to_string().starts_with("malformed response"),
            "{error}"
        );

        // A TRANSFORM answer shorter than the payload.
        let mut client = scripted(|code, _, output: &mut [u8]| {
            assert_eq!(code, IOCTL_HOTSWAP_TRANSFORM);
            ResponseHeader::new(RequestKind::Transform, DriverVersion::V1, 2)
                .write(output)
                .unwrap();
            Completion {
                status: NtStatus::SUCCESS,
                information: 18,
            }
        });
        let error = client.transform(b"abc").unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::Protocol(ProtocolError::LengthMismatch {
                    declared: 3,
                    actual: 2
                })
            ),
            "{error}"
        );
    }
}
