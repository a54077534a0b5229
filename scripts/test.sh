#!/usr/bin/env bash
# The whole test suite: format, lints, unit and end-to-end tests that load
# the real BPF programs (root needed; under CI=true a test that cannot run
# fails instead of skipping), for the whole workspace: the agent and its
# development tools (tools/: netagent-testgen, netagent-matrix).
#
# Everything the suite downloads (packages, crates, the kernel matrix's
# Debian kernels) is fetched first; then a network guard
# (scripts/net-guard.sh) counts every packet sent anywhere but loopback and
# the suite's own namespace subnets, and the run fails if there was one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fetch --locked
if [ "$(id -u)" -eq 0 ]; then
  cargo test --locked --test kernel_matrix -- --ignored --exact fetch_kernels
fi

guard=""
if [ "$(id -u)" -eq 0 ]; then
  scripts/net-guard.sh start $$
  guard=$$
  trap 'scripts/net-guard.sh stop "$guard"' EXIT
elif [ "${CI:-}" = "true" ]; then
  echo "test.sh: the network guard needs root (nftables)" >&2
  exit 1
else
  echo "SKIP: network guard (needs root)" >&2
fi

status=0
{
  cargo fmt --all --check &&
  cargo clippy --workspace --locked --offline --all-targets -- -D warnings &&
  # Everything `cargo test` builds, plus the tools' binaries, which the
  # end-to-end tests run from next to the agent's (tests/common/tools.rs);
  # built here, the tests need not build them themselves.
  cargo build --workspace --locked --offline --all-targets &&
  NETAGENT_TESTS_NO_BUILD=1 cargo test --workspace --locked --offline --all-targets
} || status=$?

if [ -n "$guard" ]; then
  scripts/net-guard.sh report "$guard" || status=1
fi
exit "$status"
