"""Structured logging for every dexwatch process, and the one scrubber of secrets.

Components log through the standard ``logging`` module (``logging.getLogger("dexwatch.x")``,
extra fields via ``extra={...}``); ``configure`` renders those records as console lines or
JSON (one object per line, for Cloud Logging) through structlog.

Secrets (RPC URL keys, API keys) are registered once, when settings are loaded
(``dexwatch.core.settings.load_settings``) or a client is built from them, and ``scrub`` replaces
each by *** in every line a user sees: log records of any logger, CLI error lines, uncaught
tracebacks (``install_excepthooks``), dead-letter reasons.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

import structlog

MASK = "***"
# Shorter values would scrub ordinary words out of log lines.
_MIN_SECRET_LEN = 6
_SECRET_KEYS = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.IGNORECASE)
# Query parameters whose value is a credential whatever it looks like.
_SECRET_PARAMS = re.compile(r"key|token|secret|auth|pass|sig", re.IGNORECASE)
# URL parts that name things rather than authenticate: 'v3', 'eth-mainnet', 'polygon-zkevm-2'.
_PLAIN_WORD = re.compile(r"[a-z]+\d{0,3}(?:[-_.][a-z]*\d{0,3})*")
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# HTTP clients log full request URLs, which may carry API keys.
_URL_LOGGERS = ("httpx", "httpcore")

_secret_values: set[str] = set()
# None while nothing is registered: scrub() is then a single check.
_secret_pattern: re.Pattern[str] | None = None
_register_lock = threading.Lock()


class _ScrubSecrets(logging.Filter):
    """Replaces registered secrets in a record's message and string extras before a handler
    (or pytest's caplog, on the URL loggers) sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secret_pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call is the formatter's to report
            return True
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, scrub(value))
        return True


_SCRUB_FILTER = _ScrubSecrets()


def register_secret(value: str | None) -> None:
    """Never print ``value``: it is replaced by *** wherever it appears in a line a user sees.
    Values shorter than 6 characters are ignored."""
    global _secret_pattern
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _register_lock:
        if value in _secret_values:
            return
        _secret_values.add(value)
        # Longest first, so that a secret containing another is replaced whole.
        ordered = sorted(_secret_values, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(map(re.escape, ordered)))
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if _SCRUB_FILTER not in logger.filters:
            logger.addFilter(_SCRUB_FILTER)


def _looks_secret(part: str) -> bool:
    return len(part) >= _MIN_SECRET_LEN and not _PLAIN_WORD.fullmatch(part)


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that may be credentials, as written and percent-decoded: the
    userinfo password, a username or path segment that is not a plain word (an Infura or
    Alchemy key, not 'v3' or 'eth-mainnet'), and each query value that is not a plain word
    or belongs to a parameter named like a key (``apikey``, ``token``)."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    if parts.username and _looks_secret(parts.username):
        found.append(parts.username)
    found += [segment for segment in parts.path.split("/") if _looks_secret(unquote(segment))]
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if _SECRET_PARAMS.search(name) or _looks_secret(unquote_plus(value)):
            found.append(value)
    return [form for part in found for form in dict.fromkeys((part, unquote_plus(part)))]


def register_url(url: str) -> None:
    """Register the secret parts of ``url`` (``url_secrets``); scheme, host, port and plain
    path words stay readable."""
    for part in url_secrets(url):
        register_secret(part)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ***. Costs one check while nothing
    is registered, so it may be called on every message."""
    pattern = _secret_pattern
    return text if pattern is None else pattern.sub(MASK, text)


def format_exception(
    exc_type: type[BaseException], value: BaseException | None, tb: TracebackType | None
) -> str:
    """A traceback as Python prints it, scrubbed: exception messages may quote secrets."""
    return scrub("".join(traceback.format_exception(exc_type, value, tb)))


def _print_exception(
    exc_type: type[BaseException], value: BaseException | None, tb: TracebackType | None
) -> None:
    if sys.stderr is not None:
        sys.stderr.write(format_exception(exc_type, value, tb))
        sys.stderr.flush()


def _print_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or sys.stderr is None:
        return
    name = args.thread.name if args.thread is not None else "<unknown>"
    sys.stderr.write(f"Exception in thread {name}:\n")
    _print_exception(args.exc_type, args.exc_value, args.exc_traceback)


def install_excepthooks() -> None:
    """Print uncaught exceptions of the process and of its threads as Python would, with
    the traceback kept but scrubbed."""
    sys.excepthook = _print_exception
    threading.excepthook = _print_thread_exception


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key):
            event_dict[key] = MASK
        elif isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def _scrub_rendered(_: Any, __: str, rendered: str) -> str:
    """The rendered line once more: extras that are not strings (lists, exceptions) are
    only turned into text by the renderer."""
    return scrub(rendered)


def _record_extras(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    record = event_dict.get("_record")
    if record is not None:
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


def configure(level: str = "INFO", fmt: str = "console", to_file: Path | None = None) -> None:
    """Route stdlib logging to stderr (or, with ``to_file``, to the end of that file) as
    console or JSON lines, secrets scrubbed from every record of every logger; idempotent."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=to_file is None and sys.stderr.isatty())
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
            _scrub_rendered,
        ],
    )
    handler: logging.Handler
    if to_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        to_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(to_file, encoding="utf-8")
    handler.setFormatter(formatter)
    handler.addFilter(_SCRUB_FILTER)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries are chatty at INFO (every HTTP request, every gRPC channel; Beam on
    # every postponed type hint).
    chatty = ("httpx", "httpcore", "urllib3", "google", "grpc", "web3", "asyncio",
              "apache_beam.typehints")  # fmt: skip
    for noisy in chatty:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
