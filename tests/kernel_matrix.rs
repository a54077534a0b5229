//! Kernel compatibility matrix: one scenario (exact TCP connects v4/v6,
//! UDP datagrams, send->recv durations, a refused connect, loopback
//! interface counters, clean shutdown with nothing left loaded) on
//! Debian's 6.1 and 6.12 kernels booted under qemu, and on the host's own
//! kernel, also with hooks switched off to force the fallbacks.
//!
//! `cargo test --test kernel_matrix -- --nocapture` prints each row's
//! timings and `netagent probe` output (also in target/kernel-matrix/).

mod common;
mod matrix;

use common::serial;
use matrix::kernels::{DEBIAN_6_1, DEBIAN_6_12};
use matrix::{guest_row, host_row};

/// Downloads and unpacks every kernel the guest rows boot, and nothing
/// else: scripts/test.sh runs it before the network guard starts, so the
/// suite itself sends nothing off the machine. Ignored in the normal run
/// (the rows fetch on their own when the cache is empty).
#[test]
#[ignore = "run by scripts/test.sh before the suite: -- --ignored fetch_kernels"]
fn fetch_kernels() {
    let cache = matrix::target_dir().join("kernels");
    for series in [DEBIAN_6_1, DEBIAN_6_12] {
        let k = matrix::kernels::fetch(series, &cache)
            .unwrap_or_else(|e| panic!("Debian kernel {}: {e}", series.label));
        eprintln!("kernel {}: {}", series.label, k.package);
    }
}

/// Forces the message hooks down their fallback list: each list switches
/// off the hooks before the one the row expects.
const NO_TRACEPOINTS: &str = "debug:\n  disable_probes: [\"messages:tracepoint\"]\n";
const KPROBES: &str = "debug:\n  disable_probes: [\"messages:tracepoint\", \"messages:fexit\"]\n";
const SYSCALLS: &str = "debug:\n  disable_probes: [\"messages:tracepoint\", \"messages:fexit\", \
                        \"messages:kprobe\"]\n";

/// Debian 12's 6.1 has no sock_send_length/sock_recv_length tracepoints:
/// messages go through fexit on inet_sendmsg/inet_recvmsg.
#[test]
fn debian_6_1_under_qemu() {
    let _g = serial();
    guest_row(DEBIAN_6_1, "", None, &[], "fexit");
}

/// 6.1 has kprobes too: the third hook, forced.
#[test]
fn debian_6_1_kprobes_under_qemu() {
    let _g = serial();
    guest_row(DEBIAN_6_1, "-kprobe", Some(KPROBES), &[], "kprobe");
}

#[test]
fn debian_6_12_under_qemu() {
    let _g = serial();
    guest_row(DEBIAN_6_12, "", None, &[], "tracepoint");
}

/// fexit again on a kernel that has the tracepoints, forced.
#[test]
fn debian_6_12_fexit_under_qemu() {
    let _g = serial();
    guest_row(DEBIAN_6_12, "-fexit", Some(NO_TRACEPOINTS), &[], "fexit");
}

#[test]
fn host_kernel() {
    let _g = serial();
    host_row("host", None, &[], "tracepoint");
}

/// On the host fexit and kprobes cannot load: the last resort, forced.
#[test]
fn host_kernel_with_syscall_hooks() {
    let _g = serial();
    host_row("host-syscalls", Some(SYSCALLS), &[], "syscalls");
}
