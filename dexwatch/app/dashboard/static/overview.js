// The overview: every followed pool, refreshed every few seconds.
"use strict";

DW.header("Overview");

function poolRow(pool) {
  const latest = pool.latest || {};
  return DW.el("tr", { "data-pool": pool.pool },
    DW.el("td", {}, DW.poolLink(pool.pool, pool.name), DW.el("div", { class: "sub" }, pool.dex)),
    DW.el("td", {}, pool.chain_id),
    DW.scoreCell(pool.latest ? latest.score : null),
    DW.el("td", { title: pool.spark_source ? `${pool.spark_source} scores` : "" },
      DW.sparkline(pool.spark)),
    DW.el("td", { class: "num" }, pool.anomalies_today
      ? [String(pool.anomalies_today), " ", DW.severityBadge(pool.max_severity_today)] : "0"),
    DW.el("td", { class: pool.lag_s > 300 ? "stale" : "" }, DW.ago(pool.lag_s)),
    DW.el("td", { class: "mono" }, latest.model_version || "—"));
}

DW.poll(5000, async () => {
  const data = await DW.api("/api/overview");
  const waiting = document.getElementById("waiting");
  waiting.hidden = !data.waiting;
  waiting.textContent = data.waiting || "";
  if (data.waiting) return "waiting for the first scores";
  DW.replace("models", DW.modelVersions(data.models));
  const rows = data.pools.map(poolRow);
  DW.replace("pool-rows", rows.length ? rows : DW.el("tr", {}, DW.el("td", { colspan: 7 },
    "No pool announced yet: the chain publisher announces each pool before its events.")));
});
