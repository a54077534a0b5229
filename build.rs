//! Compiles the kernel programs under `bpf/` with clang (BPF target, CO-RE,
//! BTF) into OUT_DIR; the agent embeds the objects.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Kernel programs, one object each (more come with later features).
/// netagent.bpf.c includes its parts from bpf/netagent/ (its programs share
/// one set of maps, so they stay one object); `rerun-if-changed=bpf` below
/// covers subfolders too (cargo compares the newest mtime under it).
const SOURCES: &[&str] = &["netagent.bpf.c", "iface.bpf.c", "node.bpf.c"];

const SETUP_HINT: &str = "run `sudo scripts/setup.sh` (installs clang and libbpf-dev)";

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    let (target_arch, multiarch) = match arch.as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        other => panic!("netagent: unsupported target architecture {other}"),
    };
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=bpf");

    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!("netagent: libbpf headers (/usr/include/bpf) not found: {SETUP_HINT}");
    }
    for src in SOURCES {
        let obj = out.join(src.replace(".c", ".o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            .arg(format!("-D__TARGET_ARCH_{target_arch}"))
            .arg(format!("-I/usr/include/{multiarch}"))
            .arg("-Ibpf")
            .arg("-c")
            .arg(Path::new("bpf").join(src))
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| panic!("netagent: cannot run `{clang}` ({e}): {SETUP_HINT}"));
        if !status.success() {
            panic!("netagent: clang failed to compile bpf/{src}");
        }
    }
}
