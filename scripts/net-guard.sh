#!/usr/bin/env bash
# Counts every packet this machine sends anywhere but loopback and the test
# suite's own network-namespace subnets, while the suite or the benchmark
# runs: tests and benchmarks must stay on the machine.
#
#   net-guard.sh start PID   add the guard table for the run of process PID;
#                            a detached watchdog removes it when PID exits,
#                            however it exits (also SIGKILL)
#   net-guard.sh report PID  print each outside destination with its packets;
#                            exit 1 if there was any
#   net-guard.sh stop PID    remove the table
#
# One nftables table per run, `inet netagent_guard_<PID>`, with a
# postrouting chain (it sees what the root namespace sends, and what it
# forwards for other namespaces) that adds every destination outside the
# allowed sets to a set with a per-element packet counter. Stale tables of
# runs whose process is gone are removed by `start`.
#
# The suite's subnets: tests/common/netns.rs (10.203.0.0/16, fd00:203::/48),
# tests/common/hostlink.rs and scripts/bench (10.204.0.0/16).
# NETAGENT_GUARD_ALLOW adds more (space-separated CIDRs, IPv4 or IPv6).
set -euo pipefail

allow4="127.0.0.0/8, 10.203.0.0/16, 10.204.0.0/16"
allow6="::1/128, fd00:203::/48"
for cidr in ${NETAGENT_GUARD_ALLOW:-}; do
  case "$cidr" in
    *:*) allow6+=", $cidr" ;;
    *) allow4+=", $cidr" ;;
  esac
done

cmd=${1:-}
pid=${2:-}
[[ "$pid" =~ ^[0-9]+$ ]] || { echo "usage: $0 start|report|stop PID" >&2; exit 2; }
table="netagent_guard_$pid"

have_table() { nft list table inet "$1" >/dev/null 2>&1; }

case "$cmd" in
  start)
    command -v nft >/dev/null || { echo "net-guard: nft not installed (Debian package nftables)" >&2; exit 1; }
    # Tables of earlier runs that were killed before their watchdog ran.
    for t in $(nft list tables inet 2>/dev/null | awk '$3 ~ /^netagent_guard_[0-9]+$/ {print $3}'); do
      old=${t#netagent_guard_}
      if ! kill -0 "$old" 2>/dev/null || [ "$old" = "$pid" ]; then
        nft delete table inet "$t"
      fi
    done
    nft -f - <<EOF
table inet $table {
  set allow4 { type ipv4_addr; flags interval; elements = { $allow4 } }
  set allow6 { type ipv6_addr; flags interval; elements = { $allow6 } }
  set seen4 { type ipv4_addr . ifname; size 65535; flags dynamic; counter; }
  set seen6 { type ipv6_addr . ifname; size 65535; flags dynamic; counter; }
  chain postrouting {
    type filter hook postrouting priority 0; policy accept;
    oifname "lo" return
    ip daddr != @allow4 update @seen4 { ip daddr . oifname }
    ip6 daddr != @allow6 update @seen6 { ip6 daddr . oifname }
  }
}
EOF
    # The watchdog outlives a killed run (its own session, no terminal).
    setsid sh -c "while kill -0 $pid 2>/dev/null; do sleep 1; done; nft delete table inet $table 2>/dev/null" \
      </dev/null >/dev/null 2>&1 &
    echo "net-guard: counting packets to destinations other than loopback and the suite's subnets (table inet $table)" >&2
    ;;
  report)
    have_table "$table" || { echo "net-guard: table inet $table is gone; cannot tell what left the machine" >&2; exit 1; }
    found=$(nft list table inet "$table" | python3 -c '
import re, sys
text = sys.stdin.read()
for name in ("seen4", "seen6"):
    m = re.search(r"set %s \{(.*?)\n\t\}" % name, text, re.S)
    if not m:
        continue
    for dest, dev, pkts, nbytes in re.findall(
            r"([0-9a-fA-F.:]+) \. \"?([^\s\"]+)\"? counter packets (\d+) bytes (\d+)", m.group(1)):
        if int(pkts):
            print(f"{dest} packets={pkts} bytes={nbytes} via {dev}")
')
    if [ -n "$found" ]; then
      echo "net-guard: FAIL: packets left the machine during the run:" >&2
      echo "$found" | sed 's/^/  /' >&2
      exit 1
    fi
    echo "net-guard: 0 packets to destinations other than loopback and the suite's subnets" >&2
    ;;
  stop)
    have_table "$table" && nft delete table inet "$table"
    ;;
  *)
    echo "usage: $0 start|report|stop PID" >&2
    exit 2
    ;;
esac
