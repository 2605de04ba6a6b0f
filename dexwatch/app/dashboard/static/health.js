// The models' health: drift per feature, the anomaly rate over time, dead letters by stage;
// the rate, the letters and the versions scoring of the header's chain (the models and their
// drift are every chain's).
"use strict";

DW.header("Model health");

let rateChart = null;

function bar(value, max, bad) {
  const width = max > 0 ? Math.min(100, (100 * value) / max) : 0;
  return DW.el("div", { class: "bar" }, DW.el("span", { class: bad ? "bad" : "", style: `width: ${width}%` }));
}

function driftTables(data) {
  const threshold = data.psi_threshold;
  return data.drift.models.map((m) => {
    const head = DW.el("h3", {}, `${m.model} ${m.version} `,
      DW.el("span", { class: "sub" }, m.has_bins ? `(${m.source}; ${m.recent_rows} rows in the last ${data.drift_hours} h)` : `(${m.source})`));
    if (!m.features.length) {
      return [head, DW.el("p", { class: "sub" }, m.has_bins
        ? `No ${m.source} rows in the last ${data.drift_hours} h to compare with its training data.`
        : "This version records no training bins to compare with (a first model from `dexwatch model bootstrap`); versions from `dexwatch train` do.")];
    }
    const max = Math.max(threshold * 2, ...m.features.map((f) => f.psi));
    return [head, DW.el("table", { class: "drift" },
      DW.el("thead", {}, DW.el("tr", {}, DW.el("th", {}, "Feature"), DW.el("th", { class: "num" }, "PSI"), DW.el("th", {}, ""))),
      DW.el("tbody", {}, m.features.map((f) => DW.el("tr", { class: f.psi > threshold ? "drifted" : "" },
        DW.el("td", { title: f.feature }, f.words),
        DW.el("td", { class: `num ${f.psi > threshold ? "bad" : ""}` }, DW.num(f.psi)),
        DW.el("td", {}, bar(f.psi, max, f.psi > threshold))))))];
  });
}

function drawRate(rate) {
  const target = document.getElementById("rate");
  const xs = [...new Set(rate.points.map((p) => p.t))].sort((a, b) => a - b);
  const sources = [...new Set(rate.points.map((p) => p.source))].sort();
  const data = [xs, ...sources.map((s) => xs.map((x) => {
    const p = rate.points.find((q) => q.t === x && q.source === s);
    return p ? 100 * p.rate : null;
  }))];
  const shape = sources.join(",");
  if (rateChart && rateChart.shape === shape) {
    rateChart.setData(data);
    return;
  }
  if (rateChart) rateChart.destroy();
  target.replaceChildren();
  rateChart = new uPlot({
    width: target.clientWidth, height: 200, tzDate: DW.utcDate, legend: { live: false },
    scales: { x: { time: true }, y: { range: (u, lo, hi) => [0, Math.max(5, hi)] } },
    axes: [DW.timeAxis, { label: "% of windows anomalous", size: 60 }],
    series: [{}, ...sources.map((s, i) => ({
      label: `${s} (%)`, stroke: ["#2563eb", "#d97706"][i % 2], width: 1.5, spanGaps: true,
      points: { show: true, size: 4 },
    }))],
  }, data, target);
  rateChart.shape = shape;
}

function letters(dead) {
  if (!dead.stages.length) return DW.el("p", {}, "None: every message was read.");
  const max = Math.max(...dead.stages.map((s) => s.letters));
  return [
    DW.el("table", { class: "drift" }, DW.el("tbody", {}, dead.stages.map((s) => DW.el("tr", {},
      DW.el("td", {}, s.stage), DW.el("td", { class: "num" }, s.letters),
      DW.el("td", {}, bar(s.letters, max, true)),
      DW.el("td", { class: "sub" }, `last ${DW.dateTime(s.last_received_at)} UTC`))))),
    DW.el("h3", {}, "Latest"),
    DW.el("ul", {}, dead.latest.map((l) => DW.el("li", {}, `${DW.dateTime(l.received_at)} ${l.stage}`
      + `${l.chain_id === null ? "" : ` (${DW.chainOf(l.chain_id).name})`}: ${l.reason}`))),
  ];
}

DW.poll(15000, async () => {
  const data = await DW.api("/api/model-health", { chain: DW.chain() });
  const waiting = document.getElementById("waiting");
  waiting.hidden = !data.waiting;
  waiting.textContent = data.waiting || "";
  if (data.waiting) return "waiting for the first scores";
  DW.replace("models", DW.modelVersions(data.models));
  DW.replace("drift-hint", `Population Stability Index of each feature of each production model: its training data against the rows of the last ${data.drift_hours} h (as \`dexwatch drift check\`); above ${data.psi_threshold} (red) is drift worth a look.`);
  DW.replace("drift", driftTables(data).flat());
  const recent = Object.entries(data.drift.recent_rate || {})
    .map(([s, r]) => `${s} ${(100 * r.rate).toFixed(1)} % of ${r.rows} windows`).join(", ");
  const chain = data.chain_id === null ? "" : ` of ${DW.chainOf(data.chain_id).name}`;
  DW.replace("rate-hint", `Share of scored windows${chain} flagged as anomalous, per ${data.anomaly_rate.step_s ? data.anomaly_rate.step_s / 60 : "?"} min, over the last day of scores (pool_score_history). Last ${data.drift.rate_hours} h, every chain: ${recent || "nothing scored"}.`);
  drawRate(data.anomaly_rate);
  DW.replace("letters", letters(data.dead_letters));
});
