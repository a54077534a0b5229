#!/usr/bin/env bash
# Builds netagent and runs it (as root) on the built-in default config:
# every process tracked, metrics on :9102. Extra arguments go to netagent,
# e.g. `scripts/run.sh --config config.example.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --agent-only
cargo build --release --locked -p netagent --bin netagent
if [ "$(id -u)" -ne 0 ]; then
  exec sudo target/release/netagent "$@"
fi
exec target/release/netagent "$@"
