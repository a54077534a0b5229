#!/usr/bin/env bash
# A private Docker daemon for one test run, so that test runs never share a
# daemon (with each other, or with a Docker the machine may have):
#
#   test-dockerd.sh start PID   start a dockerd (and its own containerd) for
#                               the run of process PID; prints its host
#                               (unix:///run/netagent-test-docker-PID.sock)
#                               when it answers. A detached watchdog stops it
#                               when PID exits, however it exits (SIGKILL too)
#   test-dockerd.sh stop PID    stop it: containers, dockerd, containerd and
#                               shims, cgroups, mounts, files, and the test's
#                               network namespaces and veths; idempotent
#
# Everything of an instance has PID in its name: socket, pidfile and
# exec-root /run/netagent-test-docker-PID*, data-root
# /var/lib/netagent-test-docker-PID, cgroup parent netagent-test-docker-PID,
# log /tmp/netagent-test-docker-PID.log. `start` first stops instances whose
# process is gone. Only processes of the instance are ever killed: dockerd
# by its pidfile, containerd and shims by the instance's paths on their
# command line, container processes by the instance's cgroups.
#
# The daemon reads no /etc/docker/daemon.json, creates no bridge
# (--bridge=none: containers use the host network, like the DaemonSet's
# hostNetwork), writes no iptables rules, and limits containers to
# nofile=20000, nproc=32768 (root here lacks CAP_SYS_RESOURCE to go higher).
# Needs root and dockerd (Debian package docker.io, from scripts/setup.sh).
set -euo pipefail

cmd=${1:-}
pid=${2:-}
[[ "$pid" =~ ^[0-9]+$ ]] || { echo "usage: $0 start|stop PID" >&2; exit 2; }
script=$(readlink -f "$0")
# The client that comes with this dockerd: next to it, or in the sibling
# bin/ (Debian: /usr/sbin/dockerd, /usr/bin/docker). Another docker CLI may
# come first in PATH.
docker=docker
if command -v dockerd >/dev/null; then
  d=$(dirname "$(command -v dockerd)")
  for c in "$d/docker" "$(dirname "$d")/bin/docker"; do
    if [ -x "$c" ]; then docker=$c; break; fi
  done
fi

name() { echo "netagent-test-docker-$1"; }
exec_root() { echo "/run/$(name "$1")"; }
data_root() { echo "/var/lib/$(name "$1")"; }
sock() { echo "/run/$(name "$1").sock"; }
pidfile() { echo "/run/$(name "$1").pid"; }
ownerfile() { echo "/run/$(name "$1").owner"; }
logfile() { echo "/tmp/$(name "$1").log"; }

# Start time of process $1 (field 22 of /proc/PID/stat), empty if gone.
start_time() {
  sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'
}

# The owner is alive: same pid, same start time as recorded at start.
owner_alive() {
  local now
  now=$(start_time "$1")
  [ -n "$now" ] && [ "$now" = "$(cat "$(ownerfile "$1")" 2>/dev/null)" ]
}

# Processes whose command line names a path of instance $1.
instance_pids() {
  local er dr p
  er=$(exec_root "$1")
  dr=$(data_root "$1")
  for p in /proc/[0-9]*; do
    # (braces: a process gone meanwhile fails the redirection, quietly)
    { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -qE "($er|$dr)([/ ]|\$)" && echo "${p#/proc/}"
  done
  return 0
}

# Processes in the instance's container cgroups (every hierarchy).
cgroup_pids() {
  local d
  for d in /sys/fs/cgroup/*/"$(name "$1")" /sys/fs/cgroup/"$(name "$1")"; do
    [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  return 0
}

stop_instance() {
  local p="$1" dockerd_pid i left
  local host="unix://$(sock "$p")" er dr
  er=$(exec_root "$p")
  dr=$(data_root "$p")
  # Containers first, while the daemon still answers (bounded).
  if [ -S "$(sock "$p")" ]; then
    ids=$(timeout 20 "$docker" -H "$host" ps -aq 2>/dev/null || true)
    [ -n "$ids" ] && timeout 60 "$docker" -H "$host" rm -f $ids >/dev/null 2>&1 || true
  fi
  # dockerd: SIGTERM (it stops its containerd), SIGKILL after 20 s.
  dockerd_pid=$(cat "$(pidfile "$p")" 2>/dev/null || true)
  if [ -n "$dockerd_pid" ] && { tr '\0' ' ' < "/proc/$dockerd_pid/cmdline"; } 2>/dev/null | grep -q "$er"; then
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for i in $(seq 1 200); do
      [ -e "/proc/$dockerd_pid" ] || break
      sleep 0.1
    done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  # Whatever is left of the instance: containerd, shims, container processes.
  for i in 1 2 3 4 5; do
    left=$( (instance_pids "$p"; cgroup_pids "$p") | sort -u)
    [ -z "$left" ] && break
    kill -KILL $left 2>/dev/null || true
    sleep 0.2
  done
  # Its cgroups (deepest first).
  for d in /sys/fs/cgroup/*/"$(name "$p")" /sys/fs/cgroup/"$(name "$p")"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # Its mounts (overlays, shm, netns), innermost first; then its files.
  awk -v a="$er" -v b="$dr" '$5 == a || index($5, a "/") == 1 || $5 == b || index($5, b "/") == 1 {print $5}' \
    /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$er" "$dr"
  # The test's own network namespaces and veths (tests/common/netns.rs and
  # hostlink.rs put the test process's pid in their names: na-TAG-PID-*,
  # nahPID*): gone with the run too, not only at the next run's start.
  # (`|| true`: grep finding nothing must not end the script under pipefail)
  { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^na-[a-z0-9]+-$p-" || true; } | while read -r n; do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
  { ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^nah${p}[a-z]" || true; } | while read -r l; do
    ip link del "$l" 2>/dev/null || true
  done
  rm -f "$(sock "$p")" "$(pidfile "$p")" "$(logfile "$p")"
  # The watchdog, unless this is it.
  wd=$(cat "$(ownerfile "$p").watchdog" 2>/dev/null || true)
  if [ -n "$wd" ] && [ "$wd" != "$$" ]; then
    kill "$wd" 2>/dev/null || true
  fi
  rm -f "$(ownerfile "$p")" "$(ownerfile "$p").watchdog"
}

case "$cmd" in
  start)
    [ "$(id -u)" -eq 0 ] || { echo "test-dockerd: needs root" >&2; exit 1; }
    command -v dockerd >/dev/null || { echo "test-dockerd: dockerd not installed (Debian package docker.io, scripts/setup.sh)" >&2; exit 1; }
    # Instances of runs that are gone (their watchdog did not get to run).
    for f in /run/netagent-test-docker-*.owner; do
      [ -e "$f" ] || continue
      old=${f#/run/netagent-test-docker-}
      old=${old%.owner}
      if [ "$old" = "$pid" ] || ! owner_alive "$old"; then
        echo "test-dockerd: stopping the instance of gone run $old" >&2
        stop_instance "$old"
      fi
    done
    owner_start=$(start_time "$pid")
    [ -n "$owner_start" ] || { echo "test-dockerd: process $pid does not exist" >&2; exit 1; }
    echo "$owner_start" > "$(ownerfile "$pid")"
    er=$(exec_root "$pid")
    dr=$(data_root "$pid")
    mkdir -p "$er" "$dr"
    echo '{}' > "$er/daemon.json"
    # The watchdog first: it also cleans up when the start below fails.
    setsid "$script" watch "$pid" </dev/null >/dev/null 2>&1 &
    echo $! > "$(ownerfile "$pid").watchdog"
    # Its own session: a terminal's Ctrl-C reaches the test, not the daemon
    # (the test's drop or the watchdog stops it).
    setsid dockerd \
      --config-file "$er/daemon.json" \
      --data-root "$dr" \
      --exec-root "$er" \
      --pidfile "$(pidfile "$pid")" \
      -H "unix://$(sock "$pid")" \
      --bridge=none --iptables=false --ip-masq=false --ip-forward=false --userland-proxy=false \
      --cgroup-parent "/$(name "$pid")" \
      --exec-opt native.cgroupdriver=cgroupfs \
      --storage-driver overlay2 \
      --default-ulimit nofile=20000:20000 --default-ulimit nproc=32768:32768 \
      --log-level warn \
      </dev/null >"$(logfile "$pid")" 2>&1 &
    dockerd=$!
    for i in $(seq 1 600); do
      if "$docker" -H "unix://$(sock "$pid")" version >/dev/null 2>&1; then
        echo "unix://$(sock "$pid")"
        exit 0
      fi
      if ! kill -0 "$dockerd" 2>/dev/null; then
        break
      fi
      sleep 0.1
    done
    echo "test-dockerd: dockerd did not come up; its log:" >&2
    tail -n 30 "$(logfile "$pid")" >&2 || true
    stop_instance "$pid"
    exit 1
    ;;
  stop)
    stop_instance "$pid"
    ;;
  watch)
    # (internal) the watchdog: waits for the owner to go, then stops.
    while owner_alive "$pid"; do sleep 1; done
    [ -e "$(ownerfile "$pid")" ] && stop_instance "$pid"
    exit 0
    ;;
  *)
    echo "usage: $0 start|stop PID" >&2
    exit 2
    ;;
esac
