#!/usr/bin/env bash
# End-to-end benchmark for TCP connection churn (the load of the core issue).
# Builds release binaries (the agent and tools/' netagent-testgen), then runs
# scripts/bench_connect.py as root:
#
#   scripts/bench-connect.sh [--rounds N] [--seconds S] [--rate R] [--threads T]
#
# See scripts/bench_connect.py for what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (loads BPF programs)" >&2; exit 1; }
scripts/setup.sh
cargo build --release --locked --workspace --bins >&2
exec python3 scripts/bench_connect.py "$@"
