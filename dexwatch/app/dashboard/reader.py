"""How the dashboard reads: the local warehouse through ``dexwatch query``'s own reader, and
the names people know the pools by.

``DuckDBWarehouse.query`` opens the file read-only for one query and closes it, waiting
briefly while the pipeline holds it: the pipeline and the dashboard take turns, and a page
never keeps the pipeline from writing. A table or view nothing has written yet reads as no
rows (the views appear with their tables' first rows).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dexwatch.core.errors import UsageError
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import (
    WarehouseReader,
    WarehouseTarget,
    is_missing_table,
    open_reader,
)

ADDRESS = re.compile(r"0x[0-9a-f]{40}")


class BadRequest(ValueError):
    """A parameter the pages cannot have sent."""


class DashboardReader:
    """Rows of the warehouse as dicts.

    Args:
        settings: whose warehouse to read; the local DuckDB file only (in production the
            views are read by Looker Studio: docs/bigquery.md).
    """

    def __init__(self, settings: Settings) -> None:
        target = WarehouseTarget.of(settings)
        if target.backend != "duckdb":
            raise UsageError(
                "the dashboard reads the local warehouse (warehouse.backend: duckdb); over "
                "BigQuery, use a Looker Studio report on the views (docs/bigquery.md)"
            )
        self.path = target.path
        self.warehouse: WarehouseReader = open_reader(target)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """The query's rows, each a dict by column; none when a table or view it reads has
        not been written yet. Raises WarehouseError when there is no warehouse file at all."""
        try:
            result = self.warehouse.query(sql)
        except Exception as err:
            if is_missing_table(err):
                return []
            raise
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def sql_text(value: str) -> str:
    """A SQL string literal (the reader takes no parameters; values are checked first)."""
    return "'" + value.replace("'", "''") + "'"


def pool_names(settings: Settings, pools: list[dict[str, Any]]) -> dict[tuple[int, str], str]:
    """A readable name per pool, by (chain_id, address) (one address can be a pool on two
    chains): the local deployment's (``sushiswap:WETH/USDC``) when there is one, else its
    tokens' symbols from its chain's market assets and its fee tier; none otherwise (the
    pages shorten the address).

    Args:
        settings: the chains' market assets (symbols), and the state dir of a local
            deployment.
        pools: rows of the pools table (pool, chain_id, dex, token0, token1, fee).
    """
    markets = settings.markets
    names = {}
    for row in pools:
        symbols = {a.address.lower(): a.symbol for a in markets.of(row["chain_id"]).assets}
        token0, token1 = (symbols.get((row.get(t) or "").lower()) for t in ("token0", "token1"))
        if token0 and token1:
            fee = f":{row['fee']}" if row.get("fee") is not None else ""
            names[(row["chain_id"], row["pool"])] = f"{row['dex']}:{token0}/{token1}{fee}"
    deployment = _local_deployment(settings)
    if deployment is not None:
        chain_id = deployment.chain_id
        names.update({(chain_id, p.address.lower()): p.name for p in deployment.pools})
    return names


def _local_deployment(settings: Settings):  # type: ignore[no-untyped-def]
    path = getattr(settings, "deployment_path", None)  # LocalSettings only
    if not isinstance(path, Path) or not path.is_file():
        return None
    from infra.local.deployment import LocalDeployment

    try:
        return LocalDeployment.load(path)
    except (OSError, ValueError):
        return None
