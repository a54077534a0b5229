#!/usr/bin/env bash
# The whole test suite: format, lints, unit tests and the end-to-end tests
# that load the real BPF programs (root needed; under CI=true a test that
# cannot run fails instead of skipping).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
