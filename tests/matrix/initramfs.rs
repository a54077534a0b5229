//! The guest's whole root file system, as a newc cpio archive: the driver
//! as `/init`, the agent and the traffic generator in `/bin`, the shared
//! libraries `ldd` names for them, and the kernel's modules in
//! `/lib/modules`. Binaries are copied without debug info (a debug build
//! of the agent is ~170 MB, ~25 MB without).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where each binary goes in the guest.
pub struct Contents<'a> {
    pub init: &'a Path,
    pub bins: &'a [(&'a str, &'a Path)],
    pub modules: &'a [PathBuf],
}

struct Archive {
    out: std::io::BufWriter<std::fs::File>,
    dirs: BTreeSet<String>,
    ino: u32,
}

impl Archive {
    fn entry(&mut self, name: &str, mode: u32) -> cpio::newc::Builder {
        self.ino += 1;
        cpio::newc::Builder::new(name.trim_start_matches('/'))
            .ino(self.ino)
            .mode(mode)
            .nlink(1)
    }

    /// Every parent of `path`, once, before the path itself.
    fn parents(&mut self, path: &str) -> std::io::Result<()> {
        let mut acc = String::new();
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        for part in &parts[..parts.len() - 1] {
            acc.push('/');
            acc.push_str(part);
            if self.dirs.insert(acc.clone()) {
                let e = self.entry(&acc, 0o040755);
                e.write(&mut self.out, 0).finish()?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, path: &str) -> std::io::Result<()> {
        self.parents(&format!("{path}/x"))
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
        self.parents(path)?;
        let e = self.entry(path, 0o100000 | mode);
        let mut w = e.write(&mut self.out, data.len() as u32);
        w.write_all(data)?;
        w.finish()?;
        Ok(())
    }

    fn char_dev(&mut self, path: &str, major: u32, minor: u32) -> std::io::Result<()> {
        self.parents(path)?;
        let e = self
            .entry(path, 0o020600)
            .rdev_major(major)
            .rdev_minor(minor);
        e.write(&mut self.out, 0).finish()?;
        Ok(())
    }
}

/// A copy of `bin` without debug info.
fn stripped(bin: &Path, scratch: &Path) -> Result<Vec<u8>, String> {
    let tmp = scratch.join(format!(
        "{}.stripped",
        bin.file_name().unwrap_or_default().to_string_lossy()
    ));
    let out = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&tmp)
        .arg(bin)
        .output()
        .map_err(|e| format!("strip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "strip {}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let data = std::fs::read(&tmp).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&tmp);
    data
}

/// Shared libraries (and the dynamic loader) `bin` needs, as absolute paths.
fn libraries(bin: &Path) -> Result<Vec<String>, String> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable")
        || String::from_utf8_lossy(&out.stderr).contains("not a dynamic")
    {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        return Err(format!("ldd {}: {}", bin.display(), text));
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(p.to_string());
        } else if line.contains("not found") {
            return Err(format!("ldd {}: {line}", bin.display()));
        }
    }
    Ok(libs)
}

/// Writes the archive to `out`; returns its size in bytes.
pub fn build(out: &Path, contents: &Contents) -> Result<u64, String> {
    let scratch = out.parent().unwrap_or(Path::new("."));
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut a = Archive {
        out: std::io::BufWriter::new(file),
        dirs: BTreeSet::new(),
        ino: 0,
    };
    let io = |e: std::io::Error| e.to_string();
    for d in ["/dev", "/proc", "/sys", "/tmp", "/run", "/etc", "/root"] {
        a.dir(d).map_err(io)?;
    }
    // The kernel opens /dev/console for init before anything is mounted.
    a.char_dev("/dev/console", 5, 1).map_err(io)?;
    a.char_dev("/dev/null", 1, 3).map_err(io)?;

    let mut libs = BTreeSet::new();
    let all: Vec<(&str, &Path)> = std::iter::once(("/init", contents.init))
        .chain(contents.bins.iter().copied())
        .collect();
    for (dest, bin) in &all {
        a.file(dest, &stripped(bin, scratch)?, 0o755).map_err(io)?;
        libs.extend(libraries(bin)?);
    }
    for lib in libs {
        // Resolve symlinks: the archive holds the file under the name ldd used.
        let data = std::fs::read(&lib).map_err(|e| format!("{lib}: {e}"))?;
        a.file(&lib, &data, 0o755).map_err(io)?;
    }
    for m in contents.modules {
        let name = m.file_name().unwrap_or_default().to_string_lossy();
        let data = std::fs::read(m).map_err(|e| format!("{}: {e}", m.display()))?;
        a.file(&format!("/lib/modules/{name}"), &data, 0o644)
            .map_err(io)?;
    }
    let w = cpio::newc::trailer(a.out).map_err(io)?;
    let file = w.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(io)?;
    Ok(file.metadata().map_err(io)?.len())
}
