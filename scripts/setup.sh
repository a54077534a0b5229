#!/usr/bin/env bash
# Installs the system packages netagent needs to build, run and test.
# Idempotent: installs only what is missing. Debian/Ubuntu (apt) only.
# `--agent-only`: skip the deployment-test tools (used by scripts/run.sh).
set -euo pipefail

# build: clang compiles bpf/*.c; libbpf-dev has bpf_helpers.h; linux-libc-dev the uapi headers.
# tests: bpftool (layout and cleanup checks), prometheus (promtool + server), setpriv (util-linux),
#        nft (firewalls of the netns test hosts), chromium (headless test of the web page),
#        qemu-system-x86 + xz-utils/zstd/binutils (kernel matrix: boot Debian kernels, unpack them,
#        strip the binaries put into the initramfs), systemd + systemd-journal-remote (log
#        patterns test: journalctl reads a journal written by systemd-journal-remote),
#        docker.io + containerd + podman + runc + busybox-static (tests/runtimes_*.rs: real
#        containers of each runtime from a locally built image; the tests start and stop private
#        daemons themselves, and no daemon is started at install, see below),
#        debootstrap (the image test, tests/deploy/image.rs: its own dockerd and containerd;
#        the base image made locally, below, since no registry is used).
# `--bench`: only what the agent and the performance suite need (scripts/bench/run.sh).
packages=(clang llvm libbpf-dev linux-libc-dev iproute2)
# bench (scripts/bench/, tests/bench_smoke.rs): workloads (nginx-light + wrk, sockperf, iperf3),
#        the peers compared (bpftrace, libbpf-tools' tcpstates), bpftool for BPF run stats,
#        matplotlib for the scaling plot.
#        nftables for the network guard (scripts/net-guard.sh).
#        python3-venv for drain3, the log miner the log-accuracy benchmark compares with
#        (installed below into target/bench-tools/venv, not into the system's Python).
bench_packages=(nginx-light wrk sockperf iperf3 bpftrace libbpf-tools bpftool python3-matplotlib nftables python3-venv)
case "${1:-}" in
  --agent-only) ;;
  --bench) packages+=("${bench_packages[@]}") ;;
  *)
    packages+=(bpftool prometheus util-linux nftables curl chromium "${bench_packages[@]}")
    packages+=(qemu-system-x86 xz-utils zstd binutils systemd systemd-journal-remote)
    packages+=(docker.io containerd podman runc busybox-static debootstrap)
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
  else
    SUDO=
  fi
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  # Daemons of the packages (docker, containerd) are not started at install:
  # the tests run private ones, and a system dockerd would add a bridge and
  # iptables rules. A policy-rc.d that refuses every start is put in place
  # for the install when there is none (Debian's own mechanism).
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# netagent scripts/setup.sh: no service starts during this install\nexit 101\n' \
      | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  # No recommends: the prometheus package would pull in node-exporter and friends.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy" ]; then
    $SUDO rm -f "$policy"
    trap - EXIT
  fi
fi

# The kernel matrix (tests/kernel_matrix.rs) picks the newest Debian kernel
# packages with apt-cache, which needs package lists.
if [ "${1:-}" != "--agent-only" ] \
   && [ -z "$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' 2>/dev/null)" ]; then
  echo "setup: refreshing apt package lists for the kernel matrix" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo apt-get update -qq; else apt-get update -qq; fi
fi

# The container image test's base (a Debian rootfs made with debootstrap,
# imported by the test into its own dockerd): made once, here, because the
# suite itself downloads nothing. A no-op when it exists.
if [ -z "${1:-}" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    "$(dirname "$0")/image-base.sh"
  else
    sudo "$(dirname "$0")/image-base.sh"
  fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup, stable >= 1.95)" >&2; exit 1; }

# drain3 (PyPI) for the log-accuracy benchmark (tests/log_accuracy.rs, bench;
# scripts/bench/drain3_accuracy.py), in its own venv; a stamp records the
# version, so nothing is fetched when it is there. Runs before the network
# guard of the performance suite.
if [ "${1:-}" != "--agent-only" ]; then
  DRAIN3=drain3==0.9.11
  tools="$(dirname "$0")/../target/bench-tools"
  if [ "$(cat "$tools/installed" 2>/dev/null)" != "$DRAIN3" ]; then
    echo "setup: installing $DRAIN3 into $tools/venv" >&2
    rm -rf "$tools/venv"
    mkdir -p "$tools"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "$DRAIN3"
    printf '%s' "$DRAIN3" > "$tools/installed"
  fi
fi
# Validators for the deployment tests (Python venv, npm packages, cargo-deb);
# not needed just to build and run the agent.
if [ -z "${1:-}" ]; then
  "$(dirname "$0")/setup-deploy.sh"
fi
