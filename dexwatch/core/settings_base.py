"""What every section of the configuration shares: strict models, addresses, the error."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from dexwatch.core.errors import UsageError

# The dexes and their contract families, named by the chain and subgraph sections alike.
Dex = Literal["uniswap_v3", "uniswap_v2", "sushiswap"]
Protocol = Literal["v3", "v2"]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
# A Secret Manager secret version, the form every *_secret setting takes.
SECRET_VERSION = re.compile(r"projects/[^/]+/secrets/[^/]+/versions/[^/]+")


class SettingsError(UsageError, ValueError):
    """Configuration that cannot be used; the message names the offending key."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def normalize_address(value: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValueError(f"not a 20-byte hex address: {value!r}")
    return value.lower()


def secret_version(name: str | None) -> str | None:
    """A field validator for ``*_secret`` settings: a Secret Manager version, or None."""
    if name is not None and not SECRET_VERSION.fullmatch(name):
        raise ValueError("must look like projects/P/secrets/S/versions/V")
    return name


def cron_expression(expression: str) -> str:
    """A field validator for schedules: a cron expression (UTC)."""
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ValueError(f"not a cron expression: {expression!r}")
    return expression


def redact_url(url: str) -> str:
    """Scheme, host and port only: RPC URLs often carry an API key in the path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
