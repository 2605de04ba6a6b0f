"""The chains the dashboard shows: those the deployment watches (``settings.chains``, by
their names) and any other the warehouse holds rows of (by its known name, else
``chain-<id>``), with their block explorers; and the ``chain`` parameter every page and its
JSON take (a chain's name or id; none: every chain).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from dexwatch.app.dashboard.reader import BadRequest, DashboardReader
from dexwatch.core.chain_settings import KNOWN_CHAINS, describe_chain
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import WarehouseError

# The tables whose rows carry a chain_id: the chains present in the warehouse.
CHAIN_TABLES = ("pools", "pool_scores", "anomalies", "market_events")
_CHAIN_ID = re.compile(r"(?:chain-)?(\d{1,18})")


def chains_present(reader: DashboardReader) -> set[int]:
    """The chain ids of the warehouse's rows (none before it exists)."""
    present: set[int] = set()
    try:
        for table in CHAIN_TABLES:
            rows = reader.rows(f"SELECT DISTINCT chain_id FROM {table}")
            present.update(row["chain_id"] for row in rows)
    except WarehouseError:
        return set()
    return present


def chain_list(settings: Settings, present: Iterable[int] = ()) -> list[dict[str, Any]]:
    """The configured chains in their order, then the others ``present`` by id: each with
    its name (unique: one a configured chain took is the other's ``chain-<id>``) and its
    explorer."""
    configured = [chain.chain_id for chain in settings.chains]
    names: set[str] = set()
    chains = []
    for chain_id in configured + sorted(set(present) - set(configured)):
        name = describe_chain(chain_id, settings.chains).name
        if name in names:
            name = f"chain-{chain_id}"
        names.add(name)
        chains.append({
            "chain_id": chain_id, "name": name, "explorer_url": settings.explorer(chain_id),
            "configured": chain_id in configured,
        })  # fmt: skip
    return chains


def chain_name(settings: Settings, chain_id: int | None) -> str | None:
    """A chain's name as the pages show it."""
    return None if chain_id is None else describe_chain(chain_id, settings.chains).name


def chain_id_of(settings: Settings, value: str | None) -> int | None:
    """The chain a ``chain`` parameter names: a configured chain's name, a known chain's
    name (KNOWN_CHAINS), ``chain-<id>`` or an id; empty: None (every chain).
    Raises BadRequest for anything else."""
    if not value:
        return None
    for chain in settings.chains:
        if chain.name == value:
            return chain.chain_id
    for chain_id, known in KNOWN_CHAINS.items():
        if known.name == value:
            return chain_id
    found = _CHAIN_ID.fullmatch(value)
    if found is None:
        raise BadRequest(f"no chain {value!r}: give a chain's name or id")
    return int(found.group(1))


def and_chain(chain_id: int | None, column: str = "chain_id") -> str:
    """`` AND <column> = <id>`` when a chain is chosen, else nothing (an int: no quoting)."""
    return "" if chain_id is None else f" AND {column} = {int(chain_id)}"
