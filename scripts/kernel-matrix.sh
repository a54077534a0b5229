#!/usr/bin/env bash
# The kernel matrix on its own: Debian's 6.1 and 6.12 kernels under qemu
# (TCG) plus the host's kernel, each running the scenario driver
# (src/bin/netagent-matrix). Prints per-row timings and `netagent probe`
# output; console logs and probe output stay in target/kernel-matrix/.
# Arguments go to the test filter, e.g. `scripts/kernel-matrix.sh debian_6_1`.
# NETAGENT_MATRIX_EXTRA='<yaml>' adds agent config to every row;
# NETAGENT_MATRIX_BPFTOOL=1 puts bpftool into the guests (maps dumped on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo test --locked --test kernel_matrix -- --nocapture --test-threads=1 "$@"
