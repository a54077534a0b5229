#!/usr/bin/env bash
# The kernel matrix on its own: Debian's 6.1 and 6.12 kernels under qemu
# (TCG) plus the host's kernel, each running the scenario driver
# (tools/src/bin/netagent-matrix). Prints per-row timings and `netagent probe`
# output; console logs and probe output stay in target/kernel-matrix/.
# Arguments go to the test filter, e.g. `scripts/kernel-matrix.sh debian_6_1`.
# NETAGENT_MATRIX_EXTRA='<yaml>' adds agent config to every row;
# NETAGENT_MATRIX_BPFTOOL=1 puts bpftool into the guests (maps dumped on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The driver and netagent-testgen go into the guests (tests/common/tools.rs).
cargo build -p netagent-tools --bins --locked
exec cargo test --locked --test kernel_matrix -- --nocapture --test-threads=1 "$@"
