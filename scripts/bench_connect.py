#!/usr/bin/env python3
"""Connection-churn benchmark: the same bounded workload without and with
netagent, interleaved A/B/A/B in one run so machine drift cancels out.

Per run it records the generator's connects/s and the CPU time of the
generator, the server and the agent per connect. Throughput runs have BPF stats off;
one extra run with kernel.bpf_stats_enabled=1 gives each program's mean
ns per run (run_time_ns / run_cnt). Prints Markdown; also writes
target/bench/connect-<rate>.md.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

AGENT = "target/release/netagent"
GEN = "target/release/netagent-testgen"
OURS = ("on_inet_sock_set_state", "on_tcp_retransmit_skb", "on_tcp_send_reset",
        "on_tcp_receive_reset", "on_sock_send_length", "on_sock_recv_length",
        "on_sendmsg4", "on_sendmsg6", "on_recvmsg4", "on_recvmsg6",
        "on_tc_ingress", "on_tc_egress")


def proc_cpu_s(pid):
    """utime+stime of a running process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def prog_stats():
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, check=True).stdout
    stats = {}
    for p in json.loads(out or b"[]"):
        name = p.get("name", "")
        if len(name) >= 10 and any(o.startswith(name) for o in OURS):
            stats[name] = (p.get("run_cnt", 0), p.get("run_time_ns", 0))
    return stats


def set_stats(on):
    subprocess.run(["sysctl", "-qw", f"kernel.bpf_stats_enabled={1 if on else 0}"], check=True)


class Agent:
    def __init__(self, config):
        self.p = subprocess.Popen([AGENT, "--config", config, "--log-level", "warn"])
        deadline = time.time() + 20
        while len(prog_stats()) < len(OURS):
            if self.p.poll() is not None or time.time() > deadline:
                sys.exit("bench: agent failed to start")
            time.sleep(0.1)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=20)


def load(port, args, pids):
    """One generator run. CPU is that of the generator, the server and the
    agent (kernel work on loopback is charged to them), per connect."""
    c0 = children_cpu_s()
    p0 = [proc_cpu_s(p) for p in pids]
    out = subprocess.run(
        [GEN, "--comm", "bench-load", "load", "--tcp", f"127.0.0.1:{port}",
         "--rate", str(args.rate or 100_000_000), "--seconds", str(args.seconds),
         "--threads", str(args.threads)],
        capture_output=True, text=True)
    cpu = children_cpu_s() - c0 + sum(proc_cpu_s(p) - c for p, c in zip(pids, p0))
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["cpu_us_per_connect"] = cpu * 1e6 / max(r["attempts"], 1)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=0, help="connects/s; 0 = unthrottled")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    old_stats = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    tmp = tempfile.mkdtemp(prefix="netagent-bench-")
    config = os.path.join(tmp, "config.yaml")
    with open(config, "w") as f:
        f.write('targets:\n  - name: bench\n    match_comm: bench-load\n'
                'export:\n  listen_addr: "127.0.0.1:0"\n')
    max_s = args.rounds * 2 * (args.seconds + 15) + 120
    srv = subprocess.Popen([GEN, "--comm", "bench-srv", "serve", "--tcp4", "0",
                            "--max-seconds", str(max_s)], stdout=subprocess.PIPE, text=True)
    agent = None
    try:
        port = json.loads(srv.stdout.readline())["tcp4"]
        set_stats(False)
        runs = []
        for r in range(1, args.rounds + 1):
            print(f"round {r}/{args.rounds}: baseline", file=sys.stderr)
            runs.append(("baseline", load(port, args, [srv.pid])))
            print(f"round {r}/{args.rounds}: netagent", file=sys.stderr)
            agent = Agent(config)
            runs.append(("netagent", load(port, args, [srv.pid, agent.p.pid])))
            agent.stop()
            agent = None
        print("kernel cost run (BPF stats on)", file=sys.stderr)
        agent = Agent(config)
        set_stats(True)
        before = prog_stats()
        stats_run = load(port, args, [srv.pid, agent.p.pid])
        after = prog_stats()
        set_stats(False)
        agent.stop()
        agent = None
    finally:
        if agent:
            agent.p.kill()
        srv.kill()
        srv.wait()
        set_stats(old_stats == "1")
        shutil.rmtree(tmp, ignore_errors=True)

    base = [r for c, r in runs if c == "baseline"]
    witha = [r for c, r in runs if c == "netagent"]
    failed = sum(r["failed"] for _, r in runs) + stats_run["failed"]
    lines = []
    p = lines.append
    rate = "unthrottled" if not args.rate else f"target {args.rate:,}/s"
    p(f"Workload: TCP connect+close (SO_LINGER 0) to 127.0.0.1, {args.threads} generator threads, "
      f"{rate}, {args.seconds} s per run, {args.rounds} rounds interleaved baseline/netagent; "
      f"failed connects: {failed}.\n")
    p("| round | baseline connects/s | netagent connects/s | ratio | baseline CPU µs/connect | netagent CPU µs/connect | ratio |")
    p("|---|---|---|---|---|---|---|")
    for i, (b, a) in enumerate(zip(base, witha), 1):
        p(f"| {i} | {b['rate']:,.0f} | {a['rate']:,.0f} | {a['rate'] / b['rate']:.3f} "
          f"| {b['cpu_us_per_connect']:.1f} | {a['cpu_us_per_connect']:.1f} "
          f"| {a['cpu_us_per_connect'] / b['cpu_us_per_connect']:.3f} |")
    mb = statistics.median(r["rate"] for r in base)
    ma = statistics.median(r["rate"] for r in witha)
    cb = statistics.median(r["cpu_us_per_connect"] for r in base)
    ca = statistics.median(r["cpu_us_per_connect"] for r in witha)
    p(f"| median | {mb:,.0f} | {ma:,.0f} | **{ma / mb:.3f}** | {cb:.1f} | {ca:.1f} | **{ca / cb:.3f}** |\n")
    p(f"Kernel cost (separate run with BPF stats on, {stats_run['attempts']:,} connects at {stats_run['rate']:,.0f}/s):\n")
    p("| BPF program | runs | runs per connect | mean ns/run |")
    p("|---|---|---|---|")
    tc = tn = 0
    for name in sorted(after):
        c = after[name][0] - before.get(name, (0, 0))[0]
        n = after[name][1] - before.get(name, (0, 0))[1]
        tc += c
        tn += n
        per = c / max(stats_run["attempts"], 1)
        p(f"| {name} | {c:,} | {per:.2f} | {n / c:.1f} |" if c else f"| {name} | 0 | 0 | - |")
    if tc:
        p(f"| all | {tc:,} | {tc / max(stats_run['attempts'], 1):.2f} | {tn / tc:.1f} |")
        p(f"\nBPF time per connect: {tn / max(stats_run['attempts'], 1):.0f} ns.")
    text = "\n".join(lines)
    print(text)
    os.makedirs("target/bench", exist_ok=True)
    with open(f"target/bench/connect-{args.rate or 'max'}.md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
