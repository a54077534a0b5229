// netagent web UI: polls /api/v1/graph every 2 s and draws the service map
// (host processes and containers in a left column, peers in a right column,
// one curve per edge; calls between two local nodes bulge to the right of
// the left column) plus tables of interfaces and connections.
//
// Plain DOM, no dependencies. Every string from the agent goes through
// textContent or setAttribute, never innerHTML.
"use strict";

(function () {
  const POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 5000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  // Layout, in px. Each edge owns one SLOT of height at both of its ends, so
  // labels never overlap and a node is as tall as it has edges.
  const SLOT = 28;
  const GAP = 10; // between nodes of one column
  const TOP = 34; // room for the column headings
  const RUN = 200; // straight part of an edge next to its process, holding the label
  const MIN_WIDTH = 600;
  const MAX_STROKE = 8;

  const $ = (id) => document.getElementById(id);
  const ui = {
    version: $("version"),
    live: $("live"),
    updated: $("updated"),
    error: $("error"),
    main: $("main"),
    summary: $("summary"),
    loading: $("loading"),
    legend: $("legend"),
    empty: $("empty"),
    wrap: $("map-wrap"),
    svg: $("map"),
    headings: $("headings"),
    edges: $("edges"),
    nodes: $("nodes"),
    ifBody: $("if-body"),
    connBody: $("conn-body"),
    connCount: $("conn-count"),
    connDetails: $("conn-details"),
  };

  let graph = null; // last good document
  let lastOkAt = null; // Date of the last good fetch
  let failures = 0;
  let haveVersion = false;
  let current = null; // last layout, for highlighting
  let hoverId = null; // node under the pointer or keyboard focus

  const nodeEls = new Map(); // node id -> <g>
  const edgeEls = new Map(); // "source|target" -> <g>

  // ---------------------------------------------------------------- format

  function trimZeros(s) {
    return s.indexOf(".") < 0 ? s : s.replace(/\.?0+$/, "");
  }

  // Compact number: 0, 0.25, 2.5, 37, 1.2k, 3.4M.
  function fmtNum(v) {
    if (typeof v !== "number" || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a < 0.01) return "<0.01";
    if (a < 1) return trimZeros(v.toFixed(2));
    if (a < 10) return trimZeros(v.toFixed(1));
    if (a < 1e3) return String(Math.round(v));
    if (a < 1e6) return trimZeros((v / 1e3).toFixed(a < 1e4 ? 1 : 0)) + "k";
    return trimZeros((v / 1e6).toFixed(1)) + "M";
  }

  const intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  function fmtInt(v) {
    return typeof v === "number" && isFinite(v) ? intFormat.format(v) : "–";
  }

  // Seconds -> "850 µs", "12 ms", "1.25 s"; null when there is no value.
  function fmtDuration(s) {
    if (typeof s !== "number" || !isFinite(s)) return null;
    if (s > 0 && s < 1e-6) return "<1 µs";
    if (s < 1e-3) return Math.round(s * 1e6) + " µs";
    if (s < 1) {
      const ms = s * 1e3;
      return (ms < 10 ? trimZeros(ms.toFixed(1)) : String(Math.round(ms))) + " ms";
    }
    return trimZeros(s.toFixed(2)) + " s";
  }

  // Bytes (decimal units): "512 B", "1.5 kB", "12 MB".
  function fmtBytes(v) {
    if (typeof v !== "number" || !isFinite(v)) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (Math.abs(v) >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    if (i === 0) return Math.round(v) + " B";
    return trimZeros(v.toFixed(Math.abs(v) < 10 ? 1 : 0)) + " " + units[i];
  }

  function fmtTime(d) {
    return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function plural(n, one, many) {
    return fmtInt(n) + " " + (n === 1 ? one : many);
  }

  // The label drawn on an edge: "2.5/s · p95 12 ms · 3 err"; inbound
  // edges start with "← in".
  function edgeLabel(e, inbound) {
    const parts = [(inbound ? "← in " : "") + fmtNum(e.rate_per_second) + "/s"];
    const p95 = fmtDuration(e.p95_seconds);
    if (p95) parts.push("p95 " + p95);
    if (e.errors_total > 0) parts.push(fmtNum(e.errors_total) + " err");
    return parts.join(" · ");
  }

  function truncEnd(s, max) {
    return s.length <= max ? s : s.slice(0, Math.max(1, max - 1)) + "…";
  }

  // Addresses keep their port: "2001:db8:…:8443".
  function truncMiddle(s, max) {
    if (s.length <= max) return s;
    const tail = Math.floor((max - 1) / 2);
    return s.slice(0, max - 1 - tail) + "…" + s.slice(s.length - tail);
  }

  // Line width: log scale of the rate, clamped to [1.25, MAX_STROKE].
  function strokeWidth(rate) {
    const r = typeof rate === "number" && rate > 0 ? rate : 0;
    return Math.min(MAX_STROKE, 1.25 + 1.6 * Math.log10(1 + r * 4));
  }

  // ---------------------------------------------------------------- layout

  function cmp(a, b) {
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function str(v) {
    return typeof v === "string" ? v : v == null ? "" : String(v);
  }

  // A node referenced by an edge but missing from `nodes`.
  function implicitNode(id) {
    const i = id.indexOf(":");
    const kind = i > 0 ? id.slice(0, i) : "peer";
    let label = i > 0 ? id.slice(i + 1) : id;
    if (kind === "peer" && label.indexOf("/") >= 0) label = label.slice(label.indexOf("/") + 1);
    return { id: id, kind: kind, label: label };
  }

  // Deterministic two-column layout. Processes are sorted by label; peers by the mean position of the processes talking to them (so
  // edges mostly run parallel), then by label. Edge ends within a node are
  // ordered by the position of the other end, so edges never cross needlessly.
  function layout(doc, width) {
    const items = new Map(); // id -> {n, col, ends, order, y, h}
    const add = (n) => {
      const col = n.kind === "process" || n.kind === "container" ? 0 : 1;
      items.set(n.id, { n: n, label: str(n.label) || implicitNode(n.id).label, col: col, ends: [], order: 0 });
    };
    for (const n of Array.isArray(doc.nodes) ? doc.nodes : []) {
      if (n && typeof n.id === "string" && !items.has(n.id)) add(n);
    }

    const edges = [];
    const seen = new Set();
    for (const e of Array.isArray(doc.edges) ? doc.edges : []) {
      if (!e || typeof e.source !== "string" || typeof e.target !== "string") continue;
      if (e.source === e.target) continue;
      const key = e.source + "|" + e.target;
      if (seen.has(key)) continue;
      seen.add(key);
      if (!items.has(e.source)) add(implicitNode(e.source));
      if (!items.has(e.target)) add(implicitNode(e.target));
      // a = the end drawn on the left (the process), b = the other end.
      // Inbound edges (peer -> process, e.g. accepted connections) are
      // drawn from the process side too, and marked with "←".
      const from = items.get(e.source);
      const to = items.get(e.target);
      const inbound = from.col === 1 && to.col === 0;
      const a = inbound ? to : from;
      const b = inbound ? from : to;
      const x = { e: e, key: key, a: a, b: b, from: from, to: to, inbound: inbound };
      a.ends.push(x);
      b.ends.push(x);
      edges.push(x);
    }

    const byLabel = (p, q) => cmp(p.label, q.label) || cmp(p.n.id, q.n.id);
    const left = [];
    const right = [];
    for (const it of items.values()) (it.col === 0 ? left : right).push(it);
    left.sort(byLabel);
    left.forEach((it, i) => (it.order = i));
    for (const it of right) {
      let sum = 0;
      let count = 0;
      for (const x of it.ends) {
        const o = x.a === it ? x.b : x.a;
        if (o.col === 0) {
          sum += o.order;
          count++;
        }
      }
      it.bary = count ? sum / count : Infinity;
    }
    right.sort((p, q) => (p.bary !== q.bary ? (p.bary < q.bary ? -1 : 1) : byLabel(p, q)));
    right.forEach((it, i) => (it.order = i));

    const other = (x, it) => (x.a === it ? x.b : x.a);
    const stack = (column) => {
      let y = TOP;
      for (const it of column) {
        it.ends.sort((x, z) => {
          const ox = other(x, it);
          const oz = other(z, it);
          return ox.col - oz.col || ox.order - oz.order || cmp(x.key, z.key);
        });
        const minSlots = it.col === 0 && subtitle(it.n) ? 2 : 1;
        it.y = y;
        it.h = Math.max(it.ends.length, minSlots) * SLOT;
        y += it.h + GAP;
      }
      return y;
    };
    const height = Math.max(stack(left), stack(right)) + 4;

    const w = Math.max(MIN_WIDTH, width);
    const leftW = Math.round(Math.min(240, Math.max(170, w * 0.17)));
    const rightW = Math.round(Math.min(300, Math.max(210, w * 0.21)));
    return {
      items: items,
      edges: edges,
      left: left,
      right: right,
      width: w,
      height: height,
      leftW: leftW,
      rightW: rightW,
      rightX: w - rightW,
    };
  }

  // Where edge x meets node it: the inner side of the box, in the edge's slot.
  // On a process the line sits low in its slot to leave room for the label.
  function anchor(L, it, x) {
    const i = it.ends.indexOf(x);
    const slot = it.h / Math.max(1, it.ends.length);
    const mid = it.y + slot * (i + 0.5);
    return it.col === 0 ? { x: L.leftW, y: mid + 5 } : { x: L.rightX, y: mid };
  }

  // The second line of a process or container node: its pod and
  // namespace in Kubernetes, its runtime and processes otherwise.
  function subtitle(n) {
    if (n.kind !== "container") return "";
    const procs = Array.isArray(n.processes) ? n.processes.map(str).join(", ") : "";
    if (str(n.pod)) return "pod " + str(n.namespace) + "/" + str(n.pod);
    return (str(n.runtime) || "container") + (procs ? " · " + procs : "");
  }

  // ---------------------------------------------------------------- render

  function el(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (text != null) node.textContent = text;
    return node;
  }

  function renderHeadings(L) {
    const sig = [L.leftW, L.rightX, L.left.length, L.right.length].join();
    if (ui.headings.__sig === sig) return;
    ui.headings.__sig = sig;
    ui.headings.replaceChildren(
      el("text", { x: 0, y: 18, class: "col-head" }, "Processes · containers (" + L.left.length + ")"),
      el("text", { x: L.leftW + 12, y: 18, class: "col-head" }, "connections/s · p95 · errors"),
      el("text", { x: L.rightX, y: 18, class: "col-head" }, "Peers (" + L.right.length + ")")
    );
  }

  function renderNode(L, it) {
    const n = it.n;
    const id = n.id;
    let g = nodeEls.get(id);
    if (!g) {
      g = el("g", { "data-node-id": id, tabindex: "0" });
      nodeEls.set(id, g);
      ui.nodes.appendChild(g);
    }
    const isProc = it.col === 0;
    const w = isProc ? L.leftW : L.rightW;
    const x = isProc ? 0 : L.rightX;
    const h = it.h - 4;
    const sub = subtitle(n);
    const proto = str(n.proto).toUpperCase();
    const nEdges = it.ends.length;
    let rate = 0;
    for (const e of it.ends) rate += e.e.rate_per_second > 0 ? e.e.rate_per_second : 0;
    const kindText = n.kind === "container" ? "Container" : isProc ? "Process" : "Peer";
    const aria =
      kindText + " " + it.label + (proto ? " (" + proto + ")" : "") +
      (sub ? ", " + sub : "") +
      (str(n.image) ? ", image " + str(n.image) : "") + ", " +
      plural(nEdges, isProc ? "edge" : "process", isProc ? "edges" : "processes") +
      ", " + fmtNum(rate) + " connections per second";

    g.setAttribute("transform", "translate(" + x + "," + it.y + ")");
    // Most nodes look the same from one refresh to the next: skip those.
    const sig = [w, h, aria].join("\n");
    if (g.__sig === sig) return;
    g.__sig = sig;
    g.setAttribute("class", "node " + (n.kind === "container" ? "node-container" : isProc ? "node-process" : "node-peer"));
    g.setAttribute("aria-label", aria);

    const kids = [
      el("title", {}, aria.replace(/, /g, "\n").replace(" ", ": ")),
      el("rect", { class: "box", x: 0, y: 0, width: w, height: h, rx: 6 }),
      el("rect", { class: "stripe", x: 0, y: 0, width: 4, height: h, rx: 2 }),
    ];
    const firstLine = Math.min(h / 2, SLOT / 2) + 4.5;
    if (isProc) {
      kids.push(el("text", { class: "name", x: 12, y: firstLine }, truncEnd(it.label, Math.floor((w - 20) / 7.6))));
      if (h >= 2 * SLOT - 4) {
        const line2 = sub || plural(nEdges, "edge", "edges");
        kids.push(el("text", { class: "sub", x: 12, y: firstLine + 16 }, truncEnd(line2, Math.floor((w - 20) / 6.2))));
      }
    } else {
      const badgeW = proto ? 34 : 0;
      kids.push(el("text", { class: "addr", x: 12, y: firstLine }, truncMiddle(it.label, Math.floor((w - 24 - badgeW) / 7.3))));
      if (proto) {
        kids.push(el("rect", { class: "badge", x: w - badgeW - 6, y: firstLine - 12, width: badgeW, height: 16, rx: 3 }));
        kids.push(el("text", { class: "badge-text", x: w - 6 - badgeW / 2, y: firstLine }, proto));
      }
    }
    g.replaceChildren(...kids);
  }

  // The SVG path of edge x, and where its label goes.
  function edgePath(L, x) {
    const p = anchor(L, x.a, x);
    const q = anchor(L, x.b, x);
    if (x.a.col === 0 && x.b.col === 1) {
      // Straight run next to the process (the label sits on it), then a curve.
      const run = p.x + Math.min(RUN, Math.max(40, (q.x - p.x) * 0.45));
      const mx = (run + q.x) / 2;
      return {
        d: `M${p.x} ${p.y}H${run}C${mx} ${p.y} ${mx} ${q.y} ${q.x} ${q.y}`,
        lx: p.x + 10,
        ly: p.y - 7,
      };
    }
    // Both ends in one column (rare): bulge towards the middle.
    const dir = x.a.col === 0 ? 1 : -1;
    const cx = p.x + dir * 160;
    return {
      d: `M${p.x} ${p.y}C${cx} ${p.y} ${cx} ${q.y} ${q.x} ${q.y}`,
      lx: p.x + dir * 130,
      ly: (p.y + q.y) / 2 - 4,
      end: dir < 0,
    };
  }

  function setAttr(node, name, value) {
    value = String(value);
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // Edges change every refresh (rates), so they are updated in place.
  function renderEdge(L, x) {
    const e = x.e;
    let g = edgeEls.get(x.key);
    if (!g) {
      g = el("g", { "data-edge": x.key });
      g.append(el("title", {}), el("path", { class: "hit" }), el("path", { class: "line" }), el("text", { class: "elabel" }));
      edgeEls.set(x.key, g);
      ui.edges.appendChild(g);
    }
    const [title, hit, line, label] = g.children;
    const errs = e.errors_total > 0;
    const idle = !(e.rate_per_second > 0);
    setAttr(g, "class", "edge" + (errs ? " err" : "") + (idle ? " idle" : "") + (g.classList.contains("hl") ? " hl" : ""));
    const path = edgePath(L, x);
    setAttr(hit, "d", path.d);
    setAttr(line, "d", path.d);
    setAttr(line, "stroke-width", strokeWidth(e.rate_per_second).toFixed(2));
    setAttr(label, "x", path.lx);
    setAttr(label, "y", path.ly);
    setAttr(label, "text-anchor", path.end ? "end" : "start");
    setText(label, edgeLabel(e, x.inbound));
    const p95 = fmtDuration(e.p95_seconds);
    const win = graph.interval_seconds > 0 ? " (last " + fmtNum(graph.interval_seconds) + " s)" : "";
    setText(title, [
      x.from.label + " → " + x.to.label + (x.inbound ? " (inbound)" : ""),
      fmtNum(e.rate_per_second) + (x.inbound ? " accepted" : " connections") + "/s" + win,
      "p95 send→recv: " + (p95 || "no samples"),
      plural(e.errors_total || 0, "error", "errors") + " (failed connects + resets)",
      fmtInt(e.connects_total) + (x.inbound ? " accepted" : " connects") + " in total",
      "sent " + fmtBytes(e.bytes_sent_total) + ", received " + fmtBytes(e.bytes_received_total),
    ].join("\n"));
  }

  // Removes elements whose key is no longer in the document.
  function prune(map, keep) {
    for (const [k, g] of map) {
      if (!keep.has(k)) {
        g.remove();
        map.delete(k);
      }
    }
  }

  function renderMap() {
    const nodeCount = Array.isArray(graph.nodes) ? graph.nodes.length : 0;
    const edgeCount = Array.isArray(graph.edges) ? graph.edges.length : 0;
    const empty = nodeCount === 0 && edgeCount === 0;
    ui.loading.hidden = true;
    ui.empty.hidden = !empty;
    ui.wrap.hidden = empty;
    ui.legend.hidden = empty;
    if (empty) {
      prune(nodeEls, new Set());
      prune(edgeEls, new Set());
      current = null;
      ui.summary.textContent = "";
      return;
    }
    const L = layout(graph, ui.wrap.clientWidth - 2);
    current = L;
    setAttr(ui.svg, "width", L.width);
    setAttr(ui.svg, "height", L.height);
    setAttr(ui.svg, "viewBox", "0 0 " + L.width + " " + L.height);
    renderHeadings(L);
    for (const it of L.items.values()) renderNode(L, it);
    for (const x of L.edges) renderEdge(L, x);
    prune(nodeEls, new Set(L.items.keys()));
    prune(edgeEls, new Set(L.edges.map((x) => x.key)));

    let rate = 0;
    let errors = 0;
    for (const x of L.edges) {
      rate += x.e.rate_per_second > 0 ? x.e.rate_per_second : 0;
      errors += x.e.errors_total > 0 ? x.e.errors_total : 0;
    }
    ui.summary.textContent = [
      plural(L.left.length, "process", "processes"),
      plural(L.right.length, "peer", "peers"),
      plural(L.edges.length, "edge", "edges"),
      fmtNum(rate) + " connections/s",
      plural(errors, "error", "errors"),
    ].join(" · ");
    highlight();
  }

  function highlight() {
    for (const g of ui.svg.querySelectorAll(".hl")) g.classList.remove("hl");
    const it = hoverId && current ? current.items.get(hoverId) : null;
    ui.svg.classList.toggle("has-hl", !!it);
    if (!it) return;
    nodeEls.get(it.n.id).classList.add("hl");
    for (const x of it.ends) {
      edgeEls.get(x.key).classList.add("hl");
      const o = x.a === it ? x.b : x.a;
      nodeEls.get(o.n.id).classList.add("hl");
    }
  }

  function setHover(id) {
    if (id === hoverId) return;
    hoverId = id;
    highlight();
  }

  function nodeIdOf(target) {
    const g = target && target.closest ? target.closest("[data-node-id]") : null;
    return g ? g.getAttribute("data-node-id") : null;
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function placeholderRow(body, cols, text) {
    const tr = document.createElement("tr");
    cell(tr, text, "muted").colSpan = cols;
    body.replaceChildren(tr);
  }

  function renderInterfaces() {
    const list = (Array.isArray(graph.interfaces) ? graph.interfaces.slice() : []).filter((i) => i);
    if (!list.length) return placeholderRow(ui.ifBody, 7, "No interfaces reported.");
    list.sort((p, q) => cmp(str(p.name), str(q.name)) || (p.ifindex || 0) - (q.ifindex || 0));
    ui.ifBody.replaceChildren(
      ...list.map((i) => {
        const tr = document.createElement("tr");
        if (!i.active) tr.className = "inactive";
        const name = document.createElement("th");
        name.scope = "row";
        name.textContent = str(i.name) || "?";
        tr.appendChild(name);
        cell(tr, fmtInt(i.ifindex), "num");
        cell(tr, i.active ? "active" : "inactive", i.active ? "state-on" : "state-off");
        cell(tr, fmtNum(i.rx_packets_per_second), "num");
        cell(tr, fmtNum(i.tx_packets_per_second), "num");
        cell(tr, fmtBytes(i.rx_bytes_per_second) + "/s", "num");
        cell(tr, fmtBytes(i.tx_bytes_per_second) + "/s", "num");
        return tr;
      })
    );
  }

  function renderConnections() {
    const L = current;
    const edges = L ? L.edges.slice() : [];
    ui.connCount.textContent = "(" + edges.length + ")";
    if (!ui.connDetails.open) return; // rendered when opened
    if (!edges.length) return placeholderRow(ui.connBody, 9, "No connections yet.");
    const rate = (x) => (x.e.rate_per_second > 0 ? x.e.rate_per_second : 0);
    edges.sort((x, z) => rate(z) - rate(x) || cmp(x.key, z.key));
    ui.connBody.replaceChildren(
      ...edges.map((x) => {
        const e = x.e;
        const tr = document.createElement("tr");
        cell(tr, x.a.label);
        cell(tr, x.inbound ? "← in" : "out →");
        cell(tr, x.b.label + (x.b.n.proto ? " (" + str(x.b.n.proto).toUpperCase() + ")" : ""), "mono");
        cell(tr, fmtNum(e.rate_per_second), "num");
        cell(tr, fmtDuration(e.p95_seconds) || "–", "num");
        cell(tr, fmtInt(e.errors_total || 0), e.errors_total > 0 ? "num err-text" : "num");
        cell(tr, fmtInt(e.connects_total), "num");
        cell(tr, fmtBytes(e.bytes_sent_total), "num");
        cell(tr, fmtBytes(e.bytes_received_total), "num");
        return tr;
      })
    );
  }

  // When the data shown was produced: the agent's clock, else ours.
  function dataTime() {
    return graph && typeof graph.generated_at === "number" ? new Date(graph.generated_at * 1000) : lastOkAt;
  }

  function renderStatus() {
    const ok = failures === 0 && graph;
    ui.live.className = "pill " + (ok ? "pill-ok" : failures ? "pill-stale" : "pill-wait");
    ui.live.textContent = ok ? "Live" : graph ? "Stale" : failures ? "Offline" : "Connecting";
    if (graph) {
      const iv = graph.interval_seconds;
      const win = typeof iv !== "number" ? "" : iv > 0 ? " · rates over " + fmtNum(iv) + " s" : " · rates from the next update";
      ui.updated.textContent = "Updated " + fmtTime(dataTime()) + win;
    }
    ui.main.classList.toggle("stale", !ok && !!graph);
  }

  function render() {
    renderMap();
    renderInterfaces();
    renderConnections();
    renderStatus();
  }

  // ---------------------------------------------------------------- fetch

  async function getJSON(url, acceptAnyStatus) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const res = await fetch(url, { cache: "no-store", signal: ctl.signal, headers: { Accept: "application/json" } });
      if (!res.ok && !acceptAnyStatus) {
        throw new Error("HTTP " + res.status + (res.statusText ? " " + res.statusText : ""));
      }
      return await res.json();
    } catch (err) {
      if (err.name === "AbortError") throw new Error("no answer within " + FETCH_TIMEOUT_MS / 1000 + " s");
      if (err instanceof SyntaxError) throw new Error("the answer is not valid JSON");
      if (err instanceof TypeError) throw new Error("network error (is the agent running?)");
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async function loadVersion() {
    try {
      const h = await getJSON("/health", true);
      if (h && h.version) {
        ui.version.textContent = "v" + str(h.version);
        haveVersion = true;
      }
    } catch (_) {
      // Shown on the next successful poll; the graph error banner covers outages.
    }
  }

  function showError(err) {
    const since = graph ? " Showing data from " + fmtTime(dataTime()) + "." : "";
    const count = failures > 1 ? " (" + failures + " attempts failed)" : "";
    ui.error.textContent =
      "Could not update the service map: " + (err && err.message ? err.message : String(err)) +
      "." + since + " Retrying every " + POLL_MS / 1000 + " s" + count + ".";
    ui.error.hidden = false;
    if (!graph) {
      ui.loading.textContent = "No data yet: the agent did not answer (see above).";
      placeholderRow(ui.ifBody, 7, "No data yet.");
    }
  }

  async function poll() {
    try {
      const doc = await getJSON("/api/v1/graph");
      if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new Error("unexpected document");
      graph = doc;
      lastOkAt = new Date();
      failures = 0;
      ui.error.hidden = true;
      ui.error.textContent = "";
      render();
    } catch (err) {
      failures++;
      showError(err);
      renderStatus();
    }
    if (!haveVersion) loadVersion();
    setTimeout(poll, POLL_MS);
  }

  // ---------------------------------------------------------------- events

  ui.svg.addEventListener("pointerover", (ev) => setHover(nodeIdOf(ev.target)));
  ui.svg.addEventListener("pointerleave", () => setHover(null));
  ui.svg.addEventListener("focusin", (ev) => setHover(nodeIdOf(ev.target)));
  ui.svg.addEventListener("focusout", () => setHover(null));

  ui.connDetails.addEventListener("toggle", () => {
    if (graph) renderConnections();
  });

  // Redraw when the map's box changes width (window resize, a scrollbar
  // appearing after the first render).
  let resizeQueued = false;
  new ResizeObserver(() => {
    if (resizeQueued || !graph || !current) return;
    if (Math.max(MIN_WIDTH, ui.wrap.clientWidth - 2) === current.width) return;
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      renderMap();
    });
  }).observe(ui.wrap);

  poll();
})();
