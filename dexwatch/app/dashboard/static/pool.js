// One pool over time: the score and the features behind price, liquidity and volume, on
// charts sharing one time axis (uPlot); anomalies, incident labels and verdicts overlaid;
// a window's features on hover, its events on click. The pool is its address on the chain of
// the address (?chain=; none: where it was scored last), linked to that chain's explorer.
"use strict";

DW.header("Pool");

const params = new URLSearchParams(location.search);
const POOL = (params.get("pool") || "").toLowerCase();
const SPANS = [[1, "1 h"], [2, "2 h"], [6, "6 h"], [24, "24 h"], [168, "7 days"]];
const COLORS = ["#2563eb", "#059669", "#d97706", "#7c3aed"];
const BAD = "#dc2626";
let hours = Number(params.get("hours")) || 2;
let page = null;      // the last /api/pool answer
let slots = [];       // per x index: {chain: window, subgraph: window}
let charts = [];      // the uPlot instances, top to bottom
let layout = "";      // which charts and series they have: rebuilt when it changes

function spanButtons() {
  DW.replace("spans", SPANS.map(([h, label]) => DW.el("button", {
    class: h === hours ? "active" : null,
    onclick: () => {
      hours = h;
      const query = new URLSearchParams(location.search);  // the header may have set the chain
      query.set("hours", h);
      history.replaceState(null, "", `?${query}`);
      spanButtons();
      refresh().catch(() => {});
    },
  }, label)));
}

// Windows by their end: chain windows and subgraph hours on one time axis.
function alignWindows(windows) {
  const xs = [...new Set(windows.map((w) => w.window_end))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  slots = xs.map(() => ({}));
  for (const w of windows) slots[index.get(w.window_end)][w.source] = w;
  return xs;
}

// Paints the incident labels (filled) and judged threads (outlined) behind the series.
function overlays(u) {
  const { ctx, bbox } = u;
  const band = (from, to) => {
    const x0 = u.valToPos(from, "x", true), x1 = u.valToPos(to, "x", true);
    return [Math.min(x0, x1 - 4), Math.max(x1 - x0, 4)];
  };
  ctx.save();
  for (const label of page.labels) {
    const [x, w] = band(label.first_t, label.last_t);
    ctx.fillStyle = "rgba(220, 38, 38, 0.15)";
    ctx.fillRect(x, bbox.top, w, bbox.height);
  }
  for (const verdict of page.feedback) {
    const [x, w] = band(verdict.first_t, verdict.last_t);
    ctx.strokeStyle = verdict.verdict === "not-incident" ? "#6b7280" : "#7c3aed";
    ctx.lineWidth = 2;
    ctx.strokeRect(x, bbox.top + 1, w, bbox.height - 2);
  }
  ctx.restore();
}

function options(title, series, height, scales) {
  const width = document.getElementById("charts").clientWidth;
  return {
    title, width, height, tzDate: DW.utcDate,
    cursor: { sync: { key: "pool" }, points: { size: 6 } },
    legend: { live: false },
    scales: { x: { time: true }, ...scales },
    series: [{}, ...series],
    axes: [DW.timeAxis, { scale: "y", size: 60 }, ...(scales.usd ? [{ scale: "usd", side: 1, size: 70 }] : [])],
    hooks: { drawClear: [overlays], setCursor: [(u) => showHover(u.cursor.idx)] },
  };
}

function points(label, color) {
  return { label, stroke: color, fill: color, width: 0, paths: () => null, points: { show: true, size: 7, fill: color } };
}

function scoreData(xs) {
  const chain = slots.map((s) => (s.chain ? s.chain.score : null));
  const hourly = slots.map((s) => (s.subgraph ? s.subgraph.score : null));
  const anomalous = slots.map((s) => {
    const flagged = [s.chain, s.subgraph].find((w) => w && w.is_anomaly);
    return flagged ? flagged.score : null;
  });
  return [xs, chain, hourly, anomalous, xs.map(() => 0)];
}

function featureData(xs, chart) {
  return [xs, ...chart.series.map((s) => slots.map((slot) => {
    const w = slot[s.source];
    return w && s.feature in w.features ? w.features[s.feature] : null;
  }))];
}

function draw() {
  const xs = alignWindows(page.windows);
  const shape = JSON.stringify(page.charts.map((c) => [c.title, c.series.map((s) => s.feature)]));
  if (shape !== layout || charts.length === 0) {
    charts.forEach((c) => c.destroy());
    const target = document.getElementById("charts");
    target.replaceChildren();
    const score = options("Score (below 0 is anomalous)", [
      { label: "chain windows", stroke: COLORS[0], width: 1.5, spanGaps: true, scale: "y" },
      { ...points("subgraph hours", COLORS[2]), scale: "y" },
      { ...points("anomalous", BAD), scale: "y" },
      { label: "0: below, anomalous", stroke: "#9ca3af", width: 1, dash: [4, 4], scale: "y" },
    ], 220, { y: {} });
    charts = [new uPlot(score, scoreData(xs), target)];
    for (const chart of page.charts) {
      const series = chart.series.map((s, i) => ({
        label: `${s.words} (${s.source})`, stroke: COLORS[i % COLORS.length], width: 1.5,
        spanGaps: true, scale: s.axis === "usd" ? "usd" : "y",
        ...(s.source === "subgraph" ? points(`${s.words} (subgraph)`, COLORS[i % COLORS.length]) : {}),
      }));
      const scales = { y: {}, ...(chart.series.some((s) => s.axis === "usd") ? { usd: {} } : {}) };
      charts.push(new uPlot(options(chart.title, series, 150, scales), featureData(xs, chart), target));
    }
    charts.forEach((u) => u.over.addEventListener("click", () => openWindow(u.cursor.idx)
      .catch((err) => DW.replace("window", DW.el("p", { class: "bad" }, `Cannot read the window: ${err.message}`)))));
    layout = shape;
  } else {
    charts[0].setData(scoreData(xs));
    page.charts.forEach((chart, i) => charts[i + 1].setData(featureData(xs, chart)));
  }
}

function featureList(window) {
  return DW.el("table", { class: "features" }, Object.entries(window.features).map(([name, value]) =>
    DW.el("tr", {}, DW.el("td", { title: name }, page.feature_words[name] || name),
      DW.el("td", { class: "num" }, DW.num(value, 4)))));
}

function windowSummary(w) {
  const anomaly = page.anomalies[w.window_id];
  return [
    DW.el("h3", {}, `${w.source === "chain" ? "Chain window" : "Subgraph hour"} ${DW.clock(w.window_start)}–${DW.clock(w.window_end)} UTC`),
    DW.el("p", {}, "score ", DW.el("strong", { class: w.score < 0 ? "bad" : "" }, DW.num(w.score)),
      ` · ${w.events} ${w.source === "chain" ? "events" : "transactions"} · model ${w.model_version}`),
    anomaly ? DW.el("p", {}, DW.severityBadge(anomaly.severity), ` ${anomaly.kind} (${Math.round(anomaly.confidence * 100)} % sure)`,
      DW.el("ul", { class: "why" }, anomaly.top_features.map((f) => DW.el("li", {}, f)))) : null,
    featureList(w),
  ];
}

function showHover(idx) {
  if (idx === null || idx === undefined || !slots[idx]) return;
  const found = [slots[idx].chain, slots[idx].subgraph].filter(Boolean);
  DW.replace("hover", found.flatMap(windowSummary), DW.el("p", { class: "sub" }, "Click for its events."));
}

async function openWindow(idx) {
  const slot = slots[idx];
  const w = slot && (slot.chain || slot.subgraph);
  if (!w) return;
  const panel = document.getElementById("window");
  panel.hidden = false;
  panel.replaceChildren(DW.el("p", {}, `Reading window ${w.window_id}…`));
  const detail = await DW.api("/api/window", { id: w.window_id });
  const chainId = page.pool.chain_id;
  const events = detail.events.map((e) => DW.el("tr", {},
    DW.el("td", { class: "num" }, e.block), DW.el("td", {}, DW.clock(e.time)), DW.el("td", {}, e.event),
    DW.el("td", {}, DW.explorerLink(chainId, e.tx_hash)),
    DW.el("td", {}, DW.explorerLink(chainId, e.tx_from)),
    DW.el("td", { class: "mono args" }, Object.entries(e.args).map(([k, v]) => `${k}=${v}`).join(" "))));
  const patterns = detail.window.patterns;
  DW.replace("window",
    DW.el("h2", {}, `Window ${w.window_id}`),
    ...windowSummary(w).slice(0, 3),
    patterns && Object.values(patterns).some((p) => p && p.length)
      ? DW.el("pre", { class: "patterns" }, JSON.stringify(patterns, null, 1)) : null,
    DW.el("h3", {}, "Events"),
    DW.el("p", { class: "sub" }, detail.events_note),
    events.length ? DW.el("div", { class: "events-box" }, DW.el("table", { class: "events" },
      DW.el("thead", {}, DW.el("tr", {}, ["Block", "Time (UTC)", "Event", "Transaction", "From", "Arguments"]
        .map((h) => DW.el("th", {}, h)))),
      DW.el("tbody", {}, events))) : null);
}

function drawOverlayLists() {
  const labels = page.labels.map((l) => DW.el("li", {},
    DW.el("strong", {}, l.kind), ` injected, blocks ${l.first_block}–${l.last_block} (${DW.dateTime(l.first_t)}): ${l.details}`));
  const verdicts = page.feedback.map((f) => DW.el("li", {},
    DW.el("span", { class: `verdict v-${f.verdict}` }, f.verdict), ` by ${f.verdict_by} on ${f.kind || "a thread"} ${DW.dateTime(f.first_t)}–${DW.clock(f.last_t)}`));
  DW.replace("overlays",
    DW.el("h2", {}, "Incidents and verdicts"),
    labels.length || verdicts.length ? DW.el("ul", {}, labels, verdicts)
      : DW.el("p", { class: "sub" }, "No incident label or verdict in this span."));
}

async function refresh() {
  if (!POOL) return "no pool: open this page from the overview or an alert";
  page = await DW.api("/api/pool", { pool: POOL, chain: DW.chain(), hours });
  const waiting = document.getElementById("waiting");
  waiting.hidden = !page.waiting;
  waiting.textContent = page.waiting || "";
  if (page.waiting) return "waiting for the first scores";
  const name = page.pool.name || DW.short(POOL);
  document.title = `dexwatch · ${name}`;
  DW.replace("title", name);
  const chainId = page.pool.chain_id;
  const others = page.chains.filter((c) => c.chain_id !== chainId);
  DW.replace("subtitle", `${page.pool.dex || ""} pool `, DW.explorerLink(chainId, POOL, POOL),
    ` · ${page.pool.chain || "chain ?"} · `,
    page.windows.length ? `${page.windows.length} scored windows up to ${DW.dateTime(page.span.to)} UTC`
      : "no scored window yet",
    ...(others.length ? [" · also on ", ...others.flatMap((c, i) => [i ? ", " : null,
      DW.poolLink(POOL, c.chain, c.chain_id)])] : []));
  draw();
  drawOverlayLists();
  return undefined;
}

spanButtons();
DW.poll(10000, refresh);
