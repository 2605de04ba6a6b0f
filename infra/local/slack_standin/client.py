"""``SlackStandinClient``: the admin surface (/_standin/) of a stand-in running in another
process (``python -m infra.local.slack_standin``), with the operations of ``SlackStandin``.

    standin = SlackStandinClient("http://127.0.0.1:8093")
    standin.inject("chat.postMessage", status=429, retry_after=2)
    posted = standin.messages("#dexwatch-alerts")
"""

from __future__ import annotations

import json
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen


class StandinAdminError(RuntimeError):
    """The stand-in refused an admin call."""


class SlackStandinClient:
    """Args:
    base: the stand-in's address, "http://127.0.0.1:PORT" (an "/api/" suffix is dropped).
    """

    def __init__(self, base: str, timeout_s: float = 10.0) -> None:
        base = base.rstrip("/")
        self.base = base.removesuffix("/api")
        self.timeout_s = timeout_s

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        query = f"?{urlencode({'channel': channel})}" if channel is not None else ""
        return self._call("GET", f"messages{query}")["messages"]

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "requests")["requests"]

    def inject(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        delay_s: float = 0.0,
        count: int = 1,
        channel: str | None = None,
    ) -> None:
        fault = {"method": method, "status": status, "error": error, "retry_after": retry_after,
                 "delay_s": delay_s, "count": count, "channel": channel}  # fmt: skip
        self._call("POST", "faults", fault)

    def click(
        self,
        channel: str,
        ts: str,
        action_id: str,
        value: str,
        user_id: str = "U0OPERATOR",
        user_name: str = "operator",
    ) -> int:
        """The HTTP status the interactivity URL answered the click with."""
        click = {"channel": channel, "ts": ts, "action_id": action_id, "value": value,
                 "user_id": user_id, "user_name": user_name}  # fmt: skip
        return int(self._call("POST", "click", click)["status"])

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def _call(self, verb: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = Request(
            f"{self.base}/_standin/{path}",
            data=data,
            method=verb,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urlopen(request, timeout=self.timeout_s) as answer:
                return json.loads(answer.read())
        except HTTPError as err:
            try:
                error = json.loads(err.read()).get("error")
            except (json.JSONDecodeError, AttributeError):
                error = None
            raise StandinAdminError(f"{verb} /_standin/{path}: HTTP {err.code} {error}") from None
