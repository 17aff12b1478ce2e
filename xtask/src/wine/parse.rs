//! Reading `hotswapctl`'s printed results (its `stats`, `stress`, `watch` and `scenarios`
//! output). Every parser is strict: a line it does not recognise where it expects one is
//! an error that quotes the output, never a default.

use anyhow::{Context, Result, bail};

/// The driver's counters as `hotswapctl stats` / `reset` print them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// The build that answered (1 or 2).
    pub answered_by: u16,
    /// Requests served.
    pub served: u64,
    /// Requests rejected.
    pub rejected: u64,
    /// Worker thread ticks.
    pub worker_ticks: u64,
    /// Hot swaps.
    pub swaps: u64,
}

/// The number at the start of `text` (after spaces).
fn leading_number(text: &str) -> Option<u64> {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The number after `label` on the line that starts with it (after indentation).
fn field(output: &str, label: &str) -> Option<u64> {
    output
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .and_then(leading_number)
}

/// Parses `stats` / `reset` output (`title (answered by vN):` then the counters).
///
/// # Errors
/// When a counter or the answering build is missing.
pub fn counters(output: &str) -> Result<Counters> {
    let parse = || -> Option<Counters> {
        let first = output.lines().next()?;
        let version = first.split("(answered by v").nth(1)?;
        Some(Counters {
            answered_by: u16::try_from(leading_number(version)?).ok()?,
            served: field(output, "served:")?,
            rejected: field(output, "rejected:")?,
            worker_ticks: field(output, "worker ticks:")?,
            swaps: field(output, "swaps:")?,
        })
    };
    parse().with_context(|| format!("unrecognised counters from hotswapctl:\n{output}"))
}

/// What `stress` printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stress {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered (by any build).
    pub answered: u64,
}

/// Parses `stress` output; only a clean run is accepted: every request answered, no line
/// of failures, wrong or malformed answers, and the verdict `PASS`.
///
/// # Errors
/// When the output is not that of a clean run.
pub fn stress(output: &str) -> Result<Stress> {
    let sent = output
        .lines()
        .next()
        .filter(|line| line.contains(" requests in "))
        .and_then(leading_number)
        .with_context(|| format!("unrecognised stress output:\n{output}"))?;
    let answered = output
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("answered by v"))
        .filter_map(|rest| rest.split(": ").nth(1).and_then(leading_number))
        .sum();
    let problems: Vec<&str> = output
        .lines()
        .map(str::trim_start)
        .filter(|line| {
            ["failed with", "wrong", "malformed", "not delivered", "LOST"]
                .iter()
                .any(|bad| line.contains(bad))
        })
        .collect();
    if !problems.is_empty() || output.lines().last() != Some("PASS") || answered != sent {
        bail!(
            "the stress under Wine did not pass: {answered} of {sent} requests answered\n{output}"
        );
    }
    Ok(Stress { sent, answered })
}

/// Parses the last line of `watch`: `N polls (F failed), S swap(s) seen, answered by: …`.
///
/// # Errors
/// When the line is missing.
pub fn watch(output: &str) -> Result<(u64, u64, u64, String)> {
    let line = output
        .lines()
        .rfind(|line| line.contains(" polls ("))
        .with_context(|| format!("unrecognised watch output:\n{output}"))?;
    let polls = leading_number(line);
    let failed = line.split(" polls (").nth(1).and_then(leading_number);
    let swaps = line.split("), ").nth(1).and_then(leading_number);
    let by = line.split("answered by: ").nth(1).map(str::to_owned);
    match (polls, failed, swaps, by) {
        (Some(polls), Some(failed), Some(swaps), Some(by)) => Ok((polls, failed, swaps, by)),
        _ => bail!("unrecognised watch summary: {line}"),
    }
}

/// One scenario's verdict line (`PASS smoke (9.38ms)`, `SKIP swap-stress (…): why`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioLine {
    /// `PASS`, `FAIL` or `SKIP`.
    pub verdict: String,
    /// The scenario's name.
    pub name: String,
    /// What follows the time: the skip reason or the failure.
    pub detail: String,
}

/// The verdict lines of `scenarios` (the unindented lines starting with a verdict).
#[must_use]
pub fn scenarios(output: &str) -> Vec<ScenarioLine> {
    output
        .lines()
        .filter_map(|line| {
            let (verdict, rest) = line.split_once(' ')?;
            if !["PASS", "FAIL", "SKIP"].contains(&verdict) {
                return None;
            }
            let (name, rest) = rest.split_once(" (")?;
            let detail = rest
                .split_once("): ")
                .map_or_else(String::new, |(_, detail)| detail.to_owned());
            Some(ScenarioLine {
                verdict: verdict.to_owned(),
                name: name.to_owned(),
                detail,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "counters (answered by v1):
  served:       10005 (v1 10005, v2 0)
  rejected:     18
  worker ticks: 11 (v1 11, v2 0)
  worker last ran as v1
  swaps:        0
";

    #[test]
    fn counters_are_read_field_by_field() {
        assert_eq!(
            counters(STATS).unwrap(),
            Counters {
                answered_by: 1,
                served: 10005,
                rejected: 18,
                worker_ticks: 11,
                swaps: 0
            }
        );
        assert!(counters("counters (answered by v2):\n  served: 3\n").is_err());
    }

    #[test]
    fn only_a_clean_stress_passes() {
        let clean = "20000 requests in 3.1s
  answered by v1: 20000
  served counter: +20001 (expected at least 20001): no count lost
PASS";
        assert_eq!(
            stress(clean).unwrap(),
            Stress {
                sent: 20000,
                answered: 20000
            }
        );
        let failed = "20000 requests in 3.1s
  answered by v1: 19999
  failed with STATUS_INVALID_PARAMETER (0xC000000D): 1
  served counter: +20000 (expected at least 20000): no count lost
FAIL";
        assert!(stress(failed).is_err());
        assert!(stress("PASS").is_err());
    }

    #[test]
    fn the_watch_summary_is_read() {
        let output = "watching \\\\.\\HotSwapSample every 100 ms\nv1 answers\n10 polls (0 failed), 0 swap(s) seen, answered by: v1\n";
        assert_eq!(watch(output).unwrap(), (10, 0, 0, "v1".to_owned()));
        assert!(watch("nothing").is_err());
    }

    #[test]
    fn scenario_verdicts_are_read() {
        let output = "running scenarios against x
PASS smoke (9.38ms)
    PASS version-consistent: fine
SKIP swap-stress (38.19ms): swap 1 to v2: Wine 8.0 has no DriverProxy
FAIL unload-reload (1.1s): criterion x failed: y
5 scenarios: 1 passed, 1 failed, 1 skipped";
        let lines = scenarios(output);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].name, "smoke");
        assert_eq!(lines[1].verdict, "SKIP");
        assert_eq!(lines[1].detail, "swap 1 to v2: Wine 8.0 has no DriverProxy");
        assert_eq!(lines[2].detail, "criterion x failed: y");
    }
}
