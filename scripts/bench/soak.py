#!/usr/bin/env python3
"""Churn soak (issue 19): many short-lived processes with distinct names and
many short-lived cgroups against one agent with a short series TTL.

    sudo scripts/bench/soak.py                       # 20,000 processes, 1,000 cgroups, 10 min
    sudo scripts/bench/soak.py --minutes 1 --processes 1500 --cgroups 60 --sample-every 5

What it does: starts the agent (no targets, `limits.series_ttl_seconds:
--ttl`, `limits.max_series_per_metric` far above anything live, so a live
series never folds into `~other`) and a testgen TCP server; then launches
`--processes` clients, paced evenly over `--minutes`, each with its own comm
(`s<N>`) making `--connects` connections, at most `--concurrency` at a time;
every Nth runs in a fresh cgroup v2 child (removed when it exits). Every
`--sample-every` s it scrapes /metrics and reads the agent's RSS and the
occupancy of its kernel maps (the maps the agent process holds, by the
`map_id:` of /proc/PID/fdinfo). After the launches it keeps sampling for one
retention time, so the soak's series can leave.

Checks (the verdict):
- series: connect_total series of soak processes at each sample <= the
  bound `concurrency + rate x R`, R = TTL + owner-check interval (TTL/4,
  at most 30 s) + sample interval (series only leave at a collection, and
  this script's scrapes are the only collections) + 5 s slack;
- every process counted: each client that exited between two scrapes must
  show, at the next scrape, exactly `--connects` in netagent_connect_total
  for its name (a series cannot expire before a collection has seen it
  unchanged for the TTL, and the sample interval is below the TTL, so that
  scrape still has it). Clients that failed (exit != 0) are reported;
- flat: after warm-up (R + one sample), the max of the last third of the
  launch-phase samples vs the max of the first third: RSS within
  +10 % + 2 MiB, `flows`/`hists`/`tcp_socks` entries within +25 % + 50;
- netagent_events_lost_total = 0, netagent_series_dropped_total = 0 and no
  `~other` sample;
- drained: after the launches, the soak's series leave /metrics and `flows`
  returns to its size before the soak (+ 50).

Python 3 standard library only; root; cgroup2 at /sys/fs/cgroup/unified or
/sys/fs/cgroup. Everything started is stopped (process groups, PDEATHSIG) and
every cgroup removed, also on Ctrl-C or an error.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netbench.procs import BenchError, Proc, free_port, status_kib, wait_until  # noqa: E402
from netbench.tracers import http_get, metric_sum, sample  # noqa: E402
from netbench import bpf  # noqa: E402

import ctypes  # noqa: E402

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
MAPS = ("flows", "hists", "tcp_socks", "reset_reasons")
RSS_TOL = (0.10, 2.0)     # fraction, MiB
MAP_TOL = (0.25, 50)      # fraction, entries


def cgroup_root():
    for p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(p, "cgroup.procs")) and \
                os.path.exists(os.path.join(p, "cgroup.controllers")):
            return p
    raise BenchError("no cgroup2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup")


def map_ids_of(pid):
    """{name: id} of the BPF maps a process holds (fdinfo `map_id:`)."""
    ids = bpf.fdinfo_ids(pid, "map_id:")
    out = {}
    for i in ids:
        r = subprocess.run(["bpftool", "-j", "map", "show", "id", str(i)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            m = json.loads(r.stdout)
            if m.get("name") in MAPS:
                out[m["name"]] = i
    return out


def map_entries(map_id):
    r = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None
    return len(json.loads(r.stdout or "[]"))


def by_label(text, name, label):
    out = {}
    for m in re.finditer(rf'^{name}{{[^}}]*{label}="([^"]*)"[^}}]*}} (\S+)$', text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


def sample_lines(text):
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--processes", type=int, default=20000)
    ap.add_argument("--cgroups", type=int, default=1000)
    ap.add_argument("--connects", type=int, default=3)
    ap.add_argument("--prefix", default="s",
                    help="comm prefix of the clients (prefix + counter, at most 15 bytes); "
                         "every process on the host with prefix + digits counts as the soak's")
    ap.add_argument("--ttl", type=int, default=20)
    ap.add_argument("--sample-every", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-series-per-metric", type=int, default=200000)
    ap.add_argument("--agent", default="target/release/netagent")
    ap.add_argument("--testgen", default="target/release/netagent-testgen")
    ap.add_argument("--out", default="target/bench/soak")
    a = ap.parse_args()
    if a.sample_every >= a.ttl:
        ap.error("--sample-every must be below --ttl (the per-process count check needs it)")
    if len(a.prefix) + len(str(a.processes - 1)) > 15 or not re.fullmatch(r"[A-Za-z_-]+", a.prefix):
        ap.error("--prefix: letters, '_' or '-', and prefix + counter at most 15 bytes")
    if os.geteuid() != 0:
        ap.error("needs root")

    duration = a.minutes * 60
    rate = a.processes / duration
    check = min(a.ttl / 4, 30)
    retention = a.ttl + check + a.sample_every + 5
    bound_soak = a.concurrency + rate * retention
    cg_every = max(1, a.processes // a.cgroups) if a.cgroups else 0
    os.makedirs(a.out, exist_ok=True)
    tmp = os.path.join(a.out, "run")
    os.makedirs(tmp, exist_ok=True)

    cg_parent = os.path.join(cgroup_root(), f"netagent-soak-{os.getpid()}")
    procs, running, cgroups_left = [], {}, []
    agent = server = None
    samples, fails, checked, miscounted = [], [], 0, []
    exited_since = []          # (name) exited since the last scrape
    stop = {"sig": None}

    def on_signal(sig, _frame):
        stop["sig"] = sig
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started with SIGINT ignored (`cmd &`)

    def rm_cgroups(final=False):
        keep = []
        for cg in cgroups_left:
            try:
                os.rmdir(cg)
            except FileNotFoundError:
                pass
            except OSError:
                if final:
                    # last resort: kill what is left inside, then retry
                    try:
                        with open(os.path.join(cg, "cgroup.kill"), "w") as f:
                            f.write("1")
                        time.sleep(0.2)
                        os.rmdir(cg)
                        continue
                    except OSError:
                        pass
                keep.append(cg)
        cgroups_left[:] = keep

    try:
        os.mkdir(cg_parent)
        port = free_port()
        cfg = os.path.join(tmp, "agent.yaml")
        with open(cfg, "w") as f:
            f.write(f'export:\n  listen_addr: "127.0.0.1:{port}"\n'
                    f"limits:\n  series_ttl_seconds: {a.ttl}\n"
                    f"  max_series_per_metric: {a.max_series_per_metric}\n")
        url = f"http://127.0.0.1:{port}"
        alog = open(os.path.join(tmp, "agent.log"), "w")
        agent = Proc("agent", [a.agent, "--config", cfg, "--log-level", "warn"],
                     stdout=alog, stderr=alog)

        def ready():
            try:
                http_get(url + "/health", timeout=2)
                return True
            except OSError as e:
                return getattr(e, "code", None) == 503
        wait_until(ready, 30, "agent ready", alive=agent.alive)
        maps = map_ids_of(agent.pid)
        if "flows" not in maps or "hists" not in maps:
            raise BenchError(f"agent maps not found: {maps}")

        server = Proc("server", [a.testgen, "--comm", "soak-srv", "serve", "--tcp4", "0",
                                 "--max-seconds", str(int(duration + retention + 300))],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        sport = json.loads(server.p.stdout.readline())["tcp4"]
        time.sleep(1)

        def scrape(phase, started):
            nonlocal checked
            t_scrape = time.monotonic()
            exited = list(exited_since)
            exited_since.clear()
            text = http_get(url + "/metrics", timeout=60)
            conn = by_label(text, "netagent_connect_total", "process")
            for name in exited:
                checked += 1
                if conn.get(name) != a.connects:
                    miscounted.append((name, conn.get(name)))
            soak_series = sum(1 for ln in sample_lines(text)
                              if ln.startswith("netagent_connect_total{")
                              and re.search(rf'process="{a.prefix}\d+"', ln))
            s = {
                "t": round(t_scrape - t0, 1),
                "phase": phase,
                "started": started,
                "running": len(running),
                "rss_mib": round(status_kib(agent.pid, "VmRSS") / 1024, 1),
                "connect_series": sum(1 for ln in sample_lines(text)
                                      if ln.startswith("netagent_connect_total{")),
                "connect_series_soak": soak_series,
                "all_series": len(sample_lines(text)),
                "expired": {k: int(v) for k, v in
                            by_label(text, "netagent_series_expired_total", "family").items()},
                "lost": int(metric_sum(text, "netagent_events_lost_total")),
                "dropped": int(metric_sum(text, "netagent_series_dropped_total")),
                "container_cache": int(sample(text, "netagent_container_cache_entries",
                                              [("kind", "cgroup")])),
                "other": sum(1 for ln in sample_lines(text) if '"~other"' in ln),
            }
            for name, mid in maps.items():
                s[name] = map_entries(mid)
            samples.append(s)
            print(json.dumps(s), flush=True)

        t0 = time.monotonic()
        scrape("before", 0)
        base_flows = samples[0]["flows"]
        base_connect = samples[0]["connect_series"]
        next_sample = time.monotonic() + a.sample_every
        started = 0
        max_lag = 0.0
        t_start = time.monotonic()

        def reap():
            for pid in list(running):
                p, name, cg = running[pid]
                if p.poll() is not None:
                    del running[pid]
                    if p.returncode != 0:
                        fails.append((name, p.returncode))
                    else:
                        exited_since.append(name)
                    if cg:
                        cgroups_left.append(cg)
            rm_cgroups()

        while started < a.processes:
            if stop["sig"]:
                break
            now = time.monotonic()
            if now >= next_sample:
                scrape("soak", started)
                next_sample += a.sample_every
                continue
            due = t_start + started / rate
            if now < due or len(running) >= a.concurrency:
                reap()
                time.sleep(min(0.005, max(0.0, due - now)) or 0.002)
                continue
            max_lag = max(max_lag, now - due)
            name = f"{a.prefix}{started}"
            cg = None
            if cg_every and started % cg_every == 0 and \
                    started // cg_every < a.cgroups:
                cg = os.path.join(cg_parent, f"c{started}")
                os.mkdir(cg)
            procs_file = os.path.join(cg, "cgroup.procs") if cg else None

            def pre(pf=procs_file):
                _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if pf:
                    with open(pf, "w") as f:
                        f.write("0")
            p = subprocess.Popen([a.testgen, "--comm", name, "client", "--tcp4",
                                  f"127.0.0.1:{sport}", "--connects", str(a.connects)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=pre)
            running[p.pid] = (p, name, cg)
            started += 1
        launch_s = time.monotonic() - t_start
        wait_until(lambda: (reap(), not running)[1], 60, "clients finished")
        # Drain: one retention time (plus a sample) so the soak's series leave.
        t_drain_end = time.monotonic() + retention + a.sample_every
        while time.monotonic() < t_drain_end and not stop["sig"]:
            if time.monotonic() >= next_sample:
                scrape("drain", started)
                next_sample += a.sample_every
            time.sleep(0.2)
        scrape("end", started)
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for pid, (p, _n, cg) in list(running.items()):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if cg:
                cgroups_left.append(cg)
        if server:
            server.stop()
        if agent:
            agent.stop(signal.SIGTERM, grace=20)
        rm_cgroups(final=True)
        try:
            os.rmdir(cg_parent)
        except FileNotFoundError:
            pass
        except OSError as e:
            print(f"could not remove {cg_parent}: {e}", file=sys.stderr)
    if stop["sig"]:
        print("soak: interrupted; everything started was stopped and removed", file=sys.stderr)
        return 130

    # ---- verdict
    soak = [s for s in samples if s["phase"] == "soak"]
    warm = retention + a.sample_every
    steady = [s for s in soak if s["t"] >= warm]
    third = max(1, len(steady) // 3)
    first, last = steady[:third], steady[-third:]

    def flat(key, tol):
        if len(steady) < 3:
            return None, "too few samples after warm-up"
        f = max(s[key] for s in first)
        l_ = max(s[key] for s in last)
        lim = f * (1 + tol[0]) + tol[1]
        return l_ <= lim, f"last third max {l_} vs first third max {f} (limit {lim:.1f})"

    max_soak_series = max(s["connect_series_soak"] for s in samples)
    max_flows_delta = max(s["flows"] - base_flows for s in samples)
    end = samples[-1]
    verdict = {
        "series_bound": (max_soak_series <= bound_soak,
                         f"max soak connect_total series {max_soak_series} <= "
                         f"concurrency {a.concurrency} + rate {rate:.2f}/s x R {retention:.1f} s "
                         f"= {bound_soak:.0f}"),
        "flows_bound": (max_flows_delta <= bound_soak + 2,
                        f"max flows entries above the start {max_flows_delta} <= bound "
                        f"{bound_soak:.0f} + 2 (one kernel series per client: one "
                        f"destination; + the server's accepted series)"),
        "rss_flat": flat("rss_mib", RSS_TOL),
        "flows_flat": flat("flows", MAP_TOL),
        "hists_flat": flat("hists", MAP_TOL),
        "tcp_socks_flat": flat("tcp_socks", MAP_TOL),
        "cgroup_cache_flat": flat("container_cache", MAP_TOL),
        "lost_zero": (end["lost"] == 0, f"netagent_events_lost_total {end['lost']}"),
        "dropped_zero": (end["dropped"] == 0 and all(s["other"] == 0 for s in samples),
                         f"netagent_series_dropped_total {end['dropped']}, ~other samples "
                         f"{max(s['other'] for s in samples)}"),
        "every_process_counted": (not miscounted and not fails,
                                  f"{checked} exited clients checked at the next scrape, "
                                  f"{len(miscounted)} with a count != {a.connects} "
                                  f"{miscounted[:5]}, {len(fails)} clients failed {fails[:5]}"),
        "drained": (end["connect_series_soak"] == 0 and end["flows"] <= base_flows + 50,
                    f"after the drain: {end['connect_series_soak']} soak series, flows "
                    f"{end['flows']} (before the soak {base_flows})"),
    }
    ok = all(v[0] is not False for v in verdict.values())
    na = [k for k, v in verdict.items() if v[0] is None]
    word = ("PASS" if ok else "FAIL") + (f" ({', '.join(na)}: not decided)" if na else "")
    summary = {
        "args": vars(a), "launch_seconds": round(launch_s, 1), "max_launch_lag_s": round(max_lag, 2),
        "rate_per_s": round(rate, 2), "retention_R_s": retention, "bound_soak_series": round(bound_soak),
        "cgroups_every": cg_every, "baseline_connect_series": base_connect,
        "max_series_per_metric": a.max_series_per_metric,
        "verdict": {k: {"ok": v[0], "detail": v[1]} for k, v in verdict.items()},
        "ok": ok, "not_decided": na, "rss_max_mib": max(x["rss_mib"] for x in samples),
        "samples": samples,
    }
    with open(os.path.join(a.out, "soak.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = [f"# Churn soak: {started} processes ({a.connects} connects each), "
          f"{min(a.cgroups, started // cg_every if cg_every else 0)} cgroups, "
          f"{a.minutes:g} min, TTL {a.ttl} s",
          "",
          f"Command: `scripts/bench/soak.py {' '.join(sys.argv[1:])}`. Agent with no targets, "
          f"`limits.series_ttl_seconds: {a.ttl}`, `limits.max_series_per_metric: "
          f"{a.max_series_per_metric}` (far above the live series: nothing may fold). "
          f"Rate {rate:.1f} processes/s, at most {a.concurrency} at once; launches took "
          f"{launch_s:.0f} s (max lag behind the schedule {max_lag:.2f} s).",
          "",
          "| t (s) | phase | processes started | RSS MiB | connect_total series (soak) | all series | "
          "flows entries | hists entries | tcp_socks | cgroup cache | expired (flows/hists) | lost | dropped |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in samples:
        md.append(f"| {s['t']:.0f} | {s['phase']} | {s['started']} | {s['rss_mib']} | "
                  f"{s['connect_series']} ({s['connect_series_soak']}) | {s['all_series']} | "
                  f"{s['flows']} | {s['hists']} | {s.get('tcp_socks')} | {s['container_cache']} | "
                  f"{s['expired'].get('flows', 0)}/{s['expired'].get('histograms', 0)} | "
                  f"{s['lost']} | {s['dropped']} |")
    md += ["", f"Verdict: **{word}**", ""]
    for k, v in verdict.items():
        mark = {True: "ok", False: "FAIL", None: "n/a"}[v[0]]
        md.append(f"- {k}: {mark} — {v[1]}")
    md += ["", "Bound: R = TTL + owner-check interval (TTL/4, ≤ 30 s) + sample interval "
           "(collections happen only at this script's scrapes) + 5 s slack; a soak series "
           "can be in /metrics at most R after its process's last connect. Flat: warm-up "
           f"= R + one sample = {warm:.0f} s; RSS within +{RSS_TOL[0]:.0%} + {RSS_TOL[1]} MiB, "
           f"maps within +{MAP_TOL[0]:.0%} + {MAP_TOL[1]} entries. Verified per process: "
           "every client that exited 0 showed exactly its connects at the next scrape "
           "(series cannot expire before then). Not verified: counts after a series expired "
           "(gone from /metrics by design)."]
    with open(os.path.join(a.out, "soak.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=1))
    print(f"verdict: {word}")
    print(f"wrote {a.out}/soak.md and soak.json")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except BenchError as e:
        print(f"soak: {e}", file=sys.stderr)
        sys.exit(2)
