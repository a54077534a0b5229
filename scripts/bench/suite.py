#!/usr/bin/env python3
"""netagent performance suite (run it through scripts/bench/run.sh).

Runs workloads (a)-(d) under five configurations - no tracer, netagent
with the default config, netagent with every feature on, a bpftrace
one-liner, libbpf-tools tcpstates - interleaved in rounds (every
configuration once per workload per round, in an order rotated each
round) so machine drift cancels; then the scaling curves and an
exact-count run. Writes results.md, results.json and scaling.png to --out.

Throughput rounds run with BPF run-time stats off; "stats" rounds run the
tracers again with stats on for the kernel cost per program. In --smoke
mode one short round does both.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from netbench import bpf, report, scaling, tracers  # noqa: E402
from netbench.procs import BenchError, CpuMeter, free_port, status_kib  # noqa: E402
from netbench.workloads import Workloads  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TRACEFS = "/sys/kernel/tracing"

MODES = {
    "full": dict(rounds=3, stats_rounds=1, seconds=5, exact_seconds=60,
                 targets=[0, 1, 100, 1000], series=[1_000, 10_000, 100_000],
                 conns=[1_000, 10_000, 100_000], rates=[1_000, 5_000, 10_000, 20_000],
                 curve_seconds=5, curve_rate=5_000, conn_rounds=2),
    "smoke": dict(rounds=1, stats_rounds=0, seconds=2, exact_seconds=3,
                  targets=[1, 100], series=[1_000], conns=[1_000], rates=[1_000, 5_000],
                  curve_seconds=2, curve_rate=2_000, conn_rounds=1),
}


class Ctx:
    """What the parts of the suite share."""

    def __init__(self, args, tmp, log):
        self.agent = os.path.abspath(args.agent)
        self.baseline_agent = args.baseline_agent and os.path.abspath(args.baseline_agent)
        self.testgen = os.path.abspath(args.testgen)
        self.tmp = tmp
        self.log = log
        self.hold_script = os.path.join(HERE, "hold.py")
        self.otlp_port = self.statsd_port = None
        self.server = None
        self.started = time.monotonic()
        self.free_port = free_port
        # Every BPF program a tracer held, to check none outlives the suite.
        self.prog_ids = set()

    def say(self, msg):
        el = time.monotonic() - self.started
        print(f"[bench {el:6.0f}s] {msg}", file=sys.stderr, flush=True)


class Tracefs:
    """bpftrace and tcpstates need tracefs; mount it if absent and unmount
    only what we mounted."""

    def __enter__(self):
        self.mounted = False
        if not os.path.exists(os.path.join(TRACEFS, "events")):
            os.system(f"mount -t tracefs nodev {TRACEFS}")
            self.mounted = os.path.exists(os.path.join(TRACEFS, "events"))
            if not self.mounted:
                raise BenchError(f"cannot mount tracefs on {TRACEFS}")
        return self

    def __exit__(self, *exc):
        if self.mounted:
            os.system(f"umount {TRACEFS}")


def one_run(ctx, wl, workload, config, seconds, stats):
    """Starts `config`, runs `workload`, stops; returns the run's figures."""
    t = tracers.start(config, ctx)
    ctx.prog_ids |= t.prog_ids
    try:
        pid = t.pid
        before = bpf.programs(t.prog_ids) if stats and t.prog_ids else {}
        meter = CpuMeter(pid) if pid else None
        w0 = time.monotonic()
        res = wl.run(workload, seconds)
        wall = time.monotonic() - w0
        cpu = meter.seconds() if meter else 0.0
        after = bpf.programs(t.prog_ids) if stats and t.prog_ids else {}
        hwm = status_kib(pid, "VmHWM") / 1024 if pid else None
        lost = t.lost()
    except BaseException:
        with contextlib.suppress(Exception):
            t.stop()
        raise
    extra = t.stop()
    per = bpf.delta(before, after) if stats else {}
    return {"workload": workload, "config": config, "stats": stats, **res,
            "wall_s": wall, "cpu_s": cpu, "hwm_mib": hwm, "lost": lost,
            "programs": per, **extra}


def rounds(ctx, wl, m, workloads, configs):
    plan = [("throughput", False)] * m["rounds"] + [("stats", True)] * m["stats_rounds"]
    if m["stats_rounds"] == 0:
        plan = [("both", True)] * m["rounds"]
    runs = []
    for i, (kind, stats) in enumerate(plan):
        cfgs = [c for c in configs if not (kind == "stats" and c == "none")]
        stack = bpf.Stats() if stats else contextlib.nullcontext()
        with stack:
            for w in workloads:
                k = i % len(cfgs)
                for c in cfgs[k:] + cfgs[:k]:  # rotate: no config always first
                    ctx.say(f"round {i + 1}/{len(plan)} ({kind}): {w} / {c}")
                    r = one_run(ctx, wl, w, c, m["seconds"], stats)
                    r.update(round=i + 1, kind=kind)
                    runs.append(r)
                    time.sleep(0.5)  # let the last run's sockets close
    return runs


def on_sigterm(*_):
    # Unwind like Ctrl-C, so every cleanup callback runs.
    raise KeyboardInterrupt("SIGTERM")


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // (1024 * 1024)
    virt = os.popen("systemd-detect-virt 2>/dev/null").read().strip() or "unknown"
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": mem, "kernel": platform.release(),
            "virt": virt, "load_at_start": os.getloadavg()}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="one short round, small curves (~1-2 min)")
    ap.add_argument("--out", default="target/bench", help="directory for results.{md,json}, scaling.png")
    ap.add_argument("--agent", default="target/release/netagent")
    ap.add_argument("--testgen", default="target/release/netagent-testgen",
                    help="the traffic generator, a tools/ binary "
                         "(cargo build --release -p netagent-tools; run.sh builds it)")
    ap.add_argument("--rounds", type=int, help="throughput rounds (default: 3, smoke 1)")
    ap.add_argument("--seconds", type=int, help="seconds per workload run (default: 5, smoke 2)")
    ap.add_argument("--exact-seconds", type=int, help="length of the exact-count run (default 60)")
    ap.add_argument("--workloads", default=",".join(Workloads.NAMES))
    ap.add_argument("--configs", default=",".join(tracers.CONFIGS))
    ap.add_argument("--baseline-agent", metavar="BIN",
                    help="another netagent binary, run on the default config as the extra "
                         f"configuration {tracers.BASELINE} (before/after in one interleaved run); "
                         f"name {tracers.BASELINE_ALL} in --configs to run it on every feature too")
    ap.add_argument("--no-curves", action="store_true", help="skip the scaling curves")
    ap.add_argument("--no-conn-cost", action="store_true",
                    help="skip the BPF cost per short connection (1,000/s and unthrottled)")
    ap.add_argument("--report-from", metavar="JSON",
                    help="only rewrite results.md and scaling.png in --out from a results.json")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.report_from:
        with open(args.report_from) as fh:
            result = json.load(fh)
        os.makedirs(args.out, exist_ok=True)
        report.write(result, args.out)
        return
    if os.geteuid() != 0:
        sys.exit("bench: run as root (loads BPF programs, creates network namespaces)")
    mode = "smoke" if args.smoke else "full"
    m = dict(MODES[mode])
    for k in ("rounds", "seconds", "exact_seconds"):
        if getattr(args, k) is not None:
            m[k] = getattr(args, k)
    workloads = [w for w in args.workloads.split(",") if w]
    configs = [c for c in args.configs.split(",") if c]
    for w in workloads:
        if w not in Workloads.NAMES:
            sys.exit(f"bench: unknown workload {w}; known: {', '.join(Workloads.NAMES)}")
    if args.baseline_agent and tracers.BASELINE not in configs:
        configs.append(tracers.BASELINE)
    for c in configs:
        if c in tracers.BASELINES and not args.baseline_agent:
            sys.exit(f"bench: {c} needs --baseline-agent BIN")
        known = tracers.CONFIGS + tracers.EXTRA_CONFIGS + tracers.BASELINES
        if c not in known:
            sys.exit(f"bench: unknown configuration {c}; known: {', '.join(known)}")
    for tool in ("nginx", "wrk", "sockperf", "iperf3", "bpftrace", "tcpstates", "bpftool", "ip"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found; run scripts/setup.sh")
    for b in (args.agent, args.testgen) + ((args.baseline_agent,) if args.baseline_agent else ()):
        if not os.access(b, os.X_OK):
            sys.exit(f"bench: {b} missing; build with cargo build --release --workspace --bins")

    signal.signal(signal.SIGTERM, on_sigterm)
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="netagent-bench-")
    log_path = os.path.join(args.out, "bench.log")
    started = datetime.datetime.now(datetime.timezone.utc)
    result = {"mode": mode, "params": m, "machine": machine(),
              "command": args.command or " ".join(sys.argv),
              "started": started.isoformat(timespec="seconds"),
              "workloads": workloads, "configs": configs, "errors": []}
    with open(log_path, "w") as log, contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        ctx = Ctx(args, tmp, log)
        sink_counts = {}
        try:
            stack.enter_context(Tracefs())
            sinks = tracers.Sinks(os.path.join(HERE, "sinks.py"), log)
            ctx.otlp_port, ctx.statsd_port = sinks.otlp_port, sinks.statsd_port
            stack.callback(lambda: sink_counts.update(sinks.stop()))
            ctx.say("starting servers")
            result["netns_tag"] = f"{os.getpid() % 100000}"
            wl = Workloads(tmp, log, result["netns_tag"], stack)
            result["runs"] = rounds(ctx, wl, m, workloads, configs)
            ctx.server = scaling.TestgenServer(ctx.testgen, log, max_seconds=3600)
            stack.callback(ctx.server.stop)
            result["exact"] = scaling.exact_run(ctx, m["exact_seconds"])
            if not args.no_conn_cost:
                result["conn_cost"] = scaling.conn_cost(
                    ctx, [1_000, scaling.UNTHROTTLED], m["seconds"], m["conn_rounds"])
            if not args.no_curves:
                result["curves"] = {
                    "targets": scaling.targets_curve(ctx, m["targets"], m["curve_rate"],
                                                     m["curve_seconds"]),
                    "series": scaling.series_curve(ctx, m["series"], m["curve_seconds"]),
                    "conns": scaling.conns_curve(ctx, m["conns"], m["curve_rate"],
                                                 m["curve_seconds"]),
                    "rates": scaling.rate_curve(ctx, m["rates"], m["curve_seconds"]),
                }
        except (BenchError, KeyboardInterrupt) as e:
            result["errors"].append(f"{type(e).__name__}: {e}")
            ctx.say(f"FAILED: {e}")
        finally:
            stack.close()
        result["sinks"] = sink_counts
    result["prog_ids"] = sorted(ctx.prog_ids)
    result["duration_s"] = round(time.monotonic() - ctx.started, 1)
    result["machine"]["load_at_end"] = os.getloadavg()
    report.write(result, args.out)
    ctx.say(f"done in {result['duration_s']:.0f} s: {args.out}/results.md, results.json")
    sys.exit(1 if result["errors"] else 0)


if __name__ == "__main__":
    main()
