#!/usr/bin/env bash
# Smoke test of a real netagent on this machine (root needed: BPF):
# starts the agent with a temporary config that tracks `curl`, starts a
# local HTTP server on 127.0.0.1 (python3 -m http.server), makes $CONNECTS
# requests to it with curl, prints what the agent counted, and fails unless
# it counted exactly those connects. Everything it starts is bounded in time
# and stopped on exit, also on failure or Ctrl-C.
#
#   scripts/smoke-test.sh                # uses target/release/netagent (built if missing)
#   NETAGENT_BIN=path scripts/smoke-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTS=5
BIN=${NETAGENT_BIN:-target/release/netagent}

say() { printf 'smoke-test: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (loading BPF programs)"
for tool in curl python3; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
if [ ! -x "$BIN" ]; then
  [ -z "${NETAGENT_BIN:-}" ] || die "$BIN is not executable"
  say "building $BIN"
  cargo build --release --locked --bin netagent
fi

tmp=$(mktemp -d -t netagent-smoke.XXXXXX)
agent_pid=
http_pid=
cleanup() {
  local rc=$?
  for pid in $http_pid $agent_pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $http_pid $agent_pid; do
    # Bounded: `timeout` below kills them at the latest after 120 s anyway.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits (at most 10 s) until 127.0.0.1:$1 accepts; bash's /dev/tcp, so the
# probe is not a `curl` connect the agent would count.
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    [ -z "${2:-}" ] || kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

metrics_port=$(free_port)
http_port=$(free_port)
cat > "$tmp/config.yaml" <<EOF
targets:
  - name: "curl"
    match_comm: "curl"
export:
  listen_addr: "127.0.0.1:$metrics_port"
bpf_self:
  enabled: false
EOF

say "starting $BIN (metrics on 127.0.0.1:$metrics_port)"
timeout 120 "$BIN" --config "$tmp/config.yaml" 2>"$tmp/agent.log" &
agent_pid=$!
if ! wait_port "$metrics_port" "$agent_pid"; then
  cat "$tmp/agent.log" >&2
  die "agent not serving on 127.0.0.1:$metrics_port"
fi

mkdir "$tmp/www"
echo "netagent smoke test" > "$tmp/www/index.html"
(cd "$tmp/www" && exec timeout 120 python3 -m http.server "$http_port" --bind 127.0.0.1) >/dev/null 2>&1 &
http_pid=$!
wait_port "$http_port" "$http_pid" || die "http.server not listening on 127.0.0.1:$http_port"

say "$CONNECTS requests with curl to 127.0.0.1:$http_port"
for _ in $(seq "$CONNECTS"); do
  curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$http_port/" || die "curl to the local server failed"
done

# The scrape is a curl connect too, but to another port.
metrics=$(python3 - "$metrics_port" <<'EOF'
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode())
EOF
)
observed=$(grep -E '^netagent_[a-z_]+\{[^}]*process="curl"' <<<"$metrics" | grep -F "\"$http_port\"" \
  | grep -v '_bucket{' || true)
say "counters for curl -> 127.0.0.1:$http_port (histogram buckets left out):"
printf '%s\n' "${observed:-  (none)}"

connects=$(awk -v want="netagent_connect_total{process=\"curl\",proto=\"tcp\",dport=\"$http_port\"}" \
  '$1 == want { print $2 }' <<<"$metrics")
[ -n "$connects" ] || die "no netagent_connect_total for curl -> :$http_port"
[ "$connects" = "$CONNECTS" ] || die "netagent_connect_total = $connects, expected $CONNECTS"
say "OK: $connects connects counted"
