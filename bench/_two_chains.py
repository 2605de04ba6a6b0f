"""Two local chains in one deployment, for bench/multi_chain.py (as in
tests/integration/test_two_chains.py, which benchmarks do not import): two anvils with chain
ids and block times of their own, "local" (31337, 2 s blocks, as the local stack's) and
"chain-31338" (a fixed 12 s block time, as Ethereum's), the real contracts deployed on each by
the same deployer with the same nonces (so at the SAME addresses on both: only ``chain_id``
tells the chains' pools apart), each starting at the benchmarks' fixed genesis; the two-chain
settings; one batch replay of recordings; and what a replay wrote of one chain, read back
with that chain's rows only (model.evaluation's readers read every chain at once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from _private_chain import GENESIS

from beam_pipelines.options import batch_options
from beam_pipelines.pipeline import build_replay_pipeline
from dexwatch.core.warehouse import open_warehouse
from infra.local import evm, processes, stack
from infra.local.deploy import deploy_local_contracts
from infra.local.deployment import LocalDeployment
from infra.local.settings import LocalSettings, load_local_settings
from model.evaluation import AlertThread

ROOT = Path(__file__).resolve().parent.parent
# name: (chain_id, block seconds, simulator seed). chain-31338 has a fixed block time, so the
# pipeline's slices must be a whole number of its blocks (Settings checks it): 12 s slices.
CHAINS = {"local": (31337, 2, 61), "chain-31338": (31338, 12, 62)}
PIPELINE = {"slice_s": 12}


def chain_id(name: str) -> int:
    return CHAINS[name][0]


def chain_section(name: str, port: int) -> dict:
    """The chain's section of the settings: its anvil, every block read at once."""
    cid, block_s, _ = CHAINS[name]
    return {
        "chain_id": cid,
        "rpc_urls": [f"http://127.0.0.1:{port}"],
        "confirmations": 0,
        "batch_blocks": 2000,
        # The local stack's chain has no fixed block time (its live blocks come every 2 s).
        **({"block_time_s": block_s} if name != "local" else {}),
    }


def _settings(state_dir: Path, **sections: dict) -> LocalSettings:
    local = {"node_modules": str(ROOT / "node_modules"), **sections.pop("local", {})}
    return load_local_settings(state_dir=str(state_dir), local=local, **sections)


@contextmanager
def anvil(state_dir: Path, name: str) -> Iterator[tuple[LocalSettings, LocalDeployment]]:
    """(stack settings, deployment) of a fresh anvil of chain ``name`` (its chain id as
    anvil's --chain-id) with the contracts deployed, its first block at GENESIS; the
    simulator mines blocks the chain's block time apart, history and incidents alike. The
    anvil stops on leaving."""
    cid, block_s, seed = CHAINS[name]
    port = processes.free_port()
    settings = _settings(
        state_dir,
        local={"anvil_port": port, "chain_id": cid},
        chain=chain_section(name, port),
        pipeline=PIPELINE,
        simulator={"seed": seed, "block_interval_s": block_s, "history_block_interval_s": block_s},
    )
    processes.start(stack.anvil_spec(settings, GENESIS), settings.state_dir)
    try:
        yield settings, deploy_local_contracts(settings, start_timestamp=GENESIS + 1)
    finally:
        processes.stop(settings.state_dir, stack.anvil_name(settings))


def two_chain_settings(
    state_dir: Path, stacks: dict[str, tuple[LocalSettings, LocalDeployment]], **sections: dict
) -> LocalSettings:
    """One deployment's settings for both chains: each chain's factories and assets its
    deployment's (the same addresses on both)."""
    return _settings(
        state_dir,
        chains=[
            {
                **chain_section(name, local.local.anvil_port),
                "factories": [f.model_dump() for f in deployment.factories],
                "assets": [a.model_dump() for a in deployment.assets()],
            }
            for name, (local, deployment) in stacks.items()
        ],
        pipeline=PIPELINE,
        **sections,
    )


def latest_timestamp(settings: LocalSettings) -> int:
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        return evm.latest_block(rpc)[1]
    finally:
        rpc.close()


def concatenated(files: list[Path], into: Path) -> Path:
    with into.open("wb") as out:
        for path in files:
            out.write(path.read_bytes())
    return into


def replay(settings: LocalSettings, recordings: list[Path]) -> tuple[object, float]:
    """(the warehouse, seconds) of one batch replay of the recordings, one after the other
    in one file (the concatenation is not timed)."""
    events = concatenated(
        [directory / "pool-events.jsonl" for directory in recordings],
        settings.warehouse_path.with_suffix(".events.jsonl"),
    )
    started = time.perf_counter()
    build_replay_pipeline(settings, batch_options(), events).run().wait_until_finish()
    return open_warehouse(settings), time.perf_counter() - started


# --- one chain's rows of a warehouse ----------------------------------------------------------


def has_table(warehouse, table: str) -> bool:
    exists = f"select count(*) from duckdb_tables() where table_name = '{table}'"
    return bool(warehouse.query(exists).rows[0][0])


def rows(warehouse, table: str, columns: str, where: str = "true") -> list[tuple]:
    """The rows of a table, sorted; none if nothing was written to it (no table yet)."""
    if not has_table(warehouse, table):
        return []
    return sorted(warehouse.query(f"select {columns} from {table} where {where}").rows)


def chain_columns(warehouse, cid: int) -> dict[str, np.ndarray]:
    """One chain's scored chain windows and its market view's findings (as flagged one-minute
    windows of their scope), as model.evaluation's ``chain_windows`` and ``market_windows``
    give them together for a one-chain warehouse: pool, start, end, is_anomaly, score, kind."""
    anomalies = has_table(warehouse, "anomalies")
    windows = warehouse.query(
        "select s.pool, epoch(s.window_start), epoch(s.window_end), s.is_anomaly, s.score, "
        + ("coalesce(a.kind, '')" if anomalies else "''")
        + " from pool_scores s"
        + (" left join anomalies a using (window_id)" if anomalies else "")
        + f" where s.source = 'chain' and s.chain_id = {cid} order by s.window_end"
    ).rows
    found = rows(
        warehouse, "market_events", "scope, epoch(window_end), size, kind", f"chain_id = {cid}"
    )
    both = [tuple(row) for row in windows] + [
        (scope.removeprefix("pool:"), end - 60, end, 1, -abs(size), kind)
        for scope, end, size, kind in found
    ]
    keys = ("pool", "start", "end", "is_anomaly", "score", "kind")
    columns = list(zip(*both, strict=True)) if both else [()] * len(keys)
    return {
        key: np.array(values, dtype=object if key in ("pool", "kind") else float)
        for key, values in zip(keys, columns, strict=True)
    }


def chain_threads(warehouse, cid: int) -> dict[str, AlertThread]:
    """One chain's alert threads by alert_id, as model.evaluation's ``opened_threads`` reads
    them: the anomalies' threads (their pool, first window start to last window end) and the
    market view's (their scope, a minute before the first finding to the last)."""
    spans: dict[str, list] = {}
    for alert_id, place, start, end in rows(
        warehouse, "anomalies",
        "alert_id, pool, min(epoch(window_start)), max(epoch(window_end))",
        f"source = 'chain' and alert_id <> '' and chain_id = {cid} group by alert_id, pool",
    ) + rows(
        warehouse, "market_events",
        "alert_id, scope, min(epoch(window_end)) - 60, max(epoch(window_end))",
        f"chain_id = {cid} group by alert_id, scope",
    ):  # fmt: skip
        middle = alert_id.split(":", 1)[-1].rsplit(":", 1)[0]
        scope = middle if middle == "market" or middle.startswith("asset:") else None
        place = scope or place.removeprefix("pool:")
        held = spans.setdefault(alert_id, [place, start, end])
        held[1], held[2] = min(held[1], start), max(held[2], end)
    return {alert_id: AlertThread(*span) for alert_id, span in spans.items()}


def thread_rows(warehouse, cid: int) -> dict[str, list[tuple]]:
    """Each of one chain's alert threads' rows (anomalies and market findings), by alert_id:
    what a thread holds, to compare two runs' threads."""
    held: dict[str, list[tuple]] = {}
    for row in rows(
        warehouse, "anomalies", "alert_id, window_id, pool, kind, severity",
        f"source = 'chain' and alert_id <> '' and chain_id = {cid}",
    ) + rows(
        warehouse, "market_events", "alert_id, event_id, scope, kind, ''", f"chain_id = {cid}"
    ):  # fmt: skip
        held.setdefault(row[0], []).append(tuple(row[1:]))
    return held


def window_rows(warehouse, cid: int) -> list[tuple]:
    """One chain's scored windows, to compare two runs' (as the two-chain test does)."""
    return rows(
        warehouse, "pool_scores", "window_id, chain_id, dex, pool, window_end, score, is_anomaly",
        f"chain_id = {cid}",
    )  # fmt: skip
