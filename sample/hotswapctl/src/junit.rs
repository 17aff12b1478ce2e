//! A small `JUnit` XML writer: one `<testsuite>` of `<testcase>`s, each passed, failed or
//! skipped, with `system-out`.
//!
//! Written here rather than taken from a crate: the format needed is a handful of elements
//! (the common subset Jenkins, GitLab, Azure Pipelines and the HLK-style consumers read), and
//! the only subtle part, escaping, is tested below. A crate such as `quick-junit` would add
//! an XML writer and several dependencies to a client that otherwise needs none of them.
//!
//! Escaping: `&`, `<`, `>`, `"` and `'` become entities everywhere (text and attributes);
//! characters XML 1.0 does not allow at all (control characters other than tab, line feed
//! and carriage return; U+FFFE, U+FFFF) become U+FFFD; in attributes, tab, line feed and
//! carriage return become character references so that they survive attribute-value
//! normalisation.

use std::{fmt::Write as _, time::Duration};

/// How a test case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestOutcome {
    /// It passed.
    Passed,
    /// It failed: `message` (one line) and `kind` go into attributes, `detail` into the
    /// element's text.
    Failed {
        /// What failed, in one line.
        message: String,
        /// The failure's type (the failed criterion's name).
        kind: String,
        /// Everything that failed, one item a line.
        detail: String,
    },
    /// It did not run.
    Skipped {
        /// Why.
        message: String,
    },
}

/// One `<testcase>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCase {
    /// `name`.
    pub name: String,
    /// `classname`.
    pub classname: String,
    /// `time`, written in seconds.
    pub time: Duration,
    /// The outcome.
    pub outcome: TestOutcome,
    /// `<system-out>` (omitted when empty).
    pub system_out: String,
}

/// One `<testsuite>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestSuite {
    /// `name`.
    pub name: String,
    /// `<properties>`: name, value.
    pub properties: Vec<(String, String)>,
    /// The test cases.
    pub cases: Vec<TestCase>,
}

impl TestSuite {
    /// Test cases that failed.
    #[must_use]
    pub fn failures(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, TestOutcome::Failed { .. }))
            .count()
    }

    /// Test cases that were skipped.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, TestOutcome::Skipped { .. }))
            .count()
    }

    /// The document: `<testsuites>` around this one suite.
    #[must_use]
    pub fn to_xml(&self) -> String {
        let total: Duration = self.cases.iter().map(|c| c.time).sum();
        let counts = format!(
            r#"tests="{}" failures="{}" errors="0" skipped="{}" time="{}""#,
            self.cases.len(),
            self.failures(),
            self.skipped(),
            seconds(total)
        );
        let name = escape_attribute(&self.name);
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(xml, r#"<testsuites name="{name}" {counts}>"#);
        let _ = writeln!(xml, r#"  <testsuite name="{name}" {counts}>"#);
        if !self.properties.is_empty() {
            xml.push_str("    <properties>\n");
            for (key, value) in &self.properties {
                let _ = writeln!(
                    xml,
                    r#"      <property name="{}" value="{}"/>"#,
                    escape_attribute(key),
                    escape_attribute(value)
                );
            }
            xml.push_str("    </properties>\n");
        }
        for case in &self.cases {
            let _ = write!(
                xml,
                r#"    <testcase name="{}" classname="{}" time="{}">"#,
                escape_attribute(&case.name),
                escape_attribute(&case.classname),
                seconds(case.time)
            );
            xml.push('\n');
            match &case.outcome {
                TestOutcome::Passed => {}
                TestOutcome::Failed {
                    message,
                    kind,
                    detail,
                } => {
                    let _ = writeln!(
                        xml,
                        r#"      <failure message="{}" type="{}">{}</failure>"#,
                        escape_attribute(message),
                        escape_attribute(kind),
                        escape_text(detail)
                    );
                }
                TestOutcome::Skipped { message } => {
                    let _ = writeln!(
                        xml,
                        r#"      <skipped message="{}"/>"#,
                        escape_attribute(message)
                    );
                }
            }
            if !case.system_out.is_empty() {
                let _ = writeln!(
                    xml,
                    "      <system-out>{}</system-out>",
                    escape_text(&case.system_out)
                );
            }
            xml.push_str("    </testcase>\n");
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }
}

/// `duration` in seconds with millisecond precision (`1.250`).
fn seconds(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64())
}

/// Whether XML 1.0 allows `c` in a document at all.
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r')
        || matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' if attribute => out.push_str("&#13;"),
            // A carriage return in text would be normalised away by a parser.
            '\r' => out.push_str("&#13;"),
            c if allowed_in_xml(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// `text` escaped for element content.
#[must_use]
pub fn escape_text(text: &str) -> String {
    escape(text, false)
}

/// `text` escaped for an attribute value in double quotes.
#[must_use]
pub fn escape_attribute(text: &str) -> String {
    escape(text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            escape_text(r#"a<b>&"c"'d'"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape_text("line\nnext\ttab"), "line\nnext\ttab");
        assert_eq!(
            escape_attribute("line\nnext\ttab\r"),
            "line&#10;next&#9;tab&#13;"
        );
        assert_eq!(escape_text("cr\r"), "cr&#13;");
    }

    #[test]
    fn characters_xml_forbids_are_replaced() {
        assert_eq!(
            escape_text("nul\0 esc\u{1b} ok"),
            "nul\u{FFFD} esc\u{FFFD} ok"
        );
        assert_eq!(escape_text("\u{FFFE}\u{FFFF}"), "\u{FFFD}\u{FFFD}");
        assert_eq!(escape_text("é → 𝄞"), "é → 𝄞");
    }

    fn suite() -> TestSuite {
        TestSuite {
            name: "s<1>".into(),
            properties: vec![("lab".into(), "fake \"not a driver\"".into())],
            cases: vec![
                TestCase {
                    name: "ok".into(),
                    classname: "c".into(),
                    time: Duration::from_millis(1250),
                    outcome: TestOutcome::Passed,
                    system_out: "PASS x: 1 < 2\n".into(),
                },
                TestCase {
                    name: "bad".into(),
                    classname: "c".into(),
                    time: Duration::from_millis(3),
                    outcome: TestOutcome::Failed {
                        message: "criterion a failed: 3 LOST & more".into(),
                        kind: "a".into(),
                        detail: "a: 3 LOST\nb: <none>".into(),
                    },
                    system_out: String::new(),
                },
                TestCase {
                    name: "skip".into(),
                    classname: "c".into(),
                    time: Duration::ZERO,
                    outcome: TestOutcome::Skipped {
                        message: "no 'disable' command".into(),
                    },
                    system_out: String::new(),
                },
            ],
        }
    }

    #[test]
    fn a_suite_is_written_with_counts_outcomes_and_output() {
        let xml = suite().to_xml();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"s&lt;1&gt;\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"1.253\">\n"), "{xml}");
        assert!(xml.contains(r#"<property name="lab" value="fake &quot;not a driver&quot;"/>"#));
        assert!(xml.contains(
            r#"<testcase name="ok" classname="c" time="1.250">
      <system-out>PASS x: 1 &lt; 2
</system-out>
    </testcase>"#
        ));
        assert!(xml.contains(
            r#"<failure message="criterion a failed: 3 LOST &amp; more" type="a">a: 3 LOST
b: &lt;none&gt;</failure>"#
        ));
        assert!(xml.contains(r#"<skipped message="no &apos;disable&apos; command"/>"#));
        assert!(xml.ends_with("  </testsuite>\n</testsuites>\n"));
    }

    /// Every tag opened is closed, in order (a minimal well-formedness check).
    #[test]
    fn the_document_is_balanced() {
        let xml = suite().to_xml();
        let mut stack = Vec::new();
        let mut rest = xml.as_str();
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').unwrap() + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if tag.starts_with('?') || tag.ends_with('/') {
                continue;
            }
            let name = tag.split_whitespace().next().unwrap();
            if let Some(name) = name.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.to_owned()), "{xml}");
            } else {
                stack.push(name.to_owned());
            }
        }
        assert!(stack.is_empty(), "{stack:?}");
    }
}
