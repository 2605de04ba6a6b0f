"""Structured logging for every dexwatch process.

Components log through the standard ``logging`` module (``logging.getLogger("dexwatch.x")``,
extra fields via ``extra={...}``); ``configure`` renders those records as console lines or
JSON (one object per line, for Cloud Logging) through structlog, and scrubs secrets.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.IGNORECASE)
_secret_values: set[str] = set()
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# HTTP clients log full request URLs, which may carry API keys.
_URL_LOGGERS = ("httpx", "httpcore")


class _ScrubSecrets(logging.Filter):
    """Replaces registered secrets in a record before any handler (or pytest's caplog)
    sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secret_values:
            message = record.getMessage()
            scrubbed = _scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, ()
        return True


_SCRUB_FILTER = _ScrubSecrets()


def register_secret(value: str | None) -> None:
    """Never print ``value``: it is replaced by *** wherever it appears in a log line."""
    if value and len(value) >= 6:
        _secret_values.add(value)
        for name in _URL_LOGGERS:
            logger = logging.getLogger(name)
            if _SCRUB_FILTER not in logger.filters:
                logger.addFilter(_SCRUB_FILTER)


def _scrub(text: str) -> str:
    for secret in _secret_values:
        text = text.replace(secret, "***")
    return text


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key):
            event_dict[key] = "***"
        elif isinstance(value, str) and _secret_values:
            event_dict[key] = _scrub(value)
    return event_dict


def _record_extras(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


def configure(level: str = "INFO", fmt: str = "console") -> None:
    """Route stdlib logging to stderr as console or JSON lines; idempotent."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    shared = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _record_extras],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries are chatty at INFO (every HTTP request, every gRPC channel; Beam on
    # every postponed type hint).
    chatty = ("httpx", "httpcore", "urllib3", "google", "grpc", "web3", "asyncio",
              "apache_beam.typehints")  # fmt: skip
    for noisy in chatty:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
