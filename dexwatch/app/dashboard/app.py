"""The dashboard's WSGI application: four pages, the JSON they poll, and their static files.

Plain WSGI, as the project's other HTTP services (model/serving/app.py,
dexwatch/app/slack/server.py): each page is a static HTML file and a small script that draws
what ``/api/...`` answers; the charts are uPlot, served from the npm install
(node_modules/uplot): nothing is fetched from the internet.

- ``/`` overview, ``/alerts``, ``/pool?pool=0x...&chain=`` (the pool page Slack's buttons
  link to, slack.dashboard_url), ``/model-health``;
- ``/api/chains``, ``/api/overview?chain=``, ``/api/alerts?chain=&pool=&kind=&severity=``,
  ``/api/pool?pool=&chain=&hours=``, ``/api/window?id=``, ``/api/model-health?chain=``;
  ``/healthz``.

Every page takes ``chain`` (a chain's name or id, chains.py; none: every chain) and keeps it
in its address and its links; the header's selector sets it.

Answers are kept ``CACHE_S`` seconds: pages poll every few seconds, and each read opens the
warehouse file the pipeline writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from dexwatch.app.dashboard.alerts import Filters, alert_threads
from dexwatch.app.dashboard.chains import chain_id_of, chain_list, chains_present
from dexwatch.app.dashboard.health import model_health
from dexwatch.app.dashboard.overview import overview
from dexwatch.app.dashboard.pool import pool_page
from dexwatch.app.dashboard.reader import BadRequest, DashboardReader
from dexwatch.app.dashboard.window import window_detail
from dexwatch.core.errors import DexwatchError
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import WarehouseError

log = logging.getLogger("dexwatch.dashboard")

STATIC_DIR = Path(__file__).parent / "static"
PAGES = {"/": "overview.html", "/alerts": "alerts.html", "/pool": "pool.html",
         "/model-health": "health.html"}  # fmt: skip
# uPlot's files in the npm install, served under /vendor/.
VENDOR_FILES = ("uPlot.iife.min.js", "uPlot.min.css")
CACHE_S = 2.0
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}  # fmt: skip
_STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found",
           405: "405 Method Not Allowed", 500: "500 Internal Server Error"}  # fmt: skip

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Api = Callable[[dict[str, str]], dict[str, Any]]


class DashboardError(DexwatchError):
    """The dashboard cannot be served (its chart library is not installed)."""


def uplot_dir(settings: Settings) -> Path:
    """Where uPlot's files are: the npm install of local.node_modules, else of the checkout
    the package runs from. Raises DashboardError when neither has it."""
    local = getattr(settings, "local", None)
    candidates = [Path(__file__).resolve().parents[3] / "node_modules"]
    if local is not None:
        candidates.insert(0, Path(local.node_modules))
    for node_modules in candidates:
        dist = node_modules / "uplot" / "dist"
        if all((dist / name).is_file() for name in VENDOR_FILES):
            return dist
    raise DashboardError(
        f"uPlot is not installed (looked in {', '.join(str(c) for c in candidates)}): "
        "`make install` (npm ci) installs it"
    )


def make_app(settings: Settings) -> WsgiApp:
    """The dashboard of ``settings``' warehouse.

    Args:
        settings: the warehouse, the registry, the local journal, pool names.
    """
    reader = DashboardReader(settings)
    vendor = uplot_dir(settings)

    def chain(query: dict[str, str]) -> int | None:
        return chain_id_of(settings, query.get("chain"))

    def alerts(query: dict[str, str]) -> dict[str, Any]:
        return alert_threads(reader, settings, Filters.parse(query, settings))

    def pool(query: dict[str, str]) -> dict[str, Any]:
        try:
            hours = float(query.get("hours") or 2)
        except ValueError:
            raise BadRequest("hours is a number") from None
        return pool_page(reader, settings, query.get("pool", ""), hours, chain(query))

    apis: dict[str, Api] = {
        "/api/chains": lambda _: {"chains": chain_list(settings, chains_present(reader))},
        "/api/overview": lambda query: overview(reader, settings, chain(query)),
        "/api/alerts": alerts,
        "/api/pool": pool,
        "/api/window": lambda query: window_detail(reader, settings, query.get("id", "")),
        "/api/model-health": lambda query: model_health(reader, settings, chain(query)),
    }
    cache = _Cache(CACHE_S)

    def api(path: str, query_string: str) -> tuple[int, dict[str, Any]]:
        query = dict(parse_qsl(query_string))
        try:
            return 200, cache.get((path, query_string), lambda: apis[path](query))
        except BadRequest as err:
            return 400, {"error": str(err)}
        except WarehouseError:
            # The first minutes of a run: the page says so and keeps polling.
            return 200, {"waiting": f"no warehouse at {reader.path} yet: nothing scored so far"}
        except Exception as err:  # noqa: BLE001 - the page shows it, the log keeps the trace
            log.exception("dashboard: %s failed", path)
            return 500, {"error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        content_type = "application/json"
        if method not in ("GET", "HEAD"):
            status, body = 405, orjson.dumps({"error": "the dashboard answers GET"})
        elif path in apis:
            status, answer = api(path, environ.get("QUERY_STRING", ""))
            body = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
        elif path == "/healthz":
            status, body = 200, b'{"status":"ok"}'
        else:
            file = _static_file(path, vendor)
            if file is None:
                status, body = 404, orjson.dumps({"error": f"no page {path}"})
            else:
                status, body, content_type = 200, file.read_bytes(), _TYPES[file.suffix]
        start_response(_STATUS[status], [
            ("Content-Type", content_type), ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ])  # fmt: skip
        return [b"" if method == "HEAD" else body]

    return app


def _static_file(path: str, vendor: Path) -> Path | None:
    """The file a page path names: a page, a file of static/, or one of uPlot's; nothing
    else (no path reaches outside these)."""
    if path in PAGES:
        return STATIC_DIR / PAGES[path]
    folder, _, name = path.rpartition("/")
    if folder == "/static" and name in _static_names():
        return STATIC_DIR / name
    if folder == "/vendor" and name in VENDOR_FILES:
        return vendor / name
    return None


def _static_names() -> set[str]:
    return {p.name for p in STATIC_DIR.iterdir() if p.suffix in _TYPES}


class _Cache:
    """Answers by key, each for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._answers: dict[Any, tuple[float, dict[str, Any]]] = {}

    def get(self, key: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            found = self._answers.get(key)
        if found is not None and time.monotonic() - found[0] < self._ttl_s:
            return found[1]
        answer = compute()
        with self._lock:
            now = time.monotonic()
            # Forget stale answers: the keys are query strings, unbounded over a day.
            self._answers = {k: v for k, v in self._answers.items() if now - v[0] < self._ttl_s}
            self._answers[key] = (now, answer)
        return answer
