"""A GraphQL client for The Graph's gateway (or a graph-node style endpoint), over httpx.

Transient failures are retried with exponential backoff and full jitter (``subgraph.retry``):
HTTP 429 and 5xx, timeouts, refused connections, replies that are not JSON, and GraphQL
``errors`` in a 200 answer unless they say the query itself is wrong. A query the subgraph's
schema cannot answer (a missing entity or field) raises SubgraphSchemaError at once:
retrying cannot fix it. The API key sits in the URL path; it is registered as a log secret
and every message shows the URL with ``***`` in its place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import orjson

from dexwatch.core.logs import register_secret
from dexwatch.core.retry import RetryPolicy
from dexwatch.core.secrets import resolve_secret
from dexwatch.core.settings import SubgraphSettings, SubgraphSource
from publishers.subgraph.errors import (
    SubgraphQueryError,
    SubgraphSchemaError,
    SubgraphUnavailable,
)

log = logging.getLogger("dexwatch.publisher.subgraph.gateway")

# graph-node's validation message, and the GraphQL reference implementation's.
_MISSING_FIELD = (
    re.compile(r"Type `(?P<type>\w+)` has no field `(?P<field>\w+)`"),
    re.compile(r"Cannot query field ['\"](?P<field>\w+)['\"] on type ['\"](?P<type>\w+)['\"]"),
)
# GraphQL errors that say the query is wrong (retrying it cannot help); any other error in a
# 200 answer (indexer unavailable, store timeouts, "bad indexers") is worth another try.
_QUERY_FAULTS = (
    "must be between",
    "unknown argument",
    "unknown type",
    "syntax error",
    "invalid value",
    "expected type",
    "auth error",
    "invalid api key",
    "malformed api key",
)


class _Transient(Exception):
    """Worth another try."""


def resolve_api_key(settings: SubgraphSettings) -> str | None:
    """The gateway API key: from the settings (environment) or Secret Manager; None when
    queries go to a keyless endpoint_url."""
    if settings.endpoint_url is not None:
        return None
    return resolve_secret(settings.api_key, settings.api_key_secret, "the gateway API key")


class GraphQLClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``retry`` None means subgraph.retry's default."""
        base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._base_url = f"{base_url}/{api_key}" if api_key else base_url
        self._shown_base = f"{base_url}/***" if api_key else base_url
        register_secret(api_key)  # httpx logs full URLs at DEBUG
        self._retry = retry or SubgraphSettings().retry
        self._http = httpx.Client(
            timeout=self._retry.timeout_s, headers={"content-type": "application/json"}
        )

    @classmethod
    def from_settings(cls, settings: SubgraphSettings) -> GraphQLClient:
        return cls(
            settings.endpoint_url or settings.gateway_url,
            resolve_api_key(settings),
            retry=settings.retry,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GraphQLClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def shown_url(self, source: SubgraphSource) -> str:
        """The source's URL as it may be logged: the API key replaced by ***."""
        return f"{self._shown_base}/{source.path}"

    def query(
        self,
        source: SubgraphSource,
        query: str,
        variables: Mapping[str, Any] | None = None,
        what: str = "query",
    ) -> dict[str, Any]:
        """The ``data`` of a successful answer; raises SubgraphUnavailable after the retries,
        SubgraphQueryError (SubgraphSchemaError) when the query itself is refused."""
        url = f"{self._base_url}/{source.path}"
        body = orjson.dumps({"query": query, "variables": dict(variables or {})})
        shown = self.shown_url(source)

        def failed(attempt: int, err: BaseException) -> None:
            log.warning(
                "%s on %s failed: %s",
                what,
                shown,
                self._scrub(str(err)),
                extra={"attempt": attempt, "subgraph": shown},
            )

        retrying = self._retry.retrying(_Transient, on_failure=failed)
        try:
            return retrying(lambda: self._data(self._post(url, body, source), source))
        except _Transient as err:
            last_error = self._scrub(str(err))
        raise SubgraphUnavailable(
            f"{what} on {shown}: no usable answer after {self._retry.attempts} attempts; "
            f"last error: {last_error}"
        )

    def query_pages(
        self,
        source: SubgraphSource,
        query: str,
        variables: Mapping[str, Any],
        page_size: int,
        what: str,
    ) -> Iterator[list[dict[str, Any]]]:
        """The pages of ``query``, whose rows (aliased ``rows``) come ordered by id ascending,
        ``$first`` of them after id ``$after``: page after page, after the last id seen,
        until one is short (The Graph caps ``first`` at 1000 and ``skip`` at 5000)."""
        after = ""
        while True:
            page_variables = {**variables, "after": after, "first": page_size}
            page = self.query(source, query, page_variables, what=what)["rows"]
            yield page
            if len(page) < page_size:
                return
            last = str(page[-1]["id"])
            if last <= after:
                raise SubgraphQueryError(
                    f"{self.shown_url(source)}: {what} paging did not advance past id {after!r}"
                )
            after = last

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _post(self, url: str, body: bytes, source: SubgraphSource) -> Any:
        try:
            response = self._http.post(url, content=body)
        except httpx.TimeoutException:
            raise _Transient("timed out") from None
        except httpx.TransportError as err:
            raise _Transient(f"{type(err).__name__}: {self._scrub(str(err))}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        if status in (401, 403):
            raise SubgraphQueryError(
                f"{self.shown_url(source)} refused the API key (HTTP {status}): check "
                "DEXWATCH_SUBGRAPH__API_KEY or subgraph.api_key_secret"
            )
        if status == 404:
            raise SubgraphQueryError(
                f"no subgraph at {self.shown_url(source)} (HTTP 404): check its id in "
                "subgraph.sources"
            )
        try:
            reply = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            if status >= 400:
                raise SubgraphQueryError(
                    f"{self.shown_url(source)} answered HTTP {status}"
                ) from None
            raise _Transient(f"HTTP {status} with a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise _Transient(f"HTTP {status} with a reply that is not a JSON object")
        if status >= 400 and not reply.get("errors"):
            raise SubgraphQueryError(f"{self.shown_url(source)} answered HTTP {status}")
        return reply

    def _data(self, reply: dict[str, Any], source: SubgraphSource) -> dict[str, Any]:
        errors = reply.get("errors")
        if errors:
            messages = [
                self._scrub(str(e.get("message", e)) if isinstance(e, dict) else str(e))
                for e in errors
            ]
            for message in messages:
                for pattern in _MISSING_FIELD:
                    found = pattern.search(message)
                    if found:
                        raise SubgraphSchemaError(
                            f"{self.shown_url(source)} has no field {found['field']!r} on "
                            f"{found['type']} ({message}): is it a {source.protocol} "
                            f"{source.dex} subgraph of the expected version?"
                        )
            text = "; ".join(messages)
            if any(fault in text.lower() for fault in _QUERY_FAULTS):
                raise SubgraphQueryError(f"{self.shown_url(source)} refused the query: {text}")
            raise _Transient(f"GraphQL errors: {text}")
        data = reply.get("data")
        if not isinstance(data, dict):
            raise _Transient("an answer without data or errors")
        return data
