// What every page of the dashboard shares: the header with its chain selector, reading
// /api/..., polling, formats, and a small helper to build DOM nodes (text is always set as
// text, never as HTML). The chain shown is the address's ?chain= (a chain's name or id; none:
// every chain): the selector sets it, links and reloads keep it.
"use strict";

const DW = (() => {
  const PAGES = [
    ["/", "Overview"],
    ["/alerts", "Alerts"],
    ["/model-health", "Model health"],
  ];
  const SEVERITY_RANK = { low: 0, medium: 1, high: 2 };
  const CHAINS_EVERY_MS = 30000;
  let chains = [];       // /api/chains: [{chain_id, name, explorer_url, configured}]
  let chainsReadAt = 0;  // when they were last read (ms)
  let reloadNow = null;  // the page's poll: run at once when the chain changes

  // el("td", {class: "num", title: "..."}, "text", otherNode, ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // The chain shown: "" for every chain.
  function chain() {
    return new URLSearchParams(location.search).get("chain") || "";
  }

  // A chain by id: its name and explorer (as /api/chains said; chain-<id> before).
  function chainOf(chainId) {
    return chains.find((c) => c.chain_id === chainId)
      || { chain_id: chainId, name: `chain-${chainId}`, explorer_url: null };
  }

  // A page's address with these parameters and the chain shown (unless they name one).
  function href(path, params) {
    const query = new URLSearchParams(chain() ? { chain: chain() } : {});
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== "" && value !== null && value !== undefined) query.set(key, value);
    }
    const search = query.toString();
    return search ? `${path}?${search}` : path;
  }

  function drawNav() {
    const here = location.pathname;
    replace("nav", PAGES.map(([path, label]) =>
      el("a", { href: href(path), class: path === here ? "active" : null }, label)));
  }

  function drawChainSelect() {
    const chosen = chain();
    const options = [["", "all chains"], ...chains.map((c) => [c.name, c.name, String(c.chain_id)])];
    const known = options.some(([value, , id]) => chosen === value || chosen === id);
    if (chosen && !known) options.push([chosen, chosen]);
    replace("chain-select", options.map(([value, text, id]) => el("option", {
      value, title: id ? `chain id ${id}` : null, selected: chosen === value || Boolean(id && chosen === id),
    }, text)));
  }

  function setChain(value) {
    const query = new URLSearchParams(location.search);
    if (value) query.set("chain", value);
    else query.delete("chain");
    history.replaceState(null, "", query.toString() ? `?${query}` : location.pathname);
    drawNav();
    if (reloadNow) reloadNow();
  }

  // The chains, read again every CHAINS_EVERY_MS (a chain's first rows add it).
  async function readChains() {
    if (Date.now() - chainsReadAt < CHAINS_EVERY_MS) return;
    const answer = await api("/api/chains");
    chainsReadAt = Date.now();
    chains = answer.chains || [];
    drawChainSelect();
  }

  function header(title) {
    const nav = el("nav", { id: "nav" });
    const select = el("select", { id: "chain-select", name: "chain",
      onchange: (event) => setChain(event.target.value) });
    const picker = el("label", { class: "chain" }, "Chain ", select);
    const status = el("span", { id: "status", class: "status" }, "loading…");
    document.body.prepend(el("header", {}, el("strong", {}, "dexwatch"), nav, picker, status));
    document.title = `dexwatch · ${title}`;
    drawNav();
    drawChainSelect();
  }

  function setStatus(text, isError) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  async function api(path, params) {
    const query = new URLSearchParams(
      Object.entries(params || {}).filter(([, v]) => v !== "" && v !== null && v !== undefined));
    const search = query.toString();
    const response = await fetch(search ? `${path}?${search}` : path);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  // Calls load() now and every intervalMs after the previous call ended, and at once when
  // the chain changes; the header says when the page was last updated, or what went wrong
  // (and it keeps trying).
  function poll(intervalMs, load) {
    let timer = null;
    let run = 0;
    async function tick() {
      clearTimeout(timer);
      const mine = ++run;
      try {
        await readChains().catch(() => {});
        const waiting = await load();
        if (mine === run) setStatus(waiting || `updated ${clock(Date.now() / 1000)} UTC`, false);
      } catch (err) {
        if (mine === run) setStatus(`cannot update: ${err.message}`, true);
      }
      if (mine === run) timer = setTimeout(tick, intervalMs);
    }
    reloadNow = tick;
    tick();
  }

  function clock(unixSeconds) {
    return new Date(unixSeconds * 1000).toISOString().slice(11, 19);
  }

  function dateTime(unixSeconds) {
    return new Date(unixSeconds * 1000).toISOString().slice(0, 19).replace("T", " ");
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 129600) return `${(seconds / 3600).toFixed(1)} h ago`;
    return `${(seconds / 86400).toFixed(1)} days ago`;
  }

  function num(value, digits = 3) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
  }

  function short(address) {
    return address && address.length > 12 ? `${address.slice(0, 6)}…${address.slice(-4)}` : address;
  }

  // A pool's page: the pool on its chain (an address can be a pool on several).
  function poolLink(pool, name, chainId) {
    const on = chainId === undefined || chainId === null ? {} : { chain: chainOf(chainId).name };
    return el("a", { href: href("/pool", { ...on, pool }), title: pool }, name || short(pool));
  }

  // An address or a transaction hash, linked to its chain's block explorer when it has one.
  function explorerLink(chainId, value, text) {
    const base = chainOf(chainId).explorer_url;
    const label = text || short(value);
    if (!base || !value) return el("span", { class: "mono", title: value || null }, label || "—");
    const kind = value.length === 66 ? "tx" : "address";
    return el("a", { class: "mono", href: `${base.replace(/\/+$/, "")}/${kind}/${value}`, title: value,
      target: "_blank", rel: "noopener" }, label);
  }

  function severityBadge(severity) {
    return severity ? el("span", { class: `badge sev-${severity}` }, severity) : "—";
  }

  // A score below 0 is anomalous: the cell says so with its colour.
  function scoreCell(score) {
    return el("td", { class: `num ${score !== null && score < 0 ? "bad" : ""}` }, num(score));
  }

  // A small line of the values (scores), with the 0 line dashed when it is in range.
  function sparkline(values, width = 160, height = 28) {
    const svgNs = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNs, "svg");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("class", "spark");
    if (values.length < 2) return svg;
    const low = Math.min(0, ...values), high = Math.max(0, ...values);
    const y = (v) => height - 2 - ((v - low) / (high - low || 1)) * (height - 4);
    const x = (i) => (i / (values.length - 1)) * (width - 2) + 1;
    const zero = document.createElementNS(svgNs, "line");
    Object.entries({ x1: 0, x2: width, y1: y(0), y2: y(0), class: "zero" })
      .forEach(([k, v]) => zero.setAttribute(k, v));
    const line = document.createElementNS(svgNs, "polyline");
    line.setAttribute("points", values.map((v, i) => `${x(i)},${y(v)}`).join(" "));
    svg.append(zero, line);
    values.forEach((v, i) => {
      if (v >= 0) return;
      const dot = document.createElementNS(svgNs, "circle");
      Object.entries({ cx: x(i), cy: y(v), r: 2, class: "bad" }).forEach(([k, v2]) => dot.setAttribute(k, v2));
      svg.append(dot);
    });
    return svg;
  }

  function modelVersions(models) {
    const production = models.production.map((m) => `${m.model} ${m.version}`);
    const scoring = models.scoring.map((m) => `${m.source}: ${m.model_version} (${m.windows} windows)`);
    return el("p", { class: "models" },
      el("strong", {}, "Models in production: "), production.join(", ") || "none registered",
      " · ", el("strong", {}, "scoring the last hour: "), scoring.join(", ") || "nothing yet");
  }

  function replace(id, ...children) {
    const target = document.getElementById(id);
    target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
    return target;
  }

  // uPlot's time axis in UTC, 24-hour clock: times of day, with the date on spans of days.
  const timeAxis = {
    space: 90, // pixels between ticks: room for a whole time
    values: (u, splits) => {
      const days = (u.scales.x.max - u.scales.x.min) > 86400;
      return splits.map((s) => (days ? dateTime(s).slice(5, 16) : clock(s)));
    },
  };
  const utcDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");

  return {
    SEVERITY_RANK, el, header, api, poll, clock, dateTime, ago, num, short, poolLink,
    severityBadge, scoreCell, sparkline, modelVersions, replace, timeAxis, utcDate,
    chain, chainOf, href, explorerLink,
  };
})();
