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

/// Checks that need the sock:sock_send_length/sock_recv_length
/// tracepoints: with neither them nor a fallback hook, UDP datagrams and
/// send->recv durations are not counted. Debian 12's 6.1 lacks both
/// tracepoints, and the fallback hooks are not in the agent yet (issue 8):
/// once they are, these checks pass and must leave the lists below.
const SEND_RECV_GAPS: &[&str] = &[
    "udp4_sends",
    "udp6_sends",
    "udp4_edge",
    "udp6_edge",
    "tx_duration_tcp",
    "tx_duration_udp",
    "connect_series_exact",
];

/// Switches off the preferred send/recv hooks on a kernel that has them.
const WITHOUT_SEND_RECV_TRACEPOINTS: &str = "debug:\n  disable_probes:\n    \
     - \"tracepoint/sock:sock_send_length\"\n    - \"tracepoint/sock:sock_recv_length\"\n";

#[test]
fn debian_6_1_under_qemu() {
    let _g = serial();
    guest_row(DEBIAN_6_1, None, SEND_RECV_GAPS);
}

#[test]
fn debian_6_12_under_qemu() {
    let _g = serial();
    guest_row(DEBIAN_6_12, None, &[]);
}

#[test]
fn host_kernel() {
    let _g = serial();
    host_row("host", None, &[]);
}

#[test]
fn host_kernel_without_send_recv_tracepoints() {
    let _g = serial();
    host_row(
        "host-no-send-recv-tracepoints",
        Some(WITHOUT_SEND_RECV_TRACEPOINTS),
        SEND_RECV_GAPS,
    );
}
