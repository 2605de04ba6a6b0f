// What every page of the dashboard shares: the header, reading /api/..., polling, formats,
// and a small helper to build DOM nodes (text is always set as text, never as HTML).
"use strict";

const DW = (() => {
  const PAGES = [
    ["/", "Overview"],
    ["/alerts", "Alerts"],
    ["/model-health", "Model health"],
  ];
  const SEVERITY_RANK = { low: 0, medium: 1, high: 2 };

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

  function header(title) {
    const here = location.pathname;
    const nav = el("nav", {}, PAGES.map(([path, label]) =>
      el("a", { href: path, class: path === here ? "active" : null }, label)));
    const status = el("span", { id: "status", class: "status" }, "loading…");
    document.body.prepend(el("header", {}, el("strong", {}, "dexwatch"), nav, status));
    document.title = `dexwatch · ${title}`;
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

  // Calls load() now and every intervalMs after the previous call ended; the header says
  // when the page was last updated, or what went wrong (and it keeps trying).
  function poll(intervalMs, load) {
    async function tick() {
      try {
        const waiting = await load();
        setStatus(waiting || `updated ${clock(Date.now() / 1000)} UTC`, false);
      } catch (err) {
        setStatus(`cannot update: ${err.message}`, true);
      }
      setTimeout(tick, intervalMs);
    }
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

  function poolLink(pool, name) {
    return el("a", { href: `/pool?pool=${encodeURIComponent(pool)}`, title: pool }, name || short(pool));
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
  };
})();
