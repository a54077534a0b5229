//! Read positions that survive a restart: a small JSON file, replaced
//! atomically (written to a temporary file in the same directory, synced,
//! renamed over the old one, directory synced), so a crash leaves either
//! the old or the new version, never a torn one.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Identifies a file's content independently of its name: the hash of its
/// first bytes (see `tail::fingerprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Bytes hashed.
    pub len: u32,
    /// First 8 bytes of their SHA-256.
    pub hash: u64,
}

/// How far one file has been counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFile {
    /// Where it was last seen (informational).
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: Option<Fingerprint>,
    /// Bytes counted: every complete record before this offset.
    pub offset: u64,
}

/// A pattern's template, kept so that it has the same `pattern_hash` and
/// `sample` after a restart from its first line on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPattern {
    pub source: String,
    pub container: String,
    pub level: String,
    /// Where the clustering files it (its first constant word).
    pub route: String,
    /// Tokens joined by single spaces, `<*>` for variables.
    pub template: String,
    /// Its last `<*>` stands for any number of tokens.
    #[serde(default)]
    pub tail: bool,
    pub sample: String,
}

/// Everything the log collector persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub files: Vec<SavedFile>,
    /// journald cursor of the last entry counted.
    pub journal_cursor: Option<String>,
    /// Templates of the patterns that counted messages (absent in files
    /// written before templates were saved).
    #[serde(default)]
    pub patterns: Vec<SavedPattern>,
}

/// Reads the state; `Ok(None)` when the file does not exist yet.
pub fn load(path: &Path) -> anyhow::Result<Option<State>> {
    use anyhow::Context;
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces the state file atomically, creating its directory if needed.
pub fn save(path: &Path, state: &State) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(state).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    let result = write();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = TempDir::new("state");
        let path = dir.0.join("sub/offsets.json");
        assert_eq!(load(&path).unwrap(), None);
        let state = State {
            files: vec![SavedFile {
                path: "/var/log/x.log".into(),
                dev: 1,
                ino: 2,
                fingerprint: Some(Fingerprint { len: 64, hash: 7 }),
                offset: 99,
            }],
            journal_cursor: Some("s=abc;i=1".into()),
            patterns: vec![SavedPattern {
                source: "/var/log/dpkg.log".into(),
                container: String::new(),
                level: "unknown".into(),
                route: "status".into(),
                template: "<*> <*> status <*> <*> <*>".into(),
                tail: false,
                sample: "2025-06-24 14:36:25 status installed libc-bin:amd64 2.36".into(),
            }],
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state.clone()));
        // Replaced, not appended; no temporary file left behind.
        save(&path, &State::default()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(State::default()));
        assert_eq!(std::fs::read_dir(dir.0.join("sub")).unwrap().count(), 1);
        // A file of an older version (no templates) still loads.
        std::fs::write(&path, br#"{"files":[],"journal_cursor":null}"#).unwrap();
        assert_eq!(load(&path).unwrap(), Some(State::default()));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).is_err());
    }
}
