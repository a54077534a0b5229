#!/usr/bin/env bash
# netagent performance suite: one command.
#
#   sudo scripts/bench/run.sh [--smoke] [--out DIR] [suite options…]
#
# Installs the tools (scripts/setup.sh: nginx-light, wrk, sockperf, iperf3,
# bpftrace, libbpf-tools, bpftool, python3-matplotlib), builds the release
# binaries (the agent and netagent-testgen, which is in tools/), then runs
# scripts/bench/suite.py (see its --help). Results go
# to DIR (default target/bench): results.md, results.json, scaling.png,
# bench.log. --smoke is the short CI form (~2 min).
# NETAGENT_BENCH_NO_BUILD=1 skips setup and build (binaries given with
# --agent/--testgen, as tests/bench_smoke.rs does).
# While the suite runs, scripts/net-guard.sh counts packets sent anywhere but
# loopback and the benchmark's namespace subnets; any such packet fails the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (loads BPF programs, creates network namespaces)" >&2; exit 1; }
if [ -z "${NETAGENT_BENCH_NO_BUILD:-}" ]; then
  scripts/setup.sh --bench
  cargo build --release --locked --workspace --bins >&2
fi
# Debian's python3 has python3-matplotlib (from apt) for the plot.
export PYTHONDONTWRITEBYTECODE=1
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
scripts/net-guard.sh start $$
trap 'scripts/net-guard.sh stop $$' EXIT
status=0
"$py" scripts/bench/suite.py --command "sudo scripts/bench/run.sh $*" "$@" || status=$?
scripts/net-guard.sh report $$ || status=1
exit "$status"
