"""The stand-in's HTTP side: GraphQL over POST on 127.0.0.1, one path per subgraph, in The
Graph's URL forms (``.../subgraphs/id/<id>`` and ``.../deployments/id/<id>``, with or
without a gateway API key segment before them), and scripted faults for tests.

    with SubgraphStandIn({source.path: StandInSubgraph("v3", rows)}) as standin:
        standin.inject("http_429", "graphql_error", when="poolHourDatas")
        ... point subgraph.endpoint_url at standin.url ...

Each injected fault applies to the next request whose query contains ``when`` (any request
if empty), in order. Random faults (``faults={"http_429": 0.2}``, ``seed``) are served at
those shares, for command-line runs (``python -m infra.local.subgraph --fault``).
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any, get_args

from infra.local.http_server import LocalHttpServer, send_json
from infra.local.settings import StandInFault, SubgraphStandInSettings
from infra.local.subgraph.schema import StandInSubgraph

# http_429: rate limited; http_500, http_503; graphql_error: a 200 whose body has only
# GraphQL errors, as when indexers fail; timeout: answers nothing for hang_s, then closes
# the connection.
FAULTS: tuple[str, ...] = get_args(StandInFault)
_GRAPHQL_ERROR = "bad indexers: indexer unavailable (stand-in fault)"


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: str
    variables: Mapping[str, Any]


class RandomFaults:
    """Faults drawn per request at the given shares from a generator seeded with ``seed``:
    with the same shares and seed, a run's n-th draw is always the same fault (or none)."""

    def __init__(self, shares: Mapping[str, float], seed: int = 0) -> None:
        unknown = set(shares) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}")
        if sum(shares.values()) > 1:
            raise ValueError("the fault shares add up to more than 1")
        self._shares = [(fault, shares[fault]) for fault in FAULTS if shares.get(fault)]
        self._random = random.Random(seed)

    def draw(self) -> str | None:
        if not self._shares:
            return None
        point = self._random.random()
        for fault, share in self._shares:
            if point < share:
                return fault
            point -= share
        return None


def describe_behaviour(standin: SubgraphStandInSettings) -> str:
    """One line of what the stand-in is set to do besides answering."""
    lag = f"lag {standin.lag_blocks} blocks and {standin.lag_s:g} s of chain time"
    shares = [f"{fault} {share * 100:g}%" for fault, share in standin.faults.items() if share]
    if not shares:
        return f"{lag}; no faults"
    return f"{lag}; faults {', '.join(shares)} (seed {standin.seed}, hang {standin.hang_s:g} s)"


class SubgraphStandIn:
    def __init__(
        self,
        subgraphs: Mapping[str, StandInSubgraph],
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        hang_s: float = 2.0,
        faults: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        """``subgraphs`` by path, e.g. ``subgraphs/id/<id>``. With ``api_key``, requests must
        carry it as the path segment before that, as on the gateway (else HTTP 401).
        ``faults`` are shares of requests answered with each fault (``RandomFaults``);
        injected faults come first."""
        self.subgraphs = dict(subgraphs)
        self.api_key = api_key
        self.hang_s = hang_s
        self.requests: list[RecordedRequest] = []
        self.faults_served: list[str] = []
        self._faults: list[tuple[str, str]] = []
        self._random_faults = RandomFaults(faults or {}, seed)
        self._lock = threading.Lock()
        self._http = LocalHttpServer(self._handler(), host, port)

    @property
    def url(self) -> str:
        return self._http.url

    def inject(self, *faults: str, when: str = "") -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}")
        with self._lock:
            self._faults += [(when, fault) for fault in faults]

    def pending(self) -> int:
        with self._lock:
            return len(self._faults)

    def start(self) -> SubgraphStandIn:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> SubgraphStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _next_fault(self, query: str) -> str | None:
        with self._lock:
            for index, (when, fault) in enumerate(self._faults):
                if when in query:
                    del self._faults[index]
                    self.faults_served.append(fault)
                    return fault
            drawn = self._random_faults.draw()
            if drawn is not None:
                self.faults_served.append(drawn)
            return drawn

    def _route(self, path: str) -> tuple[StandInSubgraph | None, int]:
        """The subgraph a request path names, or (None, the HTTP status to answer)."""
        path = path.split("?", 1)[0].strip("/")
        for subgraph_path, subgraph in self.subgraphs.items():
            if path == subgraph_path or path.endswith("/" + subgraph_path):
                prefix = path[: -len(subgraph_path)].strip("/")
                if self.api_key is not None and prefix.rsplit("/", 1)[-1] != self.api_key:
                    return None, 401
                return subgraph, 200
        return None, 404

    def _answer(self, path: str, body: bytes) -> tuple[int, dict[str, Any]] | None:
        """(status, JSON body), or None to close the connection without an answer."""
        subgraph, status = self._route(path)
        if subgraph is None:
            message = "auth error: invalid API key" if status == 401 else "subgraph not found"
            return status, {"errors": [{"message": message}]}
        try:
            request = json.loads(body)
            query, variables = request["query"], request.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return 400, {"errors": [{"message": "the body must be a GraphQL request"}]}
        with self._lock:
            self.requests.append(RecordedRequest(path, query, variables))
        fault = self._next_fault(query)
        if fault in ("http_429", "http_500", "http_503"):
            return int(fault[-3:]), {"errors": [{"message": f"injected {fault}"}]}
        if fault == "graphql_error":
            return 200, {"errors": [{"message": _GRAPHQL_ERROR}]}
        if fault == "timeout":
            time.sleep(self.hang_s)
            return None
        return 200, subgraph.execute(query, variables)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                answer = standin._answer(self.path, body)
                if answer is None:
                    self.close_connection = True
                    return
                status, reply = answer
                send_json(self, status, json.dumps(reply).encode())

            def log_message(self, *_: Any) -> None:  # paths may carry an API key
                pass

        return Handler
