// The overview: every followed pool, refreshed every few seconds.
"use strict";

DW.header("Overview");

function poolRow(pool) {
  const latest = pool.latest || {};
  return DW.el("tr", { "data-pool": pool.pool, "data-chain": pool.chain_id },
    DW.el("td", {}, DW.poolLink(pool.pool, pool.name, pool.chain_id),
      DW.el("div", { class: "sub" }, `${pool.dex} · `, DW.explorerLink(pool.chain_id, pool.pool))),
    DW.el("td", { title: `chain id ${pool.chain_id}` }, pool.chain),
    DW.scoreCell(pool.latest ? latest.score : null),
    DW.el("td", { title: pool.spark_source ? `${pool.spark_source} scores` : "" },
      DW.sparkline(pool.spark)),
    DW.el("td", { class: "num" }, pool.anomalies_today
      ? [String(pool.anomalies_today), " ", DW.severityBadge(pool.max_severity_today)] : "0"),
    DW.el("td", { class: pool.lag_s > 300 ? "stale" : "" }, DW.ago(pool.lag_s)),
    DW.el("td", { class: "mono" }, latest.model_version || "—"));
}

// A chain at a glance: its name selects it; no window for 5 minutes is stale.
function chainRow(chain) {
  const stale = chain.lag_s === null || chain.lag_s > 300;
  return DW.el("tr", { "data-chain": chain.chain_id },
    DW.el("td", { title: `chain id ${chain.chain_id}` },
      DW.el("a", { href: DW.href("/", { chain: chain.name }) }, chain.name),
      chain.configured ? null : DW.el("div", { class: "sub" }, "not configured here")),
    DW.el("td", { class: "num" }, chain.pools),
    DW.el("td", { class: "num" }, chain.windows_24h),
    DW.el("td", { class: "num" }, chain.events_24h),
    DW.el("td", { class: `num ${chain.anomalies_24h ? "bad" : ""}` }, chain.anomalies_24h),
    DW.el("td", { class: stale ? "stale" : "" }, chain.last_window_end === null ? "nothing scored yet"
      : [`${DW.dateTime(chain.last_window_end)} UTC `, DW.el("span", { class: "sub" }, DW.ago(chain.lag_s))]));
}

DW.poll(5000, async () => {
  const data = await DW.api("/api/overview", { chain: DW.chain() });
  const waiting = document.getElementById("waiting");
  waiting.hidden = !data.waiting;
  waiting.textContent = data.waiting || "";
  if (data.waiting) return "waiting for the first scores";
  DW.replace("chain-rows", data.chains.map(chainRow));
  DW.replace("models", DW.modelVersions(data.models));
  const rows = data.pools.map(poolRow);
  DW.replace("pool-rows", rows.length ? rows : DW.el("tr", {}, DW.el("td", { colspan: 7 },
    "No pool announced yet: the chain publisher announces each pool before its events.")));
});
