#!/usr/bin/env bash
# Cost of BPF building blocks on this machine (docs/BENCHMARKS.md, "Kernel
# hot path"): compiles messages.bpf.c or state.bpf.c, attaches all of its
# programs at once (each sees the same events), runs wrk against a local
# nginx-light and prints run_time_ns / run_cnt per program.
#
#   scripts/bench/primitives/run.sh keepalive [SECONDS]   # messages.bpf.c
#   scripts/bench/primitives/run.sh churn [SECONDS]       # state.bpf.c
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../../.."
mode="${1:?keepalive or churn}"
secs="${2:-8}"
case "$mode" in
keepalive) src=messages.bpf.c; close=() ;;
churn) src=state.bpf.c; close=(-H "Connection: close") ;;
*) echo "usage: $0 keepalive|churn [SECONDS]" >&2; exit 2 ;;
esac
tmp="$(mktemp -d)"
cleanup() {
    [[ -n "${ng:-}" ]] && kill "$ng" 2>/dev/null
    [[ -n "${ld:-}" ]] && kill "$ld" 2>/dev/null
    wait 2>/dev/null || true
    sysctl -qw kernel.bpf_stats_enabled="$stats_before"
    rm -rf "$tmp"
}
stats_before="$(sysctl -n kernel.bpf_stats_enabled)"
trap cleanup EXIT
arch="$(uname -m)"; [[ "$arch" == x86_64 ]] && barch=x86 || barch=arm64
clang -O2 -g -target bpf "-D__TARGET_ARCH_$barch" "-I/usr/include/$arch-linux-gnu" \
    -I"$root/bpf" -c "$here/$src" -o "$tmp/prims.o"
port=$((20000 + RANDOM % 10000))
cat >"$tmp/nginx.conf" <<C
worker_processes 1; daemon off; pid $tmp/nginx.pid; error_log $tmp/error.log warn;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path $tmp/b; proxy_temp_path $tmp/p;
  fastcgi_temp_path $tmp/f; uwsgi_temp_path $tmp/u; scgi_temp_path $tmp/s;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:$port backlog=4096 reuseport; location / { return 200 "ok\n"; } } }
C
nginx -p "$tmp" -c "$tmp/nginx.conf" & ng=$!
sysctl -qw kernel.bpf_stats_enabled=1
python3 "$here/load.py" "$tmp/prims.o" $((secs + 5)) & ld=$!
sleep 2
wrk -t1 -c32 "-d${secs}s" "${close[@]}" "http://127.0.0.1:$port/" | grep -E "Requests/sec"
bpftool -j prog show | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p.get("name", "").startswith(("p", "e")) and p.get("run_cnt") and "_" in p["name"]:
        print("%-22s %12d runs %8.1f ns/run" % (p["name"], p["run_cnt"], p["run_time_ns"] / p["run_cnt"]))'
