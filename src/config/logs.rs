//! The `logs:` config section.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line, unspanned, KeyError};

/// `logs:` — log pattern extraction (README, "Log patterns").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Off by default: it reads every log on the host, and `sample`
    /// labels put log text on `/metrics` for anyone who can scrape it.
    pub enabled: bool,
    /// Glob patterns of log files; Docker and CRI files are recognised by
    /// their paths (see `discover`).
    pub paths: Vec<Spanned<String>>,
    /// Follow the journal with journalctl (when it is installed).
    pub journald: bool,
    /// journalctl `--directory`; empty = the system journal.
    pub journald_directory: Spanned<String>,
    /// Where read positions survive restarts; empty = nowhere.
    pub state_file: Spanned<String>,
    /// On the very first run (no state file yet): read existing files and
    /// the journal from their beginning instead of from now.
    pub read_from_start: bool,
    /// Patterns per source, container and level.
    pub max_patterns_per_source: Spanned<usize>,
    /// Patterns over all sources (memory bound).
    pub max_patterns: Spanned<usize>,
    /// Longest `sample` label value, in bytes; 0 = no samples.
    pub sample_max_bytes: Spanned<usize>,
    /// Fraction of equal tokens for a message to join a pattern.
    pub similarity: Spanned<f64>,
    /// Files read at once.
    pub max_files: Spanned<usize>,
    /// Longer lines are cut (and counted as truncated).
    pub max_line_bytes: Spanned<usize>,
    /// Seconds between reads of the files.
    pub poll_interval_seconds: Spanned<f64>,
    /// Seconds between searches for new files.
    pub rescan_interval_seconds: Spanned<f64>,
    /// Seconds a rotated file is still read after its last new data.
    pub rotate_wait_seconds: Spanned<f64>,
}

/// Default `logs.paths`.
pub const DEFAULT_PATHS: [&str; 5] = [
    "/var/log/*.log",
    "/var/log/syslog",
    "/var/log/messages",
    "/var/lib/docker/containers/*/*-json.log",
    "/var/log/containers/*.log",
];

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            paths: DEFAULT_PATHS
                .iter()
                .map(|p| unspanned(p.to_string()))
                .collect(),
            journald: true,
            journald_directory: unspanned(String::new()),
            state_file: unspanned("/var/lib/netagent/log-offsets.json".to_string()),
            read_from_start: false,
            max_patterns_per_source: unspanned(100),
            max_patterns: unspanned(5000),
            sample_max_bytes: unspanned(120),
            similarity: unspanned(0.4),
            max_files: unspanned(1024),
            max_line_bytes: unspanned(64 * 1024),
            poll_interval_seconds: unspanned(0.25),
            rescan_interval_seconds: unspanned(10.0),
            rotate_wait_seconds: unspanned(5.0),
        }
    }
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    v: &Spanned<T>,
    lo: T,
    hi: T,
) -> Result<(), KeyError> {
    super::range(&format!("logs.{key}"), v, lo, hi)
}

impl LogsConfig {
    /// Checks every value (also when disabled: a typo is found at once).
    pub fn validate(&self) -> Result<(), KeyError> {
        for (i, p) in self.paths.iter().enumerate() {
            let bad = |reason: String| KeyError {
                key: format!("logs.paths[{i}]"),
                line: line(p),
                reason,
            };
            if !p.value.starts_with('/') {
                return Err(bad(format!("{:?} must be an absolute path", p.value)));
            }
            glob::Pattern::new(&p.value).map_err(|e| bad(format!("bad pattern: {e}")))?;
        }
        let dir = &self.journald_directory;
        if !dir.value.is_empty() && !dir.value.starts_with('/') {
            return Err(KeyError {
                key: "logs.journald_directory".into(),
                line: line(dir),
                reason: format!("{:?} must be an absolute path", dir.value),
            });
        }
        range(
            "max_patterns_per_source",
            &self.max_patterns_per_source,
            1,
            100_000,
        )?;
        range("max_patterns", &self.max_patterns, 1, 1_000_000)?;
        range("sample_max_bytes", &self.sample_max_bytes, 0, 4096)?;
        range("max_files", &self.max_files, 1, 100_000)?;
        range("max_line_bytes", &self.max_line_bytes, 256, 16 << 20)?;
        range("similarity", &self.similarity, 0.01, 1.0)?;
        range(
            "poll_interval_seconds",
            &self.poll_interval_seconds,
            0.01,
            60.0,
        )?;
        range(
            "rescan_interval_seconds",
            &self.rescan_interval_seconds,
            0.1,
            3600.0,
        )?;
        range(
            "rotate_wait_seconds",
            &self.rotate_wait_seconds,
            0.0,
            3600.0,
        )?;
        Ok(())
    }
}
