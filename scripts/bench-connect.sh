#!/usr/bin/env bash
# End-to-end benchmark for connection churn (the load of the core issue):
# the same bounded connect workload without and with netagent, interleaved
# A/B/A/B in one run so machine drift cancels, plus the kernel cost of each
# BPF program from BPF run stats (run_time_ns / run_cnt).
#
#   scripts/bench-connect.sh [--rounds N] [--seconds S] [--rate R] [--threads T]
#
# --rate 0 (default) runs the generator unthrottled, so throughput shows the
# agent's cost. Prints a Markdown table (also saved to target/bench/connect.md).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 seconds=10 rate=0 threads=2
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (loads BPF programs)" >&2; exit 1; }
[ "$rate" = 0 ] && rate=100000000

scripts/setup.sh
cargo build --release --locked --bins >&2
agent=target/release/netagent
gen=target/release/netagent-testgen
out=target/bench; mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${old_stats:-}" ] && sysctl -qw kernel.bpf_stats_enabled="$old_stats"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

old_stats=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1

# The server runs for the whole benchmark; it is not a target.
"$gen" --comm bench-srv serve --tcp4 0 --max-seconds $(( rounds * 2 * (seconds + 10) + 60 )) > "$work/srv.json" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/srv.json" ] && break; sleep 0.1; done
port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tcp4"])' "$work/srv.json")

cat > "$work/config.yaml" <<EOC
targets:
  - name: bench
    match_comm: bench-load
export:
  listen_addr: "127.0.0.1:0"
EOC

run_load() { # $1 = label; prints the generator's JSON with the label added
  "$gen" --comm bench-load load --tcp "127.0.0.1:$port" --rate "$rate" --seconds "$seconds" --threads "$threads" \
    | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); d["config"]=sys.argv[1]; print(json.dumps(d))' "$1"
}

prog_stats() { # JSON list of our programs' run stats
  bpftool -j prog show | python3 -c '
import json, sys
ours = ("on_inet_sock_set_state", "on_sock_send_length", "on_sock_recv_length", "on_sendmsg4", "on_sendmsg6")
progs = [p for p in json.load(sys.stdin) if any(o.startswith(p.get("name", "-")) for o in ours) and len(p.get("name", "")) >= 10]
print(json.dumps([{"name": p["name"], "run_cnt": p.get("run_cnt", 0), "run_time_ns": p.get("run_time_ns", 0)} for p in progs]))'
}

: > "$work/results.jsonl"
for r in $(seq "$rounds"); do
  echo "round $r/$rounds: baseline" >&2
  run_load baseline >> "$work/results.jsonl"
  echo "round $r/$rounds: netagent" >&2
  "$agent" --config "$work/config.yaml" --log-level warn &
  apid=$!; pids+=($apid)
  for _ in $(seq 100); do
    [ "$(prog_stats | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -ge 5 ] && break; sleep 0.1
  done
  before=$(prog_stats)
  run_load netagent >> "$work/results.jsonl"
  after=$(prog_stats)
  python3 -c 'import json,sys; print(json.dumps({"config":"bpf","before":json.loads(sys.argv[1]),"after":json.loads(sys.argv[2])}))' "$before" "$after" >> "$work/results.jsonl"
  kill -TERM "$apid"; wait "$apid" || true
done

python3 - "$work/results.jsonl" "$rounds" "$seconds" "$threads" "$rate" <<'PY' | tee "$out/connect.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, seconds, threads, rate = sys.argv[2:6]
base = [r["rate"] for r in rows if r["config"] == "baseline"]
agent = [r["rate"] for r in rows if r["config"] == "netagent"]
fails = sum(r["failed"] for r in rows if r["config"] in ("baseline", "netagent"))
print(f"Workload: TCP connect+close (SO_LINGER 0) to 127.0.0.1, {threads} generator threads, "
      f"{seconds} s per run, {rounds} rounds interleaved baseline/netagent, "
      f"rate limit {'none' if int(rate) >= 10**8 else rate + '/s'}; failed connects: {fails}.\n")
print("| round | baseline connects/s | netagent connects/s | ratio |")
print("|---|---|---|---|")
for i, (b, a) in enumerate(zip(base, agent), 1):
    print(f"| {i} | {b:,.0f} | {a:,.0f} | {a / b:.3f} |")
mb, ma = statistics.median(base), statistics.median(agent)
print(f"| median | {mb:,.0f} | {ma:,.0f} | **{ma / mb:.3f}** |\n")
tot = {}
for r in rows:
    if r["config"] != "bpf":
        continue
    before = {p["name"]: p for p in r["before"]}
    for p in r["after"]:
        b = before.get(p["name"], {"run_cnt": 0, "run_time_ns": 0})
        t = tot.setdefault(p["name"], [0, 0])
        t[0] += p["run_cnt"] - b["run_cnt"]
        t[1] += p["run_time_ns"] - b["run_time_ns"]
print("| BPF program | runs | mean ns/run |")
print("|---|---|---|")
for name, (cnt, ns) in sorted(tot.items()):
    print(f"| {name} | {cnt:,} | {ns / cnt:.1f} |" if cnt else f"| {name} | 0 | - |")
allc = sum(c for c, _ in tot.values()); alln = sum(n for _, n in tot.values())
if allc:
    print(f"| all | {allc:,} | {alln / allc:.1f} |")
PY
