//! Log pattern extraction: tails log files and the journal, clusters
//! messages into patterns on the node and counts them.
//!
//! ```text
//! discover (globs, path → format/labels) → tail (rotation, truncation, offsets)
//!   → formats (plain / Docker JSON / CRI, partial lines) ┐
//! journald (journalctl --follow -o json)                 ├→ patterns: level, mask, drain → counters
//! ```
//!
//! One thread reads the files (every `poll_interval_seconds`, new files
//! every `rescan_interval_seconds`) and saves the offsets (every
//! [`STATE_SAVE_INTERVAL`] and at shutdown, with the templates of the
//! patterns); another follows journalctl.
//! Scrapes read the counters under a lock.
//!
//! Families: `netagent_log_messages_total{source,container,level,pattern_hash,sample}`,
//! `netagent_log_pattern_info{source,container,level,pattern_hash,template}`,
//! `netagent_log_patterns_dropped_total{source,container,level}`,
//! `netagent_log_lines_malformed_total{source,container}`,
//! `netagent_log_lines_truncated_total{source,container}`,
//! `netagent_log_files{state}`, `netagent_log_files_skipped`,
//! `netagent_log_errors_total{op}`, `netagent_log_journald_up`.

pub mod discover;
pub mod drain;
pub mod formats;
pub mod journald;
pub mod level;
pub mod mask;
pub mod patterns;
pub mod state;
pub mod tail;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub use crate::config::LogsConfig;

use crate::metrics::catalog;
use crate::metrics::{scalar_family, Family};
use journald::{JournalOptions, JournalShared};
use patterns::{LevelHint, PatternLimits, Patterns};
use state::State;
use tail::{TailConfig, TailStats, Tailer};

/// How often changed offsets are written (a crash repeats at most this
/// much; a clean stop saves at once).
pub const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Shared {
    tail_stats: Mutex<TailStats>,
    state_errors: AtomicU64,
    stop_files: AtomicBool,
}

/// The file reader and the journal follower (joined at shutdown).
#[derive(Default)]
struct Threads {
    files: Option<JoinHandle<()>>,
    journal: Option<JoinHandle<()>>,
}

/// The running log collector.
pub struct LogCollector {
    patterns: Arc<Mutex<Patterns>>,
    shared: Arc<Shared>,
    journal: Option<Arc<JournalShared>>,
    threads: Mutex<Threads>,
}

/// `journalctl` on the PATH, if any.
fn find_journalctl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("journalctl"))
        .find(|p| p.is_file())
}

impl LogCollector {
    /// Loads the offsets, finds the files that exist now (so that files
    /// created after this returns are read from their start) and starts
    /// the reader threads.
    pub fn start(cfg: &LogsConfig) -> anyhow::Result<LogCollector> {
        let state_path =
            (!cfg.state_file.value.is_empty()).then(|| PathBuf::from(&cfg.state_file.value));
        let saved = match &state_path {
            Some(p) => state::load(p).unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "log offsets unreadable; starting as on a first run");
                None
            }),
            None => None,
        };
        let mut patterns = Patterns::new(PatternLimits {
            per_source: cfg.max_patterns_per_source.value,
            total: cfg.max_patterns.value,
            sample_max_bytes: cfg.sample_max_bytes.value,
            similarity: cfg.similarity.value,
        });
        if let Some(s) = &saved {
            patterns.restore(&s.patterns);
        }
        let patterns = Arc::new(Mutex::new(patterns));
        let mut tailer = Tailer::new(
            TailConfig {
                patterns: cfg.paths.iter().map(|p| p.value.clone()).collect(),
                max_files: cfg.max_files.value,
                max_line_bytes: cfg.max_line_bytes.value,
                rotate_wait: Duration::from_secs_f64(cfg.rotate_wait_seconds.value),
                read_from_start: cfg.read_from_start,
            },
            saved.as_ref().map(|s| s.files.clone()),
        );
        tailer.scan();
        let shared = Arc::new(Shared::default());
        *lock(&shared.tail_stats) = tailer.stats();

        let mut journal = None;
        let mut journal_thread = None;
        if cfg.journald {
            match find_journalctl() {
                Some(program) => {
                    let j = Arc::new(JournalShared::with_cursor(
                        saved.as_ref().and_then(|s| s.journal_cursor.clone()),
                    ));
                    let opts = JournalOptions {
                        program,
                        directory: (!cfg.journald_directory.value.is_empty())
                            .then(|| PathBuf::from(&cfg.journald_directory.value)),
                        read_from_start: cfg.read_from_start && saved.is_none(),
                        max_line_bytes: cfg.max_line_bytes.value,
                        since: SystemTime::now(),
                    };
                    let (j2, p2) = (j.clone(), patterns.clone());
                    journal_thread = Some(
                        std::thread::Builder::new()
                            .name("netagent-journal".into())
                            .spawn(move || journald::follow(opts, j2, p2))?,
                    );
                    journal = Some(j);
                }
                None => tracing::warn!(
                    "logs.journald: journalctl not found; journald logs are not counted"
                ),
            }
        }

        let files = FileLoop {
            tailer,
            patterns: patterns.clone(),
            shared: shared.clone(),
            journal: journal.clone(),
            state_path,
            last_saved: saved,
            poll: Duration::from_secs_f64(cfg.poll_interval_seconds.value),
            rescan: Duration::from_secs_f64(cfg.rescan_interval_seconds.value),
        };
        let files_thread = std::thread::Builder::new()
            .name("netagent-logs".into())
            .spawn(move || files.run())?;
        Ok(LogCollector {
            patterns,
            shared,
            journal,
            threads: Mutex::new(Threads {
                files: Some(files_thread),
                journal: journal_thread,
            }),
        })
    }

    /// Stops reading and saves the offsets. The journal stops first, so
    /// that the saved cursor is that of the last entry counted.
    pub fn shutdown(&self) {
        let Threads { files, journal } = std::mem::take(&mut *lock(&self.threads));
        if let Some(j) = &self.journal {
            j.stop();
        }
        if let Some(t) = journal {
            let _ = t.join();
        }
        self.shared.stop_files.store(true, Ordering::SeqCst);
        if let Some(t) = files {
            let _ = t.join();
        }
    }

    /// Families for a scrape.
    pub fn families(&self) -> Vec<Family> {
        let mut out = lock(&self.patterns).families();
        let stats = lock(&self.shared.tail_stats).clone();
        out.push(scalar_family(
            &catalog::LOG_FILES,
            BTreeMap::from([
                (vec![("state", "live".to_string())], stats.live as f64),
                (vec![("state", "rotated".to_string())], stats.rotated as f64),
            ]),
        ));
        out.push(scalar_family(
            &catalog::LOG_FILES_SKIPPED,
            BTreeMap::from([(vec![], stats.skipped as f64)]),
        ));
        let mut errors = BTreeMap::from([
            (vec![("op", "file".to_string())], stats.errors as f64),
            (
                vec![("op", "state".to_string())],
                self.shared.state_errors.load(Ordering::Relaxed) as f64,
            ),
        ]);
        if let Some(j) = &self.journal {
            errors.insert(
                vec![("op", "journald".to_string())],
                j.errors.load(Ordering::Relaxed) as f64,
            );
            out.push(scalar_family(
                &catalog::LOG_JOURNALD_UP,
                BTreeMap::from([(vec![], f64::from(u8::from(j.up.load(Ordering::Relaxed))))]),
            ));
        }
        out.push(scalar_family(&catalog::LOG_ERRORS, errors));
        out
    }
}

impl Drop for LogCollector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The file reader thread.
struct FileLoop {
    tailer: Tailer,
    patterns: Arc<Mutex<Patterns>>,
    shared: Arc<Shared>,
    journal: Option<Arc<JournalShared>>,
    state_path: Option<PathBuf>,
    last_saved: Option<State>,
    poll: Duration,
    rescan: Duration,
}

impl FileLoop {
    fn run(mut self) {
        let mut last_scan = Instant::now();
        let mut last_save = Instant::now();
        while !self.shared.stop_files.load(Ordering::SeqCst) {
            let patterns = &self.patterns;
            let busy = self.tailer.poll(&mut |origin, msg| {
                lock(patterns).add(&origin.source, &origin.container, msg, LevelHint::None);
            });
            if last_scan.elapsed() >= self.rescan {
                self.tailer.scan();
                last_scan = Instant::now();
            }
            *lock(&self.shared.tail_stats) = self.tailer.stats();
            if last_save.elapsed() >= STATE_SAVE_INTERVAL {
                self.save();
                last_save = Instant::now();
            }
            if busy {
                continue;
            }
            // Short steps so that shutdown is prompt.
            let until = Instant::now() + self.poll;
            while Instant::now() < until && !self.shared.stop_files.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50).min(self.poll));
            }
        }
        self.save();
    }

    /// Writes the offsets if they changed since the last write.
    fn save(&mut self) {
        let Some(path) = &self.state_path else {
            return;
        };
        let state = State {
            files: self.tailer.saved(),
            journal_cursor: self.journal.as_ref().and_then(|j| lock(&j.cursor).clone()),
            patterns: lock(&self.patterns).saved(),
        };
        if self.last_saved.as_ref() == Some(&state) {
            return;
        }
        match state::save(path, &state) {
            Ok(()) => self.last_saved = Some(state),
            Err(e) => {
                let n = self.shared.state_errors.fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::warn!(path = %path.display(), error = %e, "cannot save log offsets");
                }
            }
        }
    }
}

impl crate::collect::Collector for LogCollector {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn collect(&self, scrape: &mut crate::collect::Scrape<'_, '_>) -> anyhow::Result<()> {
        scrape.families.extend(self.families());
        Ok(())
    }

    fn shutdown(&self) {
        LogCollector::shutdown(self);
    }
}
