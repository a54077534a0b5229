//! The console protocol between the driver and the matrix runner
//! (tests/kernel_matrix.rs). Every line the runner reads starts with
//! [`MARK`]; a guest's serial console mixes them with kernel and agent
//! lines, so each is self-contained:
//!
//! ```text
//! NETAGENT-MATRIX INFO kernel=6.1.0-56-amd64
//! NETAGENT-MATRIX CHECK tcp4_connects PASS expected=7 got=7
//! NETAGENT-MATRIX CHECK udp4_sends FAIL expected=9 got=0
//! NETAGENT-MATRIX RESULT PASS
//! NETAGENT-MATRIX RESULT FAIL: udp4_sends, tx_duration_tcp
//! ```
//!
//! `netagent probe` output is framed by [`PROBE_BEGIN`] and [`PROBE_END`].

pub const MARK: &str = "NETAGENT-MATRIX";
pub const PROBE_BEGIN: &str = "----- BEGIN netagent probe -----";
pub const PROBE_END: &str = "----- END netagent probe";

/// Checks so far, printed as they are made.
#[derive(Default)]
pub struct Report {
    failed: Vec<String>,
    checks: usize,
}

impl Report {
    /// Records and prints one check; values must not contain newlines.
    pub fn check(&mut self, name: &str, pass: bool, expected: impl ToString, got: impl ToString) {
        let one_line = |s: String| s.replace(['\n', '\r'], " ");
        println!(
            "{MARK} CHECK {name} {} expected={} got={}",
            if pass { "PASS" } else { "FAIL" },
            one_line(expected.to_string()),
            one_line(got.to_string())
        );
        self.checks += 1;
        if !pass {
            self.failed.push(name.to_string());
        }
    }

    /// Shorthand for an exact numeric check.
    pub fn exact(&mut self, name: &str, expected: f64, got: f64) {
        self.check(name, expected == got, expected, got);
    }

    /// A step that could not run: counted as a failed check.
    pub fn abort(&mut self, name: &str, why: &anyhow::Error) {
        self.check(name, false, "ok", format!("{why:#}"));
    }

    /// Checks failed so far.
    pub fn failures(&self) -> usize {
        self.failed.len()
    }

    pub fn info(&self, what: impl std::fmt::Display) {
        println!("{MARK} INFO {what}");
    }

    /// Prints the verdict line; true when every check passed.
    pub fn verdict(&self) -> bool {
        if self.failed.is_empty() && self.checks > 0 {
            println!("{MARK} RESULT PASS ({} checks)", self.checks);
            true
        } else if self.checks == 0 {
            println!("{MARK} RESULT FAIL: no checks ran");
            false
        } else {
            println!("{MARK} RESULT FAIL: {}", self.failed.join(", "));
            false
        }
    }
}
