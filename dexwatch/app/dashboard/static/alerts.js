// The alert threads, live: polled every few seconds with the filters of the form and the
// header's chain (kept in the page's address, so a filtered list can be linked to).
"use strict";

DW.header("Alerts");

const form = document.getElementById("filters");
const seen = new Set();
let firstLoad = true;

function filters() {
  return { ...Object.fromEntries(new FormData(form).entries()), chain: DW.chain() };
}

// A select's options, keeping what is chosen (even if it has no thread any more).
function fill(select, values, label) {
  const chosen = select.value || new URLSearchParams(location.search).get(select.name) || "";
  const options = [["", "all"], ...values.map((v) => (Array.isArray(v) ? v : [String(v), label(v)]))];
  if (chosen && !options.some(([v]) => v === chosen)) options.push([chosen, chosen]);
  select.replaceChildren(...options.map(([value, text]) =>
    DW.el("option", { value, selected: value === chosen }, text)));
}

function threadRow(t) {
  const fresh = !firstLoad && !seen.has(t.alert_id);
  seen.add(t.alert_id);
  const pools = t.pools.map((p, i) => DW.poolLink(p, t.pool_names && t.pool_names[i], t.chain_id));
  const feedback = t.feedback
    ? [DW.el("span", { class: `verdict v-${t.feedback.verdict}` }, t.feedback.verdict),
       DW.el("div", { class: "sub" }, `${t.feedback.by} ${t.feedback.words}, ${DW.dateTime(t.feedback.at)}`)]
    : DW.el("span", { class: "sub" }, "no click yet");
  const others = t.kinds.filter((k) => k !== t.kind);
  return DW.el("tr", { class: fresh ? "fresh" : null, "data-alert": t.alert_id },
    DW.el("td", {}, DW.severityBadge(t.severity)),
    DW.el("td", {}, t.kind, others.length ? DW.el("div", { class: "sub" }, `also ${others.join(", ")}`) : null),
    DW.el("td", {}, pools.flatMap((p, i) => (i ? [", ", p] : [p])),
      DW.el("div", { class: "sub", title: `chain id ${t.chain_id}` },
        `${t.chain || `chain ${t.chain_id}`}${t.scope !== "pool" ? ` · ${t.scope}` : ""}`)),
    t.worst_score === null ? DW.el("td", { class: "num" }, "—")
      : DW.el("td", { class: "num bad", title: `latest ${DW.num(t.latest_score)}` }, DW.num(t.worst_score)),
    DW.el("td", {}, DW.el("ul", { class: "why" }, t.top_features.slice(0, 3).map((w) => DW.el("li", {}, w)))),
    DW.el("td", {}, `${DW.dateTime(t.first_window_start)} – ${DW.clock(t.last_window_end)}`,
      DW.el("div", { class: "sub" }, `${t.windows} window${t.windows === 1 ? "" : "s"}`)),
    DW.el("td", {}, t.source_words.join(", ")),
    DW.el("td", {}, feedback));
}

async function load() {
  const data = await DW.api("/api/alerts", filters());
  const waiting = document.getElementById("waiting");
  waiting.hidden = !data.waiting;
  waiting.textContent = data.waiting || "";
  if (data.waiting) return "waiting for the first scores";
  const o = data.options;
  const names = Object.fromEntries(o.pools.map((p) => [p.pool, p.name || DW.short(p.pool)]));
  fill(form.elements.pool, o.pools.map((p) => p.pool), (p) => names[p]);
  fill(form.elements.kind, o.kinds, (k) => k);
  fill(form.elements.severity, o.severities, (s) => s);
  const rows = data.threads.map(threadRow);
  firstLoad = false;
  DW.replace("alert-rows", rows.length ? rows
    : DW.el("tr", {}, DW.el("td", { colspan: 8 }, "No alert thread matches.")));
  document.getElementById("count").textContent =
    `${data.threads.length} thread${data.threads.length === 1 ? "" : "s"}`;
}

// The filters of the address first; a change reloads at once and goes into the address.
for (const [name, value] of new URLSearchParams(location.search)) {
  if (form.elements[name]) fill(form.elements[name], [], () => value);
}
form.addEventListener("change", () => {
  const query = new URLSearchParams(Object.entries(filters()).filter(([, v]) => v));
  history.replaceState(null, "", query.toString() ? `?${query}` : location.pathname);
  load().catch(() => {});
});
DW.poll(3000, load);
