//! `hotswapctl malformed`: sends every request of the core's table of malformed requests
//! ([`hotswap_sample_core::malformed::MALFORMED_REQUESTS`], one or more per row of the
//! protocol's status table) and checks that the driver refuses each with its documented
//! NTSTATUS, writes nothing, and counts it as rejected.
//!
//! On one connection: `STATS`, every malformed request, `STATS`. Criteria:
//!
//! * each request completes with the status of its row, with `Information` = 0;
//! * the `rejected` counter grew by exactly the number of requests sent;
//! * the `served` counter grew by exactly 1 (the second `STATS`): no malformed request was
//!   served.
//!
//! Nothing else may use the device meanwhile (the counters are compared exactly).

use std::fmt;

use hotswap_sample_core::{
    Completion, StatsInfo,
    malformed::{MALFORMED_REQUESTS, MalformedRequest},
};

use crate::{
    backend::{Backend, BackendError},
    client::{Client, ClientError},
};

/// How the driver answered one malformed request.
#[derive(Debug)]
pub struct Answer {
    /// The request sent.
    pub request: &'static MalformedRequest,
    /// How it completed, or why it could not be delivered.
    pub completion: Result<Completion, String>,
}

impl Answer {
    /// Completed with the documented status and wrote nothing.
    #[must_use]
    pub fn as_documented(&self) -> bool {
        self.completion
            .as_ref()
            .is_ok_and(|c| *c == Completion::failed(self.request.status()))
    }
}

/// What `malformed` found.
#[derive(Debug)]
pub struct MalformedReport {
    /// One answer per request of the table, in its order.
    pub answers: Vec<Answer>,
    /// The counters before.
    pub before: StatsInfo,
    /// The counters after (read by the last `STATS`, which counts itself).
    pub after: StatsInfo,
}

impl MalformedReport {
    /// Requests sent.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.answers.len() as u64
    }

    /// Requests answered with their documented status.
    #[must_use]
    pub fn as_documented(&self) -> u64 {
        self.answers.iter().filter(|a| a.as_documented()).count() as u64
    }

    /// Growth of the `rejected` counter (`None`: it went back).
    #[must_use]
    pub fn rejected_delta(&self) -> Option<u64> {
        self.after.rejected.checked_sub(self.before.rejected)
    }

    /// Growth of the `served` counter (`None`: it went back).
    #[must_use]
    pub fn served_delta(&self) -> Option<u64> {
        self.after.served.checked_sub(self.before.served)
    }

    /// Every status as documented, every request counted as rejected, none served.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.as_documented() == self.sent()
            && self.rejected_delta() == Some(self.sent())
            && self.served_delta() == Some(1)
    }
}

impl fmt::Display for MalformedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for answer in &self.answers {
            let request = answer.request;
            let got = match &answer.completion {
                Ok(c) if c.information == 0 => c.status.to_string(),
                Ok(c) => format!("{} with {} bytes written", c.status, c.information),
                Err(error) => format!("not delivered: {error}"),
            };
            if answer.as_documented() {
                writeln!(f, "  ok    row {:2} {}: {got}", request.row, request.what)?;
            } else {
                writeln!(
                    f,
                    "  WRONG row {:2} {}: {got}, documented: {}",
                    request.row,
                    request.what,
                    request.status()
                )?;
            }
        }
        let delta = |d: Option<u64>| d.map_or_else(|| "went back".to_owned(), |d| format!("+{d}"));
        writeln!(
            f,
            "{} malformed requests, {} answered with their documented status",
            self.sent(),
            self.as_documented()
        )?;
        writeln!(
            f,
            "  rejected counter: {} (expected +{})",
            delta(self.rejected_delta()),
            self.sent()
        )?;
        writeln!(
            f,
            "  served counter: {} (expected +1, the last STATS)",
            delta(self.served_delta())
        )?;
        write!(f, "{}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

/// Sends `STATS`, every malformed request, `STATS` on `client`'s connection.
///
/// # Errors
/// [`ClientError`] when a `STATS` fails (the malformed requests' own failures are the
/// report's).
pub fn run<B: Backend>(client: &mut Client<B>) -> Result<MalformedReport, ClientError> {
    let before = client.stats()?.value;
    let answers = MALFORMED_REQUESTS
        .iter()
        .map(|request| {
            let mut output = vec![0; request.output_length];
            let completion = client
                .backend_mut()
                .device_control(request.code, request.input(), &mut output)
                .map_err(|error: BackendError| error.to_string());
            Answer {
                request,
                completion,
            }
        })
        .collect();
    let after = client.stats()?.value;
    Ok(MalformedReport {
        answers,
        before,
        after,
    })
}

#[cfg(test)]
mod tests {
    use hotswap_sample_core::{DriverVersion, NtStatus};

    use super::*;
    use crate::fake::FakeDevice;

    #[test]
    fn the_fake_refuses_every_entry_as_documented() {
        let device = FakeDevice::new(DriverVersion::V1);
        let report = run(&mut Client::new(device.connect())).unwrap();
        assert_eq!(report.sent(), MALFORMED_REQUESTS.len() as u64);
        assert!(report.passed(), "{report}");
        assert!(report.to_string().ends_with("PASS"));
    }

    /// A backend that serves everything the fake serves, but answers one code wrongly.
    struct WrongStatus<B>(B);

    impl<B: Backend> Backend for WrongStatus<B> {
        fn device_control(
            &mut self,
            code: u32,
            input: &[u8],
            output: &mut [u8],
        ) -> Result<Completion, BackendError> {
            if code == 0x0022_2000 {
                return Ok(Completion::failed(NtStatus::INVALID_PARAMETER));
            }
            self.0.device_control(code, input, output)
        }

        fn describe(&self) -> String {
            "wrong".to_owned()
        }
    }

    #[test]
    fn a_wrong_status_fails_and_is_named() {
        let device = FakeDevice::new(DriverVersion::V1);
        let report = run(&mut Client::new(WrongStatus(device.connect()))).unwrap();
        assert!(!report.passed());
        assert_eq!(report.as_documented(), report.sent() - 1);
        let text = report.to_string();
        assert!(
            text.contains(
                "WRONG row  1 control code of another device type: STATUS_INVALID_PARAMETER (0xC000000D), documented: STATUS_INVALID_DEVICE_REQUEST"
            ),
            "{text}"
        );
        assert!(text.ends_with("FAIL"));
    }
}
