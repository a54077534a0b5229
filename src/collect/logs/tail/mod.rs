//! Following log files through rotation and truncation, without losing or
//! repeating a line.
//!
//! - A file is identified by device and inode while it is open, and by a
//!   *fingerprint* (hash of its first line(s), see [`fingerprint`]) once it
//!   is not: that is what the state file remembers across restarts.
//! - **Rename rotation** (`app.log` → `app.log.1`, new `app.log`): the path
//!   now leads to another inode. The old file stays open and is read until
//!   it has been quiet for `rotate_wait` (a writer may still append before
//!   it reopens); the new file is read from its start. If a glob also
//!   matches the renamed file, it is recognised by inode and continues.
//! - **Truncation** (`copytruncate`, `> file`): the file is shorter than
//!   the read position, or its fingerprint changed; reading restarts at 0.
//!   The old fingerprint and offset are remembered, so if the copy is
//!   matched by a glob it is read from where the original was left — the
//!   lines between our last read and the truncation are then not lost.
//!   A new file whose content equals the start of a file being read is a
//!   copy in the making and is left alone until the original is truncated
//!   (at most [`COPY_WAIT`]; then it is a file of its own).
//! - Offsets saved are those of the last *complete* record (a partial CRI
//!   or Docker line, or a line without its newline yet, is read again after
//!   a restart), so a restart neither loses nor repeats a message.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::discover::{expand, origin, Origin};
use super::formats::{Decoder, Message};
use super::state::{Fingerprint, SavedFile};

/// Where lines go: the file's origin and one complete message.
pub type Sink<'a> = dyn FnMut(&Origin, Message<'_>) + 'a;

/// What the tailer needs from the configuration.
#[derive(Debug, Clone)]
pub struct TailConfig {
    pub patterns: Vec<String>,
    pub max_files: usize,
    pub max_line_bytes: usize,
    pub rotate_wait: Duration,
    pub read_from_start: bool,
}

/// Bytes read from one file per poll; a file with more waits for the next
/// poll, which then follows without a pause. Bounds the time of one poll.
pub const READ_BUDGET: u64 = 4 << 20;
const CHUNK: usize = 64 << 10;
/// A fingerprint covers whole lines up to at least this many bytes…
const FP_MIN: usize = 64;
/// …and at most this many.
const FP_MAX: usize = 1024;
/// Offsets of files no longer read, kept for copies and restarts…
const MAX_KNOWN: usize = 1024;
/// …for this long: a copy shows up within a rescan, and the state file's
/// entries are matched at the first scan; older ones would only grow it.
const KNOWN_TTL: Duration = Duration::from_secs(15 * 60);
/// Paths warned about (unreadable), so the log is not flooded.
const MAX_WARNED: usize = 1000;
/// How long a copy in the making waits for its original to be truncated.
pub const COPY_WAIT: Duration = Duration::from_secs(60);
/// Bytes compared to tell a copy from a file that merely starts alike.
const COPY_COMPARE: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(m: &Metadata) -> Self {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

fn read_full_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Hash of the file's first lines: everything up to the first newline at
/// or after byte [`FP_MIN`], or the first [`FP_MAX`] bytes. `None` while the
/// file is too short to tell (it is then known by inode only).
pub fn fingerprint(file: &File) -> io::Result<Option<Fingerprint>> {
    let mut buf = [0u8; FP_MAX];
    let n = read_full_at(file, &mut buf, 0)?;
    let len = match buf[..n]
        .get(FP_MIN - 1..)
        .and_then(|rest| memchr::memchr(b'\n', rest))
    {
        Some(p) => FP_MIN + p,
        None if n == FP_MAX => FP_MAX,
        None => return Ok(None),
    };
    let d = ring::digest::digest(&ring::digest::SHA256, &buf[..len]);
    let mut h = [0u8; 8];
    h.copy_from_slice(&d.as_ref()[..8]);
    Ok(Some(Fingerprint {
        len: len as u32,
        hash: u64::from_be_bytes(h),
    }))
}

/// True when one file's content is a prefix of the other's (up to
/// [`COPY_COMPARE`] bytes): what a copy of a growing file looks like.
fn same_prefix(a: &File, b: &File) -> bool {
    let mut x = vec![0u8; COPY_COMPARE];
    let mut y = vec![0u8; COPY_COMPARE];
    match (read_full_at(a, &mut x, 0), read_full_at(b, &mut y, 0)) {
        (Ok(n), Ok(m)) => x[..n.min(m)] == y[..n.min(m)],
        _ => false,
    }
}

/// The offset just after the last newline (where "from the end" starts
/// without cutting a line in two).
fn end_of_last_line(file: &File, len: u64) -> u64 {
    let from = len.saturating_sub(CHUNK as u64);
    let mut buf = vec![0u8; (len - from) as usize];
    match read_full_at(file, &mut buf, from) {
        Ok(n) => match memchr::memrchr(b'\n', &buf[..n]) {
            Some(p) => from + p as u64 + 1,
            None if from == 0 => 0,
            None => len,
        },
        Err(_) => len,
    }
}

/// What a look at a file found.
enum Check {
    Same,
    /// Its path now leads elsewhere (rotated or deleted).
    Moved,
    /// Truncated or rewritten: here is what it was.
    Truncated(SavedFile),
}

/// One file being read.
struct FileTail {
    origin: Origin,
    path: PathBuf,
    file: File,
    id: FileId,
    /// Next byte to read.
    pos: u64,
    /// End of the last complete record.
    committed: u64,
    /// The line being read (no newline yet).
    line: Vec<u8>,
    /// The current line was longer than the limit; the rest is skipped.
    cut: bool,
    fp: Option<Fingerprint>,
    last_len: u64,
    /// Set once the path leads elsewhere: when data was last read since.
    moved_at: Option<Instant>,
    decoder: Decoder,
}

impl FileTail {
    fn saved(&self) -> SavedFile {
        SavedFile {
            path: self.path.display().to_string(),
            dev: self.id.dev,
            ino: self.id.ino,
            fingerprint: self.fp,
            offset: self.committed,
        }
    }

    fn check(&mut self) -> io::Result<Check> {
        let mut result = Check::Same;
        if self.moved_at.is_none() {
            match std::fs::metadata(&self.path) {
                Ok(m) if FileId::of(&m) == self.id => {}
                _ => {
                    self.moved_at = Some(Instant::now());
                    result = Check::Moved;
                }
            }
        }
        let len = self.file.metadata()?.len();
        let rewritten =
            len != self.last_len && self.fp.is_some() && fingerprint(&self.file)? != self.fp;
        self.last_len = len;
        if len < self.pos || rewritten {
            let old = self.saved();
            tracing::debug!(path = %self.path.display(), len, pos = self.pos, "log file truncated; reading from its start");
            self.pos = 0;
            self.committed = 0;
            self.line.clear();
            self.cut = false;
            self.decoder.reset();
            self.fp = None;
            return Ok(Check::Truncated(old));
        }
        Ok(result)
    }

    /// Reads what was appended (up to [`READ_BUDGET`]); returns the bytes read.
    fn read(
        &mut self,
        max_line: usize,
        scratch: &mut [u8],
        sink: &mut Sink<'_>,
    ) -> io::Result<u64> {
        let mut total = 0u64;
        while total < READ_BUDGET {
            let n = self.file.read_at(scratch, self.pos)?;
            if n == 0 {
                break;
            }
            let chunk = &scratch[..n];
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', chunk) {
                let seg = &chunk[start..nl];
                if self.line.is_empty() && !self.cut {
                    let cut = seg.len() > max_line;
                    emit(
                        &mut self.decoder,
                        &self.origin,
                        &seg[..seg.len().min(max_line)],
                        cut,
                        sink,
                    );
                } else {
                    append(&mut self.line, &mut self.cut, seg, max_line);
                    emit(&mut self.decoder, &self.origin, &self.line, self.cut, sink);
                    self.line.clear();
                    self.cut = false;
                }
                if !self.decoder.joining() {
                    self.committed = self.pos + nl as u64 + 1;
                }
                start = nl + 1;
            }
            append(&mut self.line, &mut self.cut, &chunk[start..], max_line);
            self.pos += n as u64;
            total += n as u64;
        }
        if self.fp.is_none() && self.pos as usize >= FP_MIN {
            self.fp = fingerprint(&self.file)?;
        }
        Ok(total)
    }

    /// The file will not grow any more: a last line without its newline
    /// and a half-joined message count as they are.
    fn finish(mut self, sink: &mut Sink<'_>) -> SavedFile {
        if !self.line.is_empty() {
            emit(&mut self.decoder, &self.origin, &self.line, self.cut, sink);
        }
        let origin = &self.origin;
        self.decoder.flush(&mut |m| sink(origin, m));
        self.committed = self.pos;
        self.saved()
    }
}

fn append(line: &mut Vec<u8>, cut: &mut bool, seg: &[u8], max: usize) {
    if *cut {
        return;
    }
    let room = max.saturating_sub(line.len());
    if seg.len() > room {
        line.extend_from_slice(&seg[..room]);
        *cut = true;
    } else {
        line.extend_from_slice(seg);
    }
}

fn emit(decoder: &mut Decoder, origin: &Origin, line: &[u8], cut: bool, sink: &mut Sink<'_>) {
    // NUL runs are what a writer without O_APPEND leaves after copytruncate.
    let start = line.iter().position(|&b| b != 0).unwrap_or(line.len());
    let line = &line[start..];
    if line.is_empty() {
        return;
    }
    decoder.line(line, cut, &mut |m| sink(origin, m));
}

/// Counts for the collector's own metrics.
#[derive(Debug, Clone, Default)]
pub struct TailStats {
    /// Files read at their configured path.
    pub live: usize,
    /// Rotated-away or deleted files still being drained.
    pub rotated: usize,
    /// Matching files not read because `max_files` were open (last scan).
    pub skipped: usize,
    /// Failures to open, stat or read a file.
    pub errors: u64,
}

/// Every file being followed.
pub struct Tailer {
    cfg: TailConfig,
    tails: Vec<FileTail>,
    /// Offsets of files not read now: restored from the state file,
    /// rotated away, or truncated (their copies may appear); with when.
    known: VecDeque<(SavedFile, Instant)>,
    /// No state file existed: the agent's very first run.
    fresh: bool,
    scanned: bool,
    scratch: Vec<u8>,
    warned: HashSet<PathBuf>,
    /// Copies in the making (see the module docs), since when.
    copies: HashMap<PathBuf, Instant>,
    errors: u64,
    skipped: usize,
}

impl Tailer {
    /// `saved`: what the state file held (`None`: there was none).
    pub fn new(cfg: TailConfig, saved: Option<Vec<SavedFile>>) -> Self {
        Self {
            cfg,
            tails: Vec::new(),
            fresh: saved.is_none(),
            known: saved
                .unwrap_or_default()
                .into_iter()
                .map(|f| (f, Instant::now()))
                .collect(),
            scanned: false,
            scratch: vec![0; CHUNK],
            warned: HashSet::new(),
            copies: HashMap::new(),
            errors: 0,
            skipped: 0,
        }
    }

    pub fn stats(&self) -> TailStats {
        let rotated = self.tails.iter().filter(|t| t.moved_at.is_some()).count();
        TailStats {
            live: self.tails.len() - rotated,
            rotated,
            skipped: self.skipped,
            errors: self.errors,
        }
    }

    /// Offsets to persist: files being read and remembered ones.
    pub fn saved(&self) -> Vec<SavedFile> {
        self.tails
            .iter()
            .map(FileTail::saved)
            .chain(self.known.iter().map(|(f, _)| f.clone()))
            .collect()
    }

    fn remember(&mut self, f: SavedFile) {
        self.known.push_back((f, Instant::now()));
        while self.known.len() > MAX_KNOWN {
            self.known.pop_front();
        }
    }

    fn failed(&mut self, path: &Path, what: &str, e: &io::Error) {
        self.errors += 1;
        if self.warned.len() < MAX_WARNED && self.warned.insert(path.to_path_buf()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot {what} log file");
        }
    }

    /// Finds matching files and starts reading new ones.
    pub fn scan(&mut self) {
        self.known.retain(|(_, at)| at.elapsed() < KNOWN_TTL);
        self.copies.retain(|_, at| at.elapsed() < 2 * COPY_WAIT);
        // Truncations first: a copy found before its original's truncation
        // is noticed would be taken for a new file and read from its start.
        let reopen = self.check_tails();
        let mut skipped = 0;
        for path in expand(&self.cfg.patterns) {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue; // gone since the glob
            };
            let id = FileId::of(&meta);
            if let Some(t) = self.tails.iter_mut().find(|t| t.id == id) {
                if t.moved_at.is_some() {
                    // A rotated file that a glob matches under its new name.
                    t.path = path;
                    t.moved_at = None;
                }
                continue;
            }
            if self.tails.len() >= self.cfg.max_files {
                skipped += 1;
                continue;
            }
            self.open(&path);
        }
        self.skipped = skipped;
        self.open_replacements(reopen);
        if !self.scanned {
            self.find_rotated_while_down();
            self.scanned = true;
            tracing::info!(files = self.tails.len(), "log files found");
        }
    }

    /// Files of the state file that were renamed while the agent was down
    /// (rotation): found by inode next to their old path, and drained from
    /// their saved offset like any rotated file.
    fn find_rotated_while_down(&mut self) {
        let mut dirs: Vec<PathBuf> = self
            .known
            .iter()
            .filter_map(|(k, _)| Path::new(&k.path).parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                let id = FileId::of(&meta);
                // Under a new name: at its old one it is simply no longer
                // configured.
                let Some(i) = self.known.iter().position(|(k, _)| {
                    let old = Path::new(&k.path);
                    k.dev == id.dev && k.ino == id.ino && old.parent() == Some(&dir) && old != path
                }) else {
                    continue;
                };
                if self.tails.len() >= self.cfg.max_files || self.tails.iter().any(|t| t.id == id) {
                    continue;
                }
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                let fp = fingerprint(&file).ok().flatten();
                let saved = &self.known[i].0;
                if saved.fingerprint.is_some() && saved.fingerprint != fp {
                    continue; // the inode now holds another file
                }
                let (saved, _) = self.known.remove(i).expect("index from position");
                let origin = origin(Path::new(&saved.path));
                tracing::debug!(from = %saved.path, to = %path.display(), "log file rotated while stopped; draining it");
                self.tails.push(FileTail {
                    decoder: Decoder::new(origin.format, self.cfg.max_line_bytes),
                    origin,
                    path,
                    file,
                    id,
                    pos: saved.offset,
                    committed: saved.offset,
                    line: Vec::new(),
                    cut: false,
                    fp,
                    last_len: meta.len(),
                    moved_at: Some(Instant::now()),
                });
            }
        }
    }

    fn open(&mut self, path: &Path) {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => return self.failed(path, "open", &e),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return self.failed(path, "stat", &e),
        };
        let id = FileId::of(&meta);
        if self.tails.iter().any(|t| t.id == id) {
            return;
        }
        if meta.len() == 0 {
            // Nothing to read yet, and nothing to tell a new file from a
            // copy that is just being created by: opened once it has content.
            return;
        }
        let fp = match fingerprint(&file) {
            Ok(fp) => fp,
            Err(e) => return self.failed(path, "read", &e),
        };
        if let Some(i) = self.tails.iter().position(|t| fp.is_some() && t.fp == fp) {
            if same_prefix(&file, &self.tails[i].file) {
                // A copy of a file being read (copytruncate in progress).
                let since = *self
                    .copies
                    .entry(path.to_path_buf())
                    .or_insert_with(Instant::now);
                if since.elapsed() < COPY_WAIT {
                    return;
                }
            } else {
                // Either two files that start alike, or the copy of one
                // truncated since it was last looked at: then its offset
                // must be remembered before this file's is chosen. (A path
                // found rotated here is reopened by the next scan.)
                let _ = self.check_tail(i);
            }
        }
        self.copies.remove(path);
        let offset = self.start_offset(id, fp, &file, meta.len());
        let origin = origin(path);
        tracing::debug!(path = %path.display(), offset, source = %origin.source, "following log file");
        self.tails.push(FileTail {
            decoder: Decoder::new(origin.format, self.cfg.max_line_bytes),
            origin,
            path: path.to_path_buf(),
            file,
            id,
            pos: offset,
            committed: offset,
            line: Vec::new(),
            cut: false,
            fp,
            last_len: meta.len(),
            moved_at: None,
        });
    }

    fn start_offset(&mut self, id: FileId, fp: Option<Fingerprint>, file: &File, len: u64) -> u64 {
        // The same inode with the same first line — or saved before it had
        // a full first line; or, under another inode, a copy or a rename
        // while the agent was down.
        let same_file = |(k, _): &(SavedFile, Instant)| {
            k.dev == id.dev && k.ino == id.ino && (k.fingerprint == fp || k.fingerprint.is_none())
        };
        let same_content = |(k, _): &(SavedFile, Instant)| fp.is_some() && k.fingerprint == fp;
        let found = self
            .known
            .iter()
            .position(same_file)
            .or_else(|| self.known.iter().position(same_content));
        if let Some((k, _)) = found.and_then(|i| self.known.remove(i)) {
            return k.offset;
        }
        if self.fresh && !self.scanned && !self.cfg.read_from_start {
            return end_of_last_line(file, len);
        }
        0
    }

    /// Looks at every file for rotation and truncation; returns the paths
    /// whose file was rotated away (another file may have taken its place).
    fn check_tails(&mut self) -> Vec<PathBuf> {
        let mut reopen = Vec::new();
        for i in 0..self.tails.len() {
            if let Some(p) = self.check_tail(i) {
                if !reopen.contains(&p) {
                    reopen.push(p);
                }
            }
        }
        reopen
    }

    /// [`FileTail::check`] for one file; a truncated file's old offset is
    /// remembered for its copy. Returns the path if it was rotated away.
    fn check_tail(&mut self, i: usize) -> Option<PathBuf> {
        let t = &mut self.tails[i];
        match t.check() {
            Ok(Check::Same) => None,
            Ok(Check::Moved) => Some(t.path.clone()),
            Ok(Check::Truncated(old)) => {
                let moved = t.moved_at.map(|_| t.path.clone());
                self.remember(old);
                moved
            }
            Err(e) => {
                let p = t.path.clone();
                self.failed(&p, "stat", &e);
                None
            }
        }
    }

    /// Opens the files that took rotated ones' places, without waiting for
    /// a scan.
    fn open_replacements(&mut self, reopen: Vec<PathBuf>) {
        for path in reopen {
            let known = std::fs::metadata(&path)
                .map(|m| self.tails.iter().any(|t| t.id == FileId::of(&m)))
                .unwrap_or(true);
            if !known && self.tails.len() < self.cfg.max_files {
                self.open(&path);
            }
        }
    }

    /// Reads every file once. Returns true when a file had more than one
    /// poll's budget (the caller should poll again without pausing).
    pub fn poll(&mut self, sink: &mut Sink<'_>) -> bool {
        let reopen = self.check_tails();
        let mut busy = false;
        let mut i = 0;
        while i < self.tails.len() {
            let t = &mut self.tails[i];
            let n = match t.read(self.cfg.max_line_bytes, &mut self.scratch, sink) {
                Ok(n) => n,
                Err(e) => {
                    let p = t.path.clone();
                    self.failed(&p, "read", &e);
                    0
                }
            };
            let t = &mut self.tails[i];
            busy |= n >= READ_BUDGET;
            if let Some(at) = t.moved_at {
                if n > 0 {
                    t.moved_at = Some(Instant::now());
                } else if at.elapsed() >= self.cfg.rotate_wait {
                    let done = self.tails.remove(i).finish(sink);
                    tracing::debug!(path = %done.path, offset = done.offset, "rotated log file drained");
                    self.remember(done);
                    continue;
                }
            }
            i += 1;
        }
        self.open_replacements(reopen);
        busy
    }
}

#[cfg(test)]
mod tests;
