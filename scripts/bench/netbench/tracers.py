"""The configurations compared: no tracer, netagent (default config and every
feature on), a bpftrace one-liner and libbpf-tools `tcpstates`.

`start(name, ctx)` returns a running tracer with its pid, the ids of the
BPF programs it holds, `lost()` and `stop()`. Tracers write their output
into the run's temporary directory.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request

from . import bpf
from .procs import BenchError, Proc, free_port, wait_until

CONFIGS = ("none", "netagent-default", "netagent-all", "bpftrace", "tcpstates")
# Run only when named in --configs: the default without DNS capture.
EXTRA_CONFIGS = ("netagent-no-dns",)
# Another netagent binary on the default config (`--baseline-agent`): a
# before/after comparison interleaved in one run; and on every feature.
BASELINE = "baseline-default"
BASELINE_ALL = "baseline-all"
BASELINES = (BASELINE, BASELINE_ALL)

# The comm of every process the workloads run: netagent-all tracks exactly
# these (so every workload is traced, the worst case for the agent).
WORKLOAD_COMMS = ("wrk", "nginx", "sockperf", "iperf3", "bench-load", "bench-srv", "bench-hold")

BPFTRACE_PROG = (
    'BEGIN { printf("ready\\n"); } '
    "tracepoint:sock:inet_sock_set_state { @[comm, args->dport, args->protocol] = count(); }"
)

# How often the suite scrapes a running netagent, like a Prometheus would.
SCRAPE_EVERY_S = 5.0
START_TIMEOUT_S = 30.0


def http_get(url, timeout=30.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric_sum(text, name):
    """Sum of every sample of one metric name in a classic-text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def sample(text, name, labels):
    """Value of the sample with exactly these labels (0 when absent)."""
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Running:
    """A started tracer. `pid` is None for "none"."""

    def __init__(self, name, proc=None):
        self.name = name
        self.proc = proc
        self.prog_ids = set()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def lost(self):
        return 0

    def stop(self):
        """Stops the tracer; returns extra figures it reported (dict)."""
        if self.proc:
            self.proc.stop(signal.SIGINT, grace=20)
        return {}


class Netagent(Running):
    """The agent on a config; scraped every SCRAPE_EVERY_S while it runs."""

    def __init__(self, name, binary, config_yaml, tmp, log):
        port = free_port()
        cfg = os.path.join(tmp, f"{name}.yaml")
        with open(cfg, "w") as f:
            f.write(config_yaml + f'export:\n  listen_addr: "127.0.0.1:{port}"\n')
        self.url = f"http://127.0.0.1:{port}"
        proc = Proc(name, [binary, "--config", cfg, "--log-level", "warn"], stdout=log, stderr=log)
        super().__init__(name, proc)
        wait_until(self._ready, START_TIMEOUT_S, f"{name} ready", alive=proc.alive)
        self.prog_ids = bpf.prog_ids_of(proc.pid)
        self.scrapes = 0
        self._stop_scraping = threading.Event()
        self._scraper = threading.Thread(target=self._scrape_loop, daemon=True)
        self._scraper.start()

    def _ready(self):
        try:
            http_get(self.url + "/health", timeout=2)
            return True
        except urllib.error.HTTPError as e:
            return e.code == 503  # serving, with a probe missing: still counting
        except OSError:
            return False

    def _scrape_loop(self):
        while not self._stop_scraping.wait(SCRAPE_EVERY_S):
            try:
                http_get(self.url + "/metrics")
                self.scrapes += 1
            except OSError:
                pass

    def scrape(self):
        return http_get(self.url + "/metrics")

    def lost(self):
        return int(metric_sum(self.scrape(), "netagent_events_lost_total"))

    @staticmethod
    def by_reason(text, name):
        """{reason: value} of the non-zero samples of a `reason`-labelled counter."""
        out = {}
        for m in re.finditer(rf'^{name}{{reason="([^"]+)"}} (\S+)$', text, re.M):
            if float(m.group(2)):
                out[m.group(1)] = int(float(m.group(2)))
        return out

    def stop(self):
        self._stop_scraping.set()
        self._scraper.join(timeout=SCRAPE_EVERY_S + 35)
        text = self.scrape()
        extra = {
            "lost_reasons": self.by_reason(text, "netagent_events_lost_total"),
            "spans_dropped": self.by_reason(text, "netagent_otlp_spans_dropped_total"),
            "statsd_dropped": self.by_reason(text, "netagent_statsd_dropped_total"),
            "scrapes": self.scrapes + 1,
        }
        code = self.proc.stop(signal.SIGTERM, grace=20)
        if code not in (0, None):
            raise BenchError(f"{self.name} exited with {code}")
        return extra


def default_config():
    """The shipped defaults (track every process, interface stats and
    bpf_self on); only the listen address is the suite's."""
    return ""


def all_features_config(otlp_port, statsd_port):
    """Every feature on. BPF run-time stats (`bpf_self.enable_stats`) stay
    under the suite's control: they slow every program on the host."""
    targets = "".join(f'  - name: "{c}"\n    match_comm: "{c}"\n' for c in WORKLOAD_COMMS)
    return (
        "targets:\n" + targets +
        'interfaces: ["lo", "eth*"]\n'
        "interface_stats:\n  enabled: true\n  interval_seconds: 1\n"
        "bpf_self:\n  enabled: true\n  per_object: true\n  interval_seconds: 1\n"
        f'otel:\n  endpoint: "http://127.0.0.1:{otlp_port}"\n  protocol: http/protobuf\n'
        "  traces: true\n  metrics_interval_seconds: 5\n"
        f'statsd:\n  enabled: true\n  address: "127.0.0.1:{statsd_port}"\n  interval_seconds: 1\n'
        "limits:\n  max_series: 65536\n"
    )


class Bpftrace(Running):
    def __init__(self, tmp, log):
        self.out = os.path.join(tmp, "bpftrace.out")
        self._f = open(self.out, "w")
        # Room for every (comm, dport, proto) key: inbound sockets' dport is
        # the client's ephemeral port, so the default 4096 keys would drop counts.
        env = dict(os.environ, BPFTRACE_MAP_KEYS_MAX="262144")
        proc = Proc("bpftrace", ["bpftrace", "-e", BPFTRACE_PROG], stdout=self._f, stderr=log,
                    env=env)
        super().__init__("bpftrace", proc)
        wait_until(lambda: "ready" in open(self.out).read(), START_TIMEOUT_S,
                   "bpftrace attached", alive=proc.alive)
        self.prog_ids = bpf.prog_ids_of(proc.pid)

    def stop(self):
        self.proc.stop(signal.SIGINT, grace=20)
        self._f.close()
        events = 0
        with open(self.out) as f:
            for line in f:
                m = re.match(r"@\[.*\]: (\d+)$", line.strip())
                if m:
                    events += int(m.group(1))
        os.unlink(self.out)
        return {"tool_events": events}


class Tcpstates(Running):
    def __init__(self, tmp, log):
        self.out = os.path.join(tmp, "tcpstates.out")
        self.err = os.path.join(tmp, "tcpstates.err")
        self._f = open(self.out, "w")
        self._e = open(self.err, "w")
        proc = Proc("tcpstates", ["tcpstates"], stdout=self._f, stderr=self._e)
        super().__init__("tcpstates", proc)
        # Its header is buffered (stdout is a file): ready once its program
        # and the tracepoint link both exist.
        wait_until(lambda: self._fds_with_prog() >= 2, START_TIMEOUT_S,
                   "tcpstates attached", alive=proc.alive)
        self.prog_ids = bpf.prog_ids_of(proc.pid)

    def _fds_with_prog(self):
        n = 0
        base = f"/proc/{self.proc.pid}/fdinfo"
        for fd in os.listdir(base):
            try:
                if "prog_id:" in open(f"{base}/{fd}").read():
                    n += 1
            except OSError:
                continue
        return n

    def lost(self):
        if not self._e.closed:
            self._e.flush()
        with open(self.err) as f:
            return sum(int(n) for n in re.findall(r"lost (\d+) events", f.read()))

    def stop(self):
        self.proc.stop(signal.SIGINT, grace=20)
        self._f.close()
        self._e.close()
        with open(self.out) as f:
            lines = sum(1 for _ in f)
        lost = self.lost()
        os.unlink(self.out)
        return {"tool_events": max(lines - 1, 0), "lost_reported": lost}


def start(name, ctx):
    """Starts configuration `name`; ctx has agent, tmp, log, otlp_port, statsd_port."""
    if name == "none":
        return Running("none")
    if name == "netagent-default":
        return Netagent(name, ctx.agent, default_config(), ctx.tmp, ctx.log)
    if name == BASELINE:
        return Netagent(name, ctx.baseline_agent, default_config(), ctx.tmp, ctx.log)
    if name == "netagent-no-dns":
        # The default minus DNS capture, whose cgroup_skb programs run on
        # every packet of every socket: what that capture costs.
        return Netagent(name, ctx.agent, "dns:\n  enabled: false\n", ctx.tmp, ctx.log)
    if name in ("netagent-all", BASELINE_ALL):
        binary = ctx.agent if name == "netagent-all" else ctx.baseline_agent
        return Netagent(name, binary, all_features_config(ctx.otlp_port, ctx.statsd_port),
                        ctx.tmp, ctx.log)
    if name == "bpftrace":
        return Bpftrace(ctx.tmp, ctx.log)
    if name == "tcpstates":
        return Tcpstates(ctx.tmp, ctx.log)
    raise BenchError(f"unknown configuration {name}")


class Sinks:
    """The OTLP/HTTP and DogStatsD receivers netagent-all exports to
    (scripts/bench/sinks.py), one process for the whole suite."""

    def __init__(self, script, log):
        self.proc = Proc("sinks", [sys.executable, script], stdout=subprocess.PIPE, stderr=log)
        line = self.proc.p.stdout.readline()
        if not line:
            raise BenchError("sinks did not start")
        ports = json.loads(line)
        self.otlp_port = ports["otlp"]
        self.statsd_port = ports["statsd"]

    def stop(self):
        self.proc.stop(signal.SIGTERM, grace=10)
        tail = self.proc.p.stdout.read()
        try:
            return json.loads(tail.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {}
