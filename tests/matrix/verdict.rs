//! Reads the driver's lines (tools/src/bin/netagent-matrix/report.rs) out of a
//! console log or a host run's stdout, and judges a row: every check must
//! pass, except the row's known gaps, which must still fail (a gap that
//! starts passing must be removed from the list, so the list stays true).

use std::collections::BTreeMap;

const MARK: &str = "NETAGENT-MATRIX";
const PROBE_BEGIN: &str = "----- BEGIN netagent probe -----";
const PROBE_END: &str = "----- END netagent probe";

/// Every check the scenario makes; a missing one means it stopped early.
pub const ALL_CHECKS: [&str; 20] = [
    "traffic_generated",
    "tcp4_connects",
    "tcp6_connects",
    "tcp4_edge",
    "tcp6_edge",
    "udp4_sends",
    "udp6_sends",
    "udp4_edge",
    "udp6_edge",
    "tcp_accepts",
    "tcp_bytes",
    "udp_bytes",
    "tx_duration_tcp",
    "tx_duration_udp",
    "connect_refused",
    "connect_series_exact",
    "no_events_lost",
    "lo_packets",
    "agent_exit_0",
    "nothing_left_loaded",
];

/// What the driver said.
#[derive(Debug, Default)]
pub struct Run {
    /// check -> (passed, the whole line)
    pub checks: BTreeMap<String, (bool, String)>,
    pub infos: Vec<String>,
    pub result: Option<String>,
    /// `netagent probe` output, markers included.
    pub probe: String,
    /// The verifier-only job's results (`LOAD` lines), one JSON object each.
    pub loads: Vec<serde_json::Value>,
}

impl Run {
    pub fn parse(text: &str) -> Run {
        let mut run = Run::default();
        let mut in_probe = false;
        for line in text.lines() {
            // A kernel message can share a console line with ours.
            if let Some(at) = line.find(PROBE_BEGIN) {
                in_probe = true;
                run.probe.push_str(&line[at..]);
                run.probe.push('\n');
                continue;
            }
            if in_probe {
                run.probe.push_str(line);
                run.probe.push('\n');
                in_probe = !line.contains(PROBE_END);
                continue;
            }
            let Some(at) = line.find(MARK) else { continue };
            let rest = line[at + MARK.len()..].trim();
            if let Some(check) = rest.strip_prefix("CHECK ") {
                let mut words = check.split_whitespace();
                if let (Some(name), Some(state)) = (words.next(), words.next()) {
                    run.checks
                        .insert(name.to_string(), (state == "PASS", rest.to_string()));
                }
            } else if let Some(info) = rest.strip_prefix("INFO ") {
                run.infos.push(info.to_string());
            } else if let Some(result) = rest.strip_prefix("RESULT ") {
                run.result = Some(result.to_string());
            } else if let Some(json) = rest.strip_prefix("LOAD ") {
                match serde_json::from_str(json) {
                    Ok(v) => run.loads.push(v),
                    // Cut by a kernel line: kept so the job sees a bad line.
                    Err(_) => run.loads.push(serde_json::json!({"unparsed": json})),
                }
            }
        }
        run
    }

    /// An INFO value such as `boot_seconds=6.2`.
    pub fn info(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.infos.iter().find_map(|i| i.strip_prefix(&prefix))
    }

    /// Problems with this run, given the checks expected to fail; empty
    /// when the row is as expected.
    pub fn problems(&self, known_gaps: &[&str]) -> Vec<String> {
        self.problems_with(&ALL_CHECKS, known_gaps)
    }

    /// Problems of a run that makes only the checks `names`, all expected
    /// to pass (the verifier-only job's).
    pub fn problems_of_checks(&self, names: &[&str]) -> Vec<String> {
        self.problems_with(names, &[])
    }

    fn problems_with(&self, all: &[&str], known_gaps: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        if self.result.is_none() {
            out.push("the driver printed no RESULT line (it crashed or was cut off)".into());
        }
        for name in self.checks.keys() {
            if !all.contains(&name.as_str()) && !self.checks[name].0 {
                out.push(format!("step failed: {}", self.checks[name].1));
            }
        }
        for &name in all {
            match self.checks.get(name) {
                None => out.push(format!("check {name} did not run")),
                Some((true, _)) if known_gaps.contains(&name) => out.push(format!(
                    "check {name} now passes: remove it from this row's known gaps"
                )),
                Some((false, line)) if !known_gaps.contains(&name) => {
                    out.push(format!("check failed: {line}"))
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_must_fail_and_everything_else_must_pass() {
        let mut text = String::from("[    1.0] boot\n----- BEGIN netagent probe -----\nx\n----- END netagent probe (exit 2) -----\n");
        for name in ALL_CHECKS {
            let state = if name == "udp4_sends" { "FAIL" } else { "PASS" };
            text += &format!("NETAGENT-MATRIX CHECK {name} {state} expected=1 got=1\n");
        }
        text += "NETAGENT-MATRIX INFO boot_seconds=6.5\nNETAGENT-MATRIX RESULT FAIL: udp4_sends\n";
        let run = Run::parse(&text);
        assert_eq!(run.info("boot_seconds"), Some("6.5"));
        assert!(run.probe.contains("\nx\n"), "{}", run.probe);
        assert!(run.problems(&["udp4_sends"]).is_empty());
        assert_eq!(run.problems(&[]).len(), 1);
        assert_eq!(run.problems(&["udp4_sends", "lo_packets"]).len(), 1);
        let cut = Run::parse("NETAGENT-MATRIX CHECK tcp4_connects PASS expected=1 got=1\n");
        assert_eq!(cut.problems(&[]).len(), 1 + ALL_CHECKS.len() - 1);
    }
}
