//! Debian kernels for the matrix: the newest package of a series from the
//! Debian archive (`apt-get download`), unpacked once into
//! `target/kernels/<package>/`: the kernel as an ELF image qemu boots
//! directly, and the TC modules kernels before 6.6 need (decompressed).
//! A series of another Debian release (5.10 is Debian 11's) comes through
//! a private apt source list whose state lives under `target/apt/`: the
//! system's sources, lists and caches are never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A kernel series and how its packages are named.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub label: &'static str,
    /// `apt-cache search --names-only` pattern of its image packages.
    pub pattern: &'static str,
    /// What every package name of the series starts with (cache pruning).
    pub prefix: &'static str,
    /// A one-line apt source for a release the system's sources do not
    /// have; None = the system's own apt.
    pub source: Option<&'static str>,
}

/// Debian 12's own kernel: has kprobes and fentry, lacks the
/// sock_send_length/sock_recv_length tracepoints.
pub const DEBIAN_6_1: Series = Series {
    label: "6.1",
    pattern: r"^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$",
    prefix: "linux-image-6.1.0-",
    source: None,
};

/// Debian's 6.12 built for bookworm.
pub const DEBIAN_6_12: Series = Series {
    label: "6.12",
    pattern: r"^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$",
    prefix: "linux-image-6.12.",
    source: None,
};

/// Debian 11's kernel, the 5.10 LTS: no sock_send_length/sock_recv_length
/// (6.3), no socket-local storage or socket cookies for tracing programs
/// (5.11, 5.12), the pid-only oom:mark_victim, no TCX (6.6). From the
/// `bullseye` suite through a private source list.
pub const DEBIAN_5_10: Series = Series {
    label: "5.10",
    pattern: r"^linux-image-5\.10\.0-[0-9]+-amd64-unsigned$",
    prefix: "linux-image-5.10.0-",
    source: Some(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://deb.debian.org/debian bullseye main",
    ),
};

/// Modules the agent needs that Debian builds as modules (a guest has no
/// modprobe to load them on demand), in load order: the TC qdisc and
/// classifier where there is no TCX (< 6.6), and sock_diag for TCP, with
/// which the agent lists listeners.
const MODULES: [&str; 4] = ["sch_ingress", "cls_bpf", "inet_diag", "tcp_diag"];

/// Marks a finished cache entry; bump when what is kept changes.
const READY: &str = "ready-2";

/// A kernel ready to boot.
#[derive(Debug)]
pub struct Kernel {
    pub package: String,
    /// Uncompressed ELF (booted through its PVH entry, which saves the
    /// emulated CPU the decompression), or the original bzImage when its
    /// compression is not one we know.
    pub image: PathBuf,
    pub modules: Vec<PathBuf>,
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Numbers in a package name, for "newest" (6.1.0-9 < 6.1.0-56).
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// apt with the series' private source list, if it has one: its lists and
/// caches under `<cache>/../apt/<label>/`, nothing of the system's used or
/// changed (the measured recipe: sourcelist, no sourceparts, own lists).
struct Apt {
    options: Vec<String>,
    lists: PathBuf,
}

impl Apt {
    fn for_series(series: Series, cache: &Path) -> Result<Option<Apt>, String> {
        let Some(source) = series.source else {
            return Ok(None);
        };
        let root = cache
            .parent()
            .unwrap_or(cache)
            .join("apt")
            .join(series.label);
        let lists = root.join("lists");
        for dir in [lists.join("partial"), root.join("cache/archives/partial")] {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let list = root.join("sources.list");
        std::fs::write(&list, format!("{source}\n")).map_err(|e| e.to_string())?;
        let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
        let options = [
            opt("Dir::Etc::sourcelist", &list),
            "Dir::Etc::sourceparts=-".to_string(),
            opt("Dir::State::Lists", &lists),
            opt("Dir::Cache", &root.join("cache")),
            "Acquire::Languages=none".to_string(),
            "APT::Sandbox::User=root".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect();
        Ok(Some(Apt { options, lists }))
    }

    /// True once `apt-get update` has filled the private lists. The index
    /// may be stored compressed (`…_Packages.lz4` where apt is configured
    /// so, as here): taking only `…_Packages` for it made every 5.10 row
    /// run `apt-get update` again, under the suite's network guard.
    fn has_lists(&self) -> bool {
        std::fs::read_dir(&self.lists).is_ok_and(|d| {
            d.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with("_Packages") || name.contains("_Packages.")
            })
        })
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(&self.options);
        c
    }
}

/// Fills the private lists of a series that has its own source (run by
/// `fetch_kernels` before the suite's network guard; a row only does it
/// when the lists are missing). Nothing for series on the system's apt.
pub fn update_lists(series: Series, cache: &Path) -> Result<(), String> {
    if let Some(apt) = Apt::for_series(series, cache)? {
        run(apt.command("apt-get").args(["update", "-q"]))?;
    }
    Ok(())
}

/// The newest image package of `series` that apt knows.
pub fn newest_package(series: Series, cache: &Path) -> Result<String, String> {
    let out = match Apt::for_series(series, cache)? {
        None => run(Command::new("apt-cache").args(["search", "--names-only", series.pattern]))?,
        Some(apt) => {
            if !apt.has_lists() {
                update_lists(series, cache)?;
            }
            run(apt
                .command("apt-cache")
                .args(["search", "--names-only", series.pattern]))?
        }
    };
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .max_by_key(|n| version_key(n))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "apt knows no package matching {} (run apt-get update)",
                series.pattern
            )
        })
}

/// The kernel of `series` from the cache, downloading and unpacking it
/// the first time.
pub fn fetch(series: Series, cache: &Path) -> Result<Kernel, String> {
    let package = newest_package(series, cache)?;
    let dir = cache.join(&package);
    if !dir.join(READY).exists() {
        let apt = Apt::for_series(series, cache)?;
        prepare(&package, &dir, apt.as_ref())?;
        prune(series, &package, cache);
    }
    let image = ["vmlinux", "vmlinuz"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{}: no kernel image", dir.display()))?;
    let mut modules: Vec<PathBuf> = std::fs::read_dir(dir.join("modules"))
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    modules.sort();
    Ok(Kernel {
        package,
        image,
        modules,
    })
}

/// Removes older kernels of the series from the cache (~60 MB each).
fn prune(series: Series, keep: &str, cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(series.prefix) && name != keep {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Downloads `package` and keeps only what a boot needs, in `dir`.
fn prepare(package: &str, dir: &Path, apt: Option<&Apt>) -> Result<(), String> {
    let work = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("modules")).map_err(|e| e.to_string())?;
    let mut download = match apt {
        Some(apt) => apt.command("apt-get"),
        None => Command::new("apt-get"),
    };
    run(download
        .args(["download", "-q", package])
        .current_dir(&work))?;
    let deb = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("apt-get download {package} left no .deb"))?;
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;

    let boot = unpacked.join("boot");
    let bzimage = std::fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("{package}: no /boot/vmlinuz-*"))?;
    let raw = std::fs::read(&bzimage).map_err(|e| e.to_string())?;
    match uncompressed_elf(&raw)? {
        Some(elf) => std::fs::write(work.join("vmlinux"), elf),
        None => std::fs::write(work.join("vmlinuz"), &raw),
    }
    .map_err(|e| e.to_string())?;

    for (i, name) in MODULES.iter().enumerate() {
        let found = find_module(&unpacked, name)
            .ok_or_else(|| format!("{package}: module {name} not found"))?;
        let bytes = if found.extension().is_some_and(|x| x == "xz") {
            run(Command::new("xz").arg("-dc").arg(&found))?
        } else if found.extension().is_some_and(|x| x == "zst") {
            run(Command::new("zstd").arg("-dc").arg(&found))?
        } else {
            std::fs::read(&found).map_err(|e| e.to_string())?
        };
        // The guest loads them in name order.
        std::fs::write(work.join("modules").join(format!("{i}-{name}.ko")), bytes)
            .map_err(|e| e.to_string())?;
    }
    // Only the image and the modules are kept (the package is ~100 MB).
    std::fs::remove_dir_all(&unpacked).map_err(|e| e.to_string())?;
    std::fs::remove_file(&deb).map_err(|e| e.to_string())?;
    std::fs::write(work.join(READY), package).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&work, dir).map_err(|e| e.to_string())
}

/// `<name>.ko[.xz|.zst]` anywhere under the package's module tree.
fn find_module(root: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            let file = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if [".ko", ".ko.xz", ".ko.zst"]
                .iter()
                .any(|ext| file == format!("{name}{ext}"))
            {
                return Some(path);
            }
        }
    }
    None
}

/// The ELF kernel inside a bzImage: the setup header says where the
/// compressed payload is; its last 4 bytes are the uncompressed size,
/// which the result must match. None for compressions we do not handle.
fn uncompressed_elf(bz: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let u32_at = |off: usize| -> Result<u32, String> {
        bz.get(off..off + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| "bzImage too short".to_string())
    };
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        return Err("not a bzImage (no HdrS)".into());
    }
    let setup_sects = match bz[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)? as usize;
    let len = u32_at(0x24c)? as usize;
    let payload = bz
        .get(start..start + len)
        .ok_or_else(|| "payload outside the bzImage".to_string())?;
    let (stream, size) = payload.split_at(len - 4);
    let size = u32::from_le_bytes(size.try_into().unwrap()) as usize;
    let tool = if stream.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz"
    } else if stream.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd"
    } else if stream.starts_with(&[0x1f, 0x8b]) {
        "gzip"
    } else {
        return Ok(None);
    };
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{tool}: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let input = stream.to_vec();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = feeder.join();
    if !out.status.success() || out.stdout.len() != size || !out.stdout.starts_with(b"\x7fELF") {
        return Err(format!(
            "{tool} -dc of the kernel payload: {} ({} bytes, expected {size}): {}",
            out.status,
            out.stdout.len(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Some(out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_is_by_number_not_by_text() {
        let names = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-56-amd64"];
        assert_eq!(
            names.iter().max_by_key(|n| version_key(n)),
            Some(&"linux-image-6.1.0-56-amd64")
        );
    }
}
