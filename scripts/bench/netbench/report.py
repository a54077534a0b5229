"""Turns the suite's raw runs into figures, a Markdown report, a JSON file
and a PNG of the scaling curves."""
import json
import os
import statistics

from . import bpf

THROUGHPUT_KINDS = ("throughput", "both")
STATS_KINDS = ("stats", "both")
TITLES = {
    "churn": "(a) HTTP `Connection: close`, loopback (wrk → nginx-light)",
    "keepalive": "(b) HTTP keep-alive, loopback (wrk → nginx-light)",
    "udp_rr": "(c) UDP request/response, loopback (sockperf ping-pong)",
    "bulk": "(d) bulk TCP, loopback (iperf3)",
    "churn_netns": "(a′) HTTP `Connection: close` between two netns hosts over veth (wrk → nginx-light)",
    "udp_drop": "(e) UDP datagrams to a closed loopback port, every one a kernel drop (Python sendto loop)",
}
UNITS = {"churn": "req/s", "keepalive": "req/s", "udp_rr": "msg/s", "bulk": "Gbit/s",
         "churn_netns": "req/s", "udp_drop": "msg/s"}
MIN_RUNS_FOR_CPU = 10_000
# Cost per event "does not grow": ns/run at the largest point / at the
# smallest, with room for this machine's run-to-run noise.
FLAT_TOLERANCE = 1.25
MB_PER_MIB = 1.048576


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def aggregate(result):
    """(workload, config) -> figures over its runs."""
    runs = result.get("runs", [])
    out = {}
    for w in result["workloads"]:
        base = median(r["rate"] for r in runs
                      if r["workload"] == w and r["config"] == "none" and r["kind"] in THROUGHPUT_KINDS)
        for c in result["configs"]:
            rr = [r for r in runs if r["workload"] == w and r["config"] == c]
            if not rr:
                continue
            rate = median(r["rate"] for r in rr if r["kind"] in THROUGHPUT_KINDS)
            st = [r for r in rr if r["kind"] in STATS_KINDS]
            per = {}
            for r in st:
                for name, d in r["programs"].items():
                    p = per.setdefault(name, {"runs": 0, "ns": 0})
                    p["runs"] += d["runs"]
                    p["ns"] += d["ns"]
            s = bpf.summary(per)
            ops = sum(r["ops"] for r in st)
            cpu = sum(r["cpu_s"] for r in st)
            out[(w, c)] = {
                "workload": w, "config": c, "rounds": len([r for r in rr if r["kind"] in THROUGHPUT_KINDS]),
                "rate": rate, "rates": [r["rate"] for r in rr if r["kind"] in THROUGHPUT_KINDS],
                "ratio": rate / base if rate is not None and base else None,
                "ns_per_run": s["ns_per_run"], "bpf_runs": s["runs"],
                "runs_per_op": s["runs"] / ops if ops and s["runs"] else None,
                "bpf_ns_per_op": s["ns"] / ops if ops and s["runs"] else None,
                # Meaningless for a handful of runs (CPU is counted in 10 ms ticks).
                "cpu_ms_per_10k": cpu * 1e7 / s["runs"] if s["runs"] >= MIN_RUNS_FOR_CPU else None,
                "cpu_pct": median(100 * r["cpu_s"] / r["wall_s"] for r in rr) if c != "none" else None,
                "hwm_mib": max((r["hwm_mib"] for r in rr if r["hwm_mib"] is not None), default=None),
                "lost": sum(r["lost"] for r in rr),
                "lost_reasons": merge(r.get("lost_reasons", {}) for r in rr),
                "spans_dropped": merge(otlp_drops(r) for r in rr),
                "statsd_dropped": merge(statsd_drops(r) for r in rr),
                "errors": sum(r["errors"] for r in rr),
                "programs": {n: {**d, "ns_per_run": d["ns"] / d["runs"] if d["runs"] else None}
                             for n, d in sorted(per.items())},
            }
    return out


# Runs recorded before DogStatsD had its own drop counter reported its
# span-buffer drops among OTLP's, as this reason.
LEGACY_STATSD_REASON = "statsd_buffer_full"


def otlp_drops(run):
    """{reason: spans} that OTLP did not export."""
    return {k: v for k, v in run.get("spans_dropped", {}).items() if k != LEGACY_STATSD_REASON}


def statsd_drops(run):
    """{reason: spans} that DogStatsD did not send, old runs included."""
    out = dict(run.get("statsd_dropped", {}))
    legacy = run.get("spans_dropped", {}).get(LEGACY_STATSD_REASON)
    if legacy:
        out["span_buffer_full"] = out.get("span_buffer_full", 0) + legacy
    return out


def merge(dicts):
    out = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def f(v, fmt="{:,.0f}", none="–"):
    return none if v is None else fmt.format(v)


def rate_fmt(w, v):
    return f(v, "{:.2f}" if UNITS.get(w) == "Gbit/s" else "{:,.0f}")


def check(ok, value):
    if ok is None:
        return "not measured", value
    return ("**met**" if ok else "**missed**"), value


def targets(result, agg):
    """[(target, verdict, measured)] against the issue's targets."""
    rows = []
    d = "netagent-default"
    for w, label in (("churn", "(a)"), ("keepalive", "(b)")):
        a = agg.get((w, d))
        v = a and a["ns_per_run"]
        rows.append((f"kernel mean ≤ 150 ns per program run, {label}, default config",
                     *check(None if v is None else v <= 150, f(v, "{:.0f} ns/run"))))
    for w, label, want in (("churn", "(a)", 0.97), ("keepalive", "(b)", 0.98),
                           ("udp_rr", "(c)", 0.97)):
        a = agg.get((w, d))
        v = a and a["ratio"]
        rows.append((f"throughput ≥ {want:.0%} of no tracer, {label}, default config (send→recv on)",
                     *check(None if v is None else v >= want, f(v, "{:.1%}"))))
    for w in result.get("workloads", []):
        a = agg.get((w, "netagent-all"))
        if a:
            v = a["ratio"]
            rows.append((f"throughput ≥ 90% of no tracer, {w}, every feature on (netagent-all)",
                         *check(None if v is None else v >= 0.90, f(v, "{:.1%}"))))
    e = result.get("exact")
    if e:
        long_enough = e["seconds"] >= 60
        rows.append(("0 events lost and exact counts at the highest connection rate, 60 s",
                     *check(e["exact"] if long_enough else None,
                            f"{e['counted']:,} counted of {e['attempts']:,} connects at "
                            f"{e['rate']:,.0f}/s for {e['seconds']} s, lost {e['lost']}")))
    for rate, label in ((1_000, "1,000/s"), (100_000_000, "the highest rate")):
        rs = [r["ns_per_connect"] for r in result.get("conn_cost", [])
              if r["config"] == d and r["target_rate"] == rate]
        v = median(rs) if rs else None
        rows.append((f"≤ 800 BPF ns per short TCP connection at {label}, default config",
                     *check(None if v is None else v <= 800, f(v, "{:,.0f} ns"))))
    curves = result.get("curves", {})
    r10k = [r for r in curves.get("rates", []) if r["target_rate"] == 10_000]
    if r10k:
        r = r10k[0]
        rows.append(("agent CPU ≤ 2 % of one core at 10,000 connections/s",
                     *check(r["agent_cpu_pct"] <= 2.0 and r["rate"] >= 9_500,
                            f"{r['agent_cpu_pct']:.2f} % at {r['rate']:,.0f}/s")))
    else:
        rows.append(("agent CPU ≤ 2 % of one core at 10,000 connections/s", "not measured", "–"))
    for want, cap in ((10_000, 30), (100_000, 100)):
        # RSS after the scrapes at that series count; the process peak (VmHWM)
        # is shown too: it is set at start-up (loading the BPF objects).
        s = [r for r in curves.get("series", []) if r["wanted"] == want]
        rows.append((f"RSS ≤ {cap} MB with {want // 1000}k series",
                     *check(s[0]["rss_mib"] * MB_PER_MIB <= cap if s else None,
                            f"{s[0]['rss_mib'] * MB_PER_MIB:.1f} MB at {s[0]['series']:,} series "
                            f"(process peak {s[0]['hwm_mib'] * MB_PER_MIB:.1f} MB)" if s else "–")))
    s = [r for r in curves.get("series", []) if r["wanted"] == 100_000]
    rows.append(("/metrics with 100k series in ≤ 100 ms (end-to-end scrape: collection + rendering)",
                 *check(s[0]["scrape_ms"] <= 100 if s else None,
                        f"{s[0]['scrape_ms']:.0f} ms at {s[0]['series']:,} series" if s else "–")))
    for key, what, x in (("targets", "targets", "targets"), ("conns", "open connections", "open")):
        # The 0-targets (track all) point is a different configuration, not a step.
        pts = [(r[x], r["ns_per_run"]) for r in curves.get(key, [])
               if r["ns_per_run"] and isinstance(r[x], int) and r[x] > 0]
        if len(pts) >= 2:
            ratio = pts[-1][1] / pts[0][1]
            rows.append((f"cost per event does not grow with {what}",
                         *check(ratio <= FLAT_TOLERANCE,
                                ", ".join(f"{n:,}: {v:.0f}" for n, v in pts)
                                + f" ns/run (last/first {ratio:.2f})")))
        else:
            rows.append((f"cost per event does not grow with {what}", "not measured", "–"))
    return rows


def markdown(result, agg):
    m = result["machine"]
    p = result["params"]
    L = []
    a = L.append
    a(f"# netagent benchmark results ({result['mode']})\n")
    a(f"- command: `{result['command']}`")
    a(f"- started {result['started']}, took {result.get('duration_s', 0):.0f} s")
    end = m.get("load_at_end")
    a(f"- machine: {m['cpus']} CPUs ({m['cpu']}, {m['virt']}), {m['mem_gib']} GiB, Linux {m['kernel']}; "
      f"load average at start {m['load_at_start'][0]:.2f}"
      + (f", at end {end[0]:.2f}" if end else ""))
    a(f"- {p['rounds']} throughput round(s) with BPF stats off"
      + (f" + {p['stats_rounds']} round(s) with BPF stats on for kernel cost" if p["stats_rounds"]
         else " (BPF stats on during the round: throughput includes their overhead)")
      + f"; {p['seconds']} s per run; configurations interleaved per workload in an order rotated each round")
    if result["errors"]:
        a("\n**Errors:**\n")
        for e in result["errors"]:
            a(f"- {e}")
    a("")
    cfgs = result["configs"]
    a("## Throughput relative to no tracer (median of rounds)\n")
    a("| workload | " + " | ".join(cfgs) + " |")
    a("|---|" + "---|" * len(cfgs))
    for w in result["workloads"]:
        cells = []
        for c in cfgs:
            g = agg.get((w, c))
            if g is None:
                cells.append("–")
            elif c == "none":
                cells.append(f"{rate_fmt(w, g['rate'])} {UNITS[w]}")
            else:
                cells.append(f(g["ratio"], "{:.3f}"))
        a(f"| {w} | " + " | ".join(cells) + " |")
    a("")
    a("## Per workload and configuration\n")
    a("Columns: throughput (median of the throughput rounds) and its ratio to no tracer; "
      "kernel cost = mean ns per BPF program run over all of that tool's programs "
      "(run_time_ns / run_cnt); BPF runs and ns per workload operation (request, message, or "
      "byte for bulk); tool CPU = user+sys of the tracer process (threads' schedstat, ns) per 10,000 BPF "
      "program runs and as % of one core during the run; peak RSS = VmHWM; lost = "
      "netagent_events_lost_total (netagent), lost-event reports (tcpstates), none possible "
      "for bpftrace's in-kernel map; errors = the workload's own errors.\n")
    for w in result["workloads"]:
        a(f"### {TITLES.get(w, w)}\n")
        a(f"| configuration | {UNITS[w]} | vs none | ns/run | BPF runs/op | BPF ns/op | "
          "CPU ms per 10k runs | CPU % of a core | peak RSS MiB | lost | errors |")
        a("|---|---|---|---|---|---|---|---|---|---|---|")
        for c in cfgs:
            g = agg.get((w, c))
            if g is None:
                continue
            small = w == "bulk"
            a(f"| {c} | {rate_fmt(w, g['rate'])} | {f(g['ratio'], '{:.3f}')} "
              f"| {f(g['ns_per_run'], '{:.0f}')} "
              f"| {f(g['runs_per_op'], '{:.2e}' if small else '{:.2f}')} "
              f"| {f(g['bpf_ns_per_op'], '{:.2e}' if small else '{:.0f}')} "
              f"| {f(g['cpu_ms_per_10k'], '{:.2f}')} | {f(g['cpu_pct'], '{:.2f}')} "
              f"| {f(g['hwm_mib'], '{:.1f}')} | {g['lost']:,} | {g['errors']:,} |")
        a("")
        for c in cfgs:
            g = agg.get((w, c))
            if g and g["lost_reasons"] and c == "netagent-default":
                a("(The default config tracks every process on the host, so its maps also "
                  "hold the keys of whatever else runs there, and its programs' runs include "
                  "other processes' events.)\n")
            if g and (g["lost_reasons"] or g["spans_dropped"] or g["statsd_dropped"]):
                why = ", ".join(f"{k} {v:,}" for k, v in g["lost_reasons"].items()) or "none"
                spans = ", ".join(f"{k} {v:,}" for k, v in g["spans_dropped"].items()) or "none"
                line = (f"{c}: events lost by reason: {why}; spans not exported over OTLP "
                        f"(by design beyond the caps): {spans}")
                if g["statsd_dropped"]:
                    statsd = ", ".join(f"{k} {v:,}" for k, v in g["statsd_dropped"].items())
                    line += f"; span durations not sent to DogStatsD: {statsd}"
                a(line + ".\n")
    a("## Kernel cost per program (BPF stats rounds)\n")
    for c in cfgs:
        names = sorted({n for (w, cc), g in agg.items() if cc == c for n in g["programs"]})
        if not names:
            continue
        ws = [w for w in result["workloads"] if (w, c) in agg]
        a(f"### {c}\n")
        a("| program | " + " | ".join(ws) + " |")
        a("|---|" + "---|" * len(ws))
        for n in names:
            cells = []
            for w in ws:
                d = agg[(w, c)]["programs"].get(n)
                cells.append(f"{f(d['ns_per_run'], '{:.0f}')} ns × {d['runs']:,}" if d and d["runs"]
                             else "0 runs")
            a(f"| {n} | " + " | ".join(cells) + " |")
        a("")
    e = result.get("exact")
    if e:
        a("## Exact counts at the highest rate\n")
        a(f"netagent default config, `netagent-testgen load` unthrottled (2 threads, TCP connect + close "
          f"with SO_LINGER 0) for {e['seconds']} s: {e['attempts']:,} connects at {e['rate']:,.0f}/s, "
          f"{e['failed']} failed; netagent counted {e['counted']:,}, lost {e['lost']} → "
          f"**{'exact' if e['exact'] else 'NOT exact'}**; agent CPU {e['agent_cpu_pct']:.2f} % of a core, "
          f"peak RSS {e['hwm_mib']:.1f} MiB.\n")
    cc = result.get("conn_cost")
    if cc:
        a("## BPF cost per short TCP connection\n")
        a("`netagent-testgen load` (connect, accept by the testgen server, close with SO_LINGER 0; "
          "both ends on this host and tracked), default config, BPF stats on; the agents alternate "
          "in an order rotated each round. Median over rounds; ns per connection summed over all "
          "of the agent's programs.\n")
        a("| configuration | rate | connects/s | BPF runs per connection | ns per run | "
          "**BPF ns per connection** |")
        a("|---|---|---|---|---|---|")
        groups = {}
        for r in cc:
            groups.setdefault((r["config"], r["target_rate"]), []).append(r)
        for (c, rate), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            label = "unthrottled" if rate >= 100_000_000 else f"{rate:,}/s"
            a(f"| {c} | {label} | {median([r['rate'] for r in rs]):,.0f} | "
              f"{median([r['runs_per_connect'] for r in rs]):.1f} | "
              f"{f(median([r['ns_per_run'] for r in rs if r['ns_per_run']]), '{:.0f}')} | "
              f"**{median([r['ns_per_connect'] for r in rs]):,.0f}** |")
        a("")
        names = sorted({p for r in cc for p in r["programs"]})
        cols = sorted(groups)
        a("Per program, ns per connection (runs per connection):\n")
        a("| program | " + " | ".join(
            f"{c} {'max' if rate >= 100_000_000 else f'{rate:,}/s'}" for c, rate in cols) + " |")
        a("|---|" + "---|" * len(cols))
        for n in names:
            cells = []
            for key in cols:
                ps = [r["programs"][n] for r in groups[key] if n in r["programs"]]
                cells.append(f"{median([p['ns_per_connect'] for p in ps]):,.0f} "
                             f"({median([p['runs_per_connect'] for p in ps]):.1f})" if ps else "–")
            a(f"| {n} | " + " | ".join(cells) + " |")
        a("")
    curves = result.get("curves")
    if curves:
        a("## Scaling curves\n")
        a("![scaling curves](scaling.png)\n")
        a("Cost per event vs number of targets (`match_comm` entries; 0 = no targets, track all):\n")
        a("| targets | connects/s | BPF runs | ns/run | BPF ns per connect |")
        a("|---|---|---|---|---|")
        for r in curves["targets"]:
            a(f"| {r['targets']} | {r['rate']:,.0f} | {r['runs']:,} | {f(r['ns_per_run'], '{:.0f}')} "
              f"| {r['ns_per_connect']:.0f} |")
        a("\nAgent memory and scrape time vs active series (samples in the exposition; one agent, "
          "peers added step by step):\n")
        a("| series | peers | scrape ms | RSS MiB | peak RSS MiB | lost |")
        a("|---|---|---|---|---|---|")
        for r in curves["series"]:
            a(f"| {r['series']:,} | {r['peers']:,} | {r['scrape_ms']:.1f} | {r['rss_mib']:.1f} "
              f"| {r['hwm_mib']:.1f} | {r['lost']} |")
        a("\nWith open connections held (default config; a fixed churn measured next to them):\n")
        a("| open connections | opened in s | active seen by netagent | ns/run | BPF ns per connect "
          "| scrape ms | RSS MiB | peak RSS MiB |")
        a("|---|---|---|---|---|---|---|---|")
        for r in curves["conns"]:
            a(f"| {r['open']:,} | {r['open_seconds']:.1f} | {r['active_outbound_seen']:,} "
              f"| {f(r['ns_per_run'], '{:.0f}')} | {r['ns_per_connect']:.0f} | {r['scrape_ms']:.1f} "
              f"| {r['rss_mib']:.1f} | {r['hwm_mib']:.1f} |")
        a("\nAgent CPU vs event rate (default config, scraped every 5 s):\n")
        a("| target connects/s | achieved | agent CPU % of a core | CPU ms per 10k BPF runs "
          "| ns/run | BPF ns per connect | RSS MiB |")
        a("|---|---|---|---|---|---|---|")
        for r in curves["rates"]:
            a(f"| {r['target_rate']:,} | {r['rate']:,.0f} | {r['agent_cpu_pct']:.2f} "
              f"| {r['agent_cpu_s_per_10k'] * 1e3:.2f} | {f(r['ns_per_run'], '{:.0f}')} "
              f"| {r['ns_per_connect']:.0f} | {r['rss_mib']:.1f} |")
        a("")
    a("## Against the targets\n")
    a("| target | verdict | measured |")
    a("|---|---|---|")
    for t, v, meas in targets(result, agg):
        a(f"| {t} | {v} | {meas} |")
    if result.get("sinks"):
        s = result["sinks"]
        a(f"\nnetagent-all exported {s.get('otlp_requests', 0):,} OTLP requests "
          f"({s.get('otlp_bytes', 0):,} bytes) and {s.get('statsd_datagrams', 0):,} DogStatsD "
          f"datagrams to the suite's local sinks.")
    return "\n".join(L) + "\n"


def plot(result, path):
    """scaling.png; returns None or why it was not drawn."""
    curves = result.get("curves")
    if not curves:
        return "no curves in this run"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"matplotlib unavailable ({e}); install python3-matplotlib (scripts/setup.sh)"
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    t = [r for r in curves["targets"] if isinstance(r["targets"], int) and r["targets"] > 0]
    ax[0][0].plot([r["targets"] for r in t], [r["ns_per_run"] or 0 for r in t], "o-")
    ax[0][0].set(xscale="log", xlabel="targets (match_comm entries)", ylabel="ns per BPF run",
                 title="kernel cost vs targets")
    s = curves["series"]
    a1 = ax[0][1]
    a1.plot([r["series"] for r in s], [r["rss_mib"] for r in s], "o-", label="RSS MiB")
    a1.plot([r["series"] for r in s], [r["hwm_mib"] for r in s], "v:", label="peak RSS MiB")
    a1.plot([r["series"] for r in s], [r["scrape_ms"] for r in s], "s--", label="scrape ms")
    a1.set(xscale="log", xlabel="active series", title="memory and scrape time vs series")
    a1.legend()
    c = curves["conns"]
    a2 = ax[1][0]
    a2.plot([r["open"] for r in c], [r["ns_per_run"] or 0 for r in c], "o-", label="ns per BPF run")
    a2.plot([r["open"] for r in c], [r["rss_mib"] for r in c], "s--", label="RSS MiB")
    a2.plot([r["open"] for r in c], [r["scrape_ms"] for r in c], "^:", label="scrape ms")
    a2.set(xscale="log", xlabel="open connections", title="cost vs open connections")
    a2.legend()
    r = curves["rates"]
    a3 = ax[1][1]
    a3.plot([x["rate"] for x in r], [x["agent_cpu_pct"] for x in r], "o-")
    a3.set(xlabel="connections/s", ylabel="agent CPU % of one core", title="agent CPU vs event rate")
    for row in ax:
        for x in row:
            x.grid(True, alpha=0.3)
            x.set_ylim(bottom=0)
    fig.suptitle(f"netagent scaling ({result['machine']['cpus']} CPUs, Linux {result['machine']['kernel']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def write(result, out):
    agg = aggregate(result)
    result["table"] = [g for g in agg.values()]
    result["targets"] = [{"target": t, "verdict": v, "measured": m} for t, v, m in targets(result, agg)]
    why = plot(result, os.path.join(out, "scaling.png"))
    if why:
        result["plot"] = why
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    text = markdown(result, agg)
    if why:
        text += f"\n(plot not drawn: {why})\n"
    with open(os.path.join(out, "results.md"), "w") as fh:
        fh.write(text)
