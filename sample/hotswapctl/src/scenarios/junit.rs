//! The scenarios' reports as `JUnit` XML, written with `quick-junit`: one `<testsuite>`,
//! `hotswapctl.scenarios`, with the lab in a property and one `<testcase>` per scenario.
//!
//! | scenario | test case |
//! |---|---|
//! | passed | no child element; `system-out` lists every criterion (`PASS name: detail`) and measurement |
//! | failed | `<failure>`: `message` names the first failed criterion and how many others failed, `type` is that criterion's name, the text lists every failed criterion; `system-out` as above |
//! | skipped | `<skipped>` with the reason as `message` |
//! | ran, but checked no criterion | `<failure>` of `type` `no-criterion` |
//!
//! Times are in seconds (`time` of each case, the suite's and the document's: their sum).
//! `quick-junit` escapes the text and drops the characters XML does not allow.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::ScenarioReport;

/// The name of the document, its suite and every case's class.
pub const SUITE: &str = "hotswapctl.scenarios";

/// The `JUnit` report of `reports`, run against the lab `lab_description` (module table).
#[must_use]
pub fn junit_report(reports: &[ScenarioReport], lab_description: &str) -> Report {
    let mut suite = TestSuite::new(SUITE);
    suite.add_property(Property::new("lab", lab_description));
    suite.add_test_cases(reports.iter().map(test_case));
    let total: Duration = reports.iter().map(|report| report.elapsed).sum();
    suite.set_time(total);
    let mut report = Report::new(SUITE);
    report.set_time(total);
    report.add_test_suite(suite);
    report
}

/// One scenario's test case.
fn test_case(report: &ScenarioReport) -> TestCase {
    let status = if let Some(why) = &report.skipped {
        let mut skipped = TestCaseStatus::skipped();
        skipped.set_message(why.as_str());
        skipped
    } else if let Some(message) = report.failure_message() {
        let mut failure = TestCaseStatus::non_success(NonSuccessKind::Failure);
        failure
            .set_message(message)
            .set_type(report.failures().next().map_or("no-criterion", |c| c.name));
        let failed: Vec<String> = report
            .failures()
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if !failed.is_empty() {
            failure.set_description(failed.join("\n"));
        }
        failure
    } else {
        TestCaseStatus::success()
    };
    let mut case = TestCase::new(report.scenario.name(), status);
    case.set_classname(SUITE).set_time(report.elapsed);
    let details = report.details();
    if !details.is_empty() {
        case.set_system_out(details);
    }
    case
}

/// The document as text.
///
/// # Errors
/// `quick-junit`'s serialisation error (an I/O error of its in-memory writer: not expected).
pub fn to_xml(report: &Report) -> Result<String, quick_junit::SerializeError> {
    report.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::{Criterion, Scenario};

    fn criterion(name: &'static str, passed: bool, detail: &str) -> Criterion {
        Criterion {
            name,
            passed,
            detail: detail.to_owned(),
        }
    }

    fn reports() -> Vec<ScenarioReport> {
        vec![
            ScenarioReport {
                scenario: Scenario::Smoke,
                criteria: vec![criterion("version-consistent", true, "1 < 2")],
                measurements: vec!["requests: 7".into()],
                skipped: None,
                elapsed: Duration::from_millis(1250),
            },
            ScenarioReport {
                scenario: Scenario::SwapStress,
                criteria: vec![
                    criterion("no-errors", true, "0"),
                    criterion("served-counter-carried-over", false, "3 LOST & more"),
                    criterion("swap-count", false, "<none>"),
                ],
                measurements: Vec::new(),
                skipped: None,
                elapsed: Duration::from_millis(3),
            },
            ScenarioReport {
                scenario: Scenario::DisableEnable,
                criteria: Vec::new(),
                measurements: Vec::new(),
                skipped: Some("no 'disable' command".into()),
                elapsed: Duration::ZERO,
            },
            ScenarioReport {
                scenario: Scenario::UnloadReload,
                criteria: Vec::new(),
                measurements: Vec::new(),
                skipped: None,
                elapsed: Duration::ZERO,
            },
        ]
    }

    #[test]
    fn one_suite_with_the_lab_and_a_case_per_scenario() {
        let report = junit_report(&reports(), "fake \"not a driver\"");
        assert_eq!(
            (report.tests, report.failures, report.skipped, report.errors),
            (4, 2, 1, 0)
        );
        let [suite] = report.test_suites.as_slice() else {
            panic!("one suite")
        };
        assert_eq!(suite.name.as_str(), SUITE);
        assert_eq!(suite.properties[0].value.as_str(), "fake \"not a driver\"");
        assert_eq!(suite.time, Some(Duration::from_millis(1253)));
        let names: Vec<&str> = suite.test_cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["smoke", "swap-stress", "disable-enable", "unload-reload"]
        );
        let [smoke, stress, skipped, empty] = suite.test_cases.as_slice() else {
            panic!("four cases")
        };
        assert!(matches!(smoke.status, TestCaseStatus::Success { .. }));
        assert_eq!(
            smoke
                .system_out
                .as_ref()
                .map(quick_junit::XmlString::as_str),
            Some("PASS version-consistent: 1 < 2\n  requests: 7\n")
        );
        let TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Failure,
            message: Some(message),
            ty: Some(ty),
            description: Some(description),
            ..
        } = &stress.status
        else {
            panic!("{:?}", stress.status)
        };
        assert_eq!(
            message.as_str(),
            "criterion served-counter-carried-over failed: 3 LOST & more (and 1 other criteria)"
        );
        assert_eq!(ty.as_str(), "served-counter-carried-over");
        assert_eq!(
            description.as_str(),
            "served-counter-carried-over: 3 LOST & more\nswap-count: <none>"
        );
        let TestCaseStatus::Skipped {
            message: Some(why), ..
        } = &skipped.status
        else {
            panic!("{:?}", skipped.status)
        };
        assert_eq!(why.as_str(), "no 'disable' command");
        assert!(skipped.system_out.is_none(), "nothing to say");
        let TestCaseStatus::NonSuccess { ty: Some(ty), .. } = &empty.status else {
            panic!("{:?}", empty.status)
        };
        assert_eq!(ty.as_str(), "no-criterion");
    }

    /// What the VM suite's consumers read: the counts, the escaped failure message and type,
    /// the skip, the output, in a document a parser reads back (quick-junit's own reader).
    #[test]
    fn the_document_reads_back_as_written() {
        let report = junit_report(&reports(), "fake <lab> & co");
        let xml = to_xml(&report).unwrap();
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{xml}"
        );
        for expected in [
            r#"tests="4""#,
            r#"failures="2""#,
            r#"skipped="1""#,
            r#"errors="0""#,
            r#"<property name="lab" value="fake &lt;lab&gt; &amp; co"/>"#,
            r#"<testcase name="swap-stress" classname="hotswapctl.scenarios" time="0.003">"#,
            r#"message="criterion served-counter-carried-over failed: 3 LOST &amp; more (and 1 other criteria)""#,
            r#"type="served-counter-carried-over""#,
            r#"<skipped message="no &apos;disable&apos; command"/>"#,
        ] {
            assert!(xml.contains(expected), "{expected} not in:\n{xml}");
        }
        assert_eq!(xml.matches("<testcase ").count(), 4);
        let read = Report::deserialize_from_str(&xml).unwrap();
        assert_eq!(
            (read.tests, read.failures, read.skipped, read.errors),
            (4, 2, 1, 0)
        );
        let (written, back) = (&report.test_suites[0], &read.test_suites[0]);
        assert_eq!(back.properties, written.properties);
        assert_eq!(back.test_cases.len(), written.test_cases.len());
        for (w, b) in written.test_cases.iter().zip(&back.test_cases) {
            assert_eq!(
                (&b.name, &b.classname, &b.status),
                (&w.name, &w.classname, &w.status)
            );
            // The reader trims the text's last line break.
            let out = |case: &TestCase| {
                case.system_out
                    .as_ref()
                    .map(|out| out.as_str().trim_end().to_owned())
            };
            assert_eq!(out(b), out(w));
            // Times in milliseconds, as written.
            let millis = |time: Option<Duration>| time.map(|t| (t.as_secs_f64() * 1e3).round());
            assert_eq!(millis(b.time), millis(w.time));
        }
    }
}
