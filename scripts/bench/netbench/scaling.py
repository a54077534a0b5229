"""Scaling curves and the exact-count run, all on netagent-testgen traffic
(TCP connect + close with SO_LINGER 0, so no TIME_WAIT piles up):

- kernel ns/run vs number of targets (`match_comm` entries);
- agent RSS and /metrics scrape time vs active series;
- kernel ns/run, agent RSS and scrape time vs open connections;
- agent CPU vs event (connection) rate;
- exact counts and nothing lost at the highest rate this machine reaches;
- BPF ns per short connection at 1,000/s and at the highest rate, the
  agent and a baseline binary interleaved (`conn_cost`).
"""
import json
import math
import resource
import subprocess
import sys
import time

from . import bpf
from .procs import BenchError, CpuMeter, Proc, run, status_kib
from .tracers import Netagent, metric_sum, sample

LOAD_COMM = "bench-load"
SERVER_COMM = "bench-srv"
HOLD_COMM = "bench-hold"
UNTHROTTLED = 100_000_000


class TestgenServer:
    """The churn target. It listens on the IPv4 wildcard because the series
    curve spreads connects over 127.1.0.0/16 (all loopback: only addresses
    of this machine are ever connected to)."""

    def __init__(self, testgen, log, max_seconds, bind="0.0.0.0"):
        self.proc = Proc("testgen-serve",
                         [testgen, "--comm", SERVER_COMM, "serve", "--tcp4", "0",
                          "--bind4", bind, "--max-seconds", str(int(max_seconds))],
                         stdout=subprocess.PIPE, stderr=log)
        line = self.proc.p.stdout.readline()
        if not line:
            raise BenchError("testgen serve did not start")
        self.port = json.loads(line)["tcp4"]

    def stop(self):
        self.proc.stop()


def load(testgen, host, port, rate, seconds, threads=2, spread=1):
    """One bounded testgen load run; its JSON summary (attempts, rate, failed)."""
    cmd = [testgen, "--comm", LOAD_COMM, "load", "--tcp", f"{host}:{port}",
           "--rate", str(int(rate)), "--seconds", str(seconds), "--threads", str(threads)]
    if spread > 1:
        cmd += ["--spread", str(spread)]
    out = run(cmd, timeout=seconds + 60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_agent(ctx, name, yaml, binary=None):
    agent = Netagent(name, binary or ctx.agent, yaml, ctx.tmp, ctx.log)
    ctx.prog_ids |= agent.prog_ids
    return agent


def targets_yaml(n):
    """`n` targets: the load generator plus n-1 that never match."""
    names = [LOAD_COMM] + [f"bench-dummy-{i}" for i in range(1, n)]
    return "targets:\n" + "".join(f'  - name: "{c}"\n    match_comm: "{c}"\n' for c in names)


def timed_scrapes(agent, n):
    """Median wall time of n scrapes (s) and the sample count of the last one."""
    times = []
    text = ""
    for _ in range(n):
        t0 = time.perf_counter()
        text = agent.scrape()
        times.append(time.perf_counter() - t0)
    samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return sorted(times)[len(times) // 2], samples


def kernel_cost(agent, fn):
    """Runs fn() with BPF stats on; returns (fn's result, summary of the agent's programs)."""
    with bpf.Stats():
        before = bpf.programs(agent.prog_ids)
        result = fn()
        after = bpf.programs(agent.prog_ids)
    return result, bpf.summary(bpf.delta(before, after))


def targets_curve(ctx, counts, rate, seconds):
    rows = []
    for n in counts:
        ctx.say(f"scaling: {n} targets")
        yaml = targets_yaml(n) if n else ""
        agent = start_agent(ctx, f"netagent-targets-{n}", yaml)
        try:
            r, cost = kernel_cost(
                agent, lambda: load(ctx.testgen, "127.0.0.1", ctx.server.port, rate, seconds))
        finally:
            agent.stop()
        rows.append({"targets": n if n else "all (no targets)", "connects": r["attempts"],
                     "rate": r["rate"], "runs": cost["runs"],
                     "ns_per_run": cost["ns_per_run"],
                     "ns_per_connect": cost["ns"] / max(r["attempts"], 1)})
    return rows


def series_curve(ctx, wanted, seconds_per_point):
    """One agent (tracking the load generator only); peers are added until
    the exposition has about each wanted number of samples."""
    yaml = (targets_yaml(1) +
            "limits:\n  max_series: 65536\n  max_series_per_metric: 10000000\n")
    agent = start_agent(ctx, "netagent-series", yaml)
    rows = []
    try:
        _, base = timed_scrapes(agent, 1)
        calib = 10  # few enough to stay under the smallest point
        load(ctx.testgen, "127.1.0.0", ctx.server.port, 1000, 1, spread=calib)
        _, with_calib = timed_scrapes(agent, 1)
        per_peer = max((with_calib - base) / calib, 1.0)
        peers = calib
        for want in wanted:
            # At most three steps: each corrects the series-per-peer estimate.
            for _ in range(3):
                peers = max(peers, math.ceil((want - base) / per_peer))
                ctx.say(f"scaling: ~{want:,} series ({peers:,} peers)")
                # Every peer at least once: the load walks the spread in order.
                rate = 20_000
                secs = max(seconds_per_point, math.ceil(peers * 1.5 / rate))
                r = load(ctx.testgen, "127.1.0.0", ctx.server.port, rate, secs, spread=peers)
                if r["failed"]:
                    raise BenchError(f"series load: {r}")
                scrape_s, samples = timed_scrapes(agent, 5)
                per_peer = max((samples - base) / peers, 1.0)
                if samples >= want * 0.99:
                    break
            rows.append({"wanted": want, "peers": peers, "series": samples,
                         "scrape_ms": scrape_s * 1e3,
                         "rss_mib": status_kib(agent.pid, "VmRSS") / 1024,
                         "hwm_mib": status_kib(agent.pid, "VmHWM") / 1024,
                         "lost": int(metric_sum(agent.scrape(), "netagent_events_lost_total"))})
    finally:
        agent.stop()
    return rows


class Holder:
    """`conns` connections held open by as many hold.py processes as the
    fd limit needs (each on its own port)."""

    def __init__(self, ctx, conns):
        self.procs = []
        self.seconds = 0.0
        try:
            left = conns
            while left > 0:
                n = min(left, hold_per_process())
                p = Proc("hold", [sys.executable, ctx.hold_script, "--conns", str(n),
                                  "--port", str(ctx.free_port()), "--max-seconds", "900"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=ctx.log)
                self.procs.append(p)
                line = p.p.stdout.readline()
                if not line:
                    raise BenchError(f"hold.py could not open {n} connections (see the log)")
                self.seconds += json.loads(line)["seconds"]
                left -= n
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for p in self.procs:
            try:
                p.p.stdin.close()
            except OSError:
                pass
            p.stop()


def hold_per_process():
    """Connections one holder can keep within its fd limit (2 fds each)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    return max(1000, min((limit - 200) // 2, 50_000))


def conns_curve(ctx, counts, rate, seconds):
    """Default config; for each count a fresh holder opens the connections,
    then a fixed churn is measured next to them."""
    # Default config, with room for every held connection's state (both
    # ends are tracked: 2 per connection, plus the churn).
    most = max(counts) if counts else 0
    yaml = f"limits:\n  max_sockets: {max(65536, 2 * most + 16384)}\n"
    agent = start_agent(ctx, "netagent-conns", yaml)
    rows = []
    try:
        for n in counts:
            ctx.say(f"scaling: {n:,} open connections")
            holder = Holder(ctx, n)
            try:
                r, cost = kernel_cost(
                    agent, lambda: load(ctx.testgen, "127.0.0.1", ctx.server.port, rate, seconds))
                scrape_s, samples = timed_scrapes(agent, 3)
                active = sample(agent.scrape(), "netagent_tcp_connections_active",
                                [("process", HOLD_COMM), ("container", ""),
                                 ("container_id", ""), ("pod", ""), ("namespace", ""),
                                 ("direction", "outbound")])
                rows.append({"open": n, "open_seconds": holder.seconds, "holders": len(holder.procs),
                             "active_outbound_seen": int(active),
                             "ns_per_run": cost["ns_per_run"],
                             "ns_per_connect": cost["ns"] / max(r["attempts"], 1),
                             "rate": r["rate"], "scrape_ms": scrape_s * 1e3, "series": samples,
                             "rss_mib": status_kib(agent.pid, "VmRSS") / 1024,
                             "hwm_mib": status_kib(agent.pid, "VmHWM") / 1024})
            finally:
                holder.stop()
    finally:
        agent.stop()
    return rows


def rate_curve(ctx, rates, seconds):
    """Default config (scraped every 5 s); agent CPU and kernel cost per rate."""
    agent = start_agent(ctx, "netagent-rate", "")
    rows = []
    try:
        for rate in rates:
            ctx.say(f"scaling: {rate:,} connections/s")
            meter, t0 = CpuMeter(agent.pid), time.monotonic()
            r, cost = kernel_cost(
                agent, lambda: load(ctx.testgen, "127.0.0.1", ctx.server.port, rate, seconds))
            cpu, wall = meter.seconds(), time.monotonic() - t0
            rows.append({"target_rate": rate, "rate": r["rate"], "connects": r["attempts"],
                         "agent_cpu_pct": 100 * cpu / wall,
                         "agent_cpu_s_per_10k": cpu * 1e4 / max(cost["runs"], 1),
                         "ns_per_run": cost["ns_per_run"],
                         "ns_per_connect": cost["ns"] / max(r["attempts"], 1),
                         "rss_mib": status_kib(agent.pid, "VmRSS") / 1024})
    finally:
        agent.stop()
    return rows


def exact_run(ctx, seconds):
    """Unthrottled churn from a process the default config tracks: every
    connect counted, nothing lost (BPF stats off, as in production)."""
    ctx.say(f"exact counts: unthrottled churn for {seconds} s")
    agent = start_agent(ctx, "netagent-exact", "")
    try:
        meter, t0 = CpuMeter(agent.pid), time.monotonic()
        r = load(ctx.testgen, "127.0.0.1", ctx.server.port, UNTHROTTLED, seconds)
        cpu, wall = meter.seconds(), time.monotonic() - t0
        text = agent.scrape()
        counted = sample(text, "netagent_connect_total",
                         [("process", LOAD_COMM), ("proto", "tcp"), ("dport", ctx.server.port)])
        lost = metric_sum(text, "netagent_events_lost_total")
        hwm = status_kib(agent.pid, "VmHWM") / 1024
    finally:
        agent.stop()
    return {"seconds": seconds, "attempts": r["attempts"], "failed": r["failed"],
            "rate": r["rate"], "counted": int(counted), "lost": int(lost),
            "exact": int(counted) == r["attempts"] and lost == 0 and r["failed"] == 0,
            "agent_cpu_pct": 100 * cpu / wall, "hwm_mib": hwm}


def conn_cost(ctx, rates, seconds, rounds):
    """BPF ns per short TCP connection: `netagent-testgen load` (connect,
    accept by the testgen server, close with SO_LINGER 0; both ends on this
    host and tracked) on the default config, at each rate (1,000/s: caches
    cold between connections; unthrottled: the highest rate), BPF stats on.
    The agent and the baseline binary (if any) alternate, in an order
    rotated each round, so both see the same machine."""
    agents = [("netagent-default", ctx.agent)]
    if ctx.baseline_agent:
        agents.append(("baseline-default", ctx.baseline_agent))
    rows = []
    for rnd in range(rounds):
        k = rnd % len(agents)
        for name, binary in agents[k:] + agents[:k]:
            for rate in rates:
                ctx.say(f"per connection: {name}, round {rnd + 1}, "
                        f"{'unthrottled' if rate >= UNTHROTTLED else f'{rate:,}/s'}")
                agent = start_agent(ctx, f"{name}-conn", "", binary)
                try:
                    with bpf.Stats():
                        before = bpf.programs(agent.prog_ids)
                        r = load(ctx.testgen, "127.0.0.1", ctx.server.port, rate, seconds)
                        after = bpf.programs(agent.prog_ids)
                finally:
                    agent.stop()
                per = bpf.delta(before, after)
                n = max(r["attempts"], 1)
                cost = bpf.summary(per)
                rows.append({"config": name, "round": rnd, "target_rate": rate,
                             "rate": r["rate"], "connects": r["attempts"], "failed": r["failed"],
                             "runs_per_connect": cost["runs"] / n,
                             "ns_per_run": cost["ns_per_run"], "ns_per_connect": cost["ns"] / n,
                             "programs": {p: {"runs_per_connect": d["runs"] / n,
                                              "ns_per_connect": d["ns"] / n}
                                          for p, d in per.items() if d["runs"]}})
    return rows
