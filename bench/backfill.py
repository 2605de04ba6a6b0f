"""Backfill throughput: `dexwatch backfill` for both sources, end to end to the warehouse.

Chain: a private anvil with ``--chain-hours`` of simulated history (12-second blocks, as on
mainnet), backfilled through the chain publisher's reader and the batch pipeline:
``chain_events_per_s`` = pool events read / seconds of the whole backfill (with
``chain_read_events_per_s`` and ``chain_score_events_per_s``, its two phases apart).

Subgraph: the local stand-in for The Graph serving ``--pools`` pools' hours for ``--days``
days (generated rows, as The Graph returns them), backfilled through the subgraph
publisher's reader (paging, gap filling) and the hourly branch:
``subgraph_pool_hours_per_s`` = pool hours read / seconds of the read and the scoring. The
hourly model is trained between the two on the hours read (not timed).

Writes bench/results/backfill.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dexwatch.app.workflows.backfill import BackfillError, backfill_chain, backfill_subgraph  # noqa: E402
from dexwatch.app.workflows.bootstrap import compute_features  # noqa: E402
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour  # noqa: E402
from dexwatch.core.settings import Settings  # noqa: E402
from infra.local import processes, stack  # noqa: E402
from infra.local.deploy import deploy_local_contracts  # noqa: E402
from infra.local.market import MarketSimulator  # noqa: E402
from infra.local.settings import load_local_settings  # noqa: E402
from infra.local.subgraph.schema import StandInSubgraph  # noqa: E402
from infra.local.subgraph.server import SubgraphStandIn  # noqa: E402
from model.chain_window import train_detector  # noqa: E402
from model.hourly import train_hourly_detector  # noqa: E402
from publishers.chain import run as read_chain  # noqa: E402

WORK = ROOT / "bench" / "work" / "backfill"
H0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def _progress(stage: str, done: int, total: int) -> None:
    if done == total or done % 500 == 0:
        print(f"  {stage}: {done}/{total}", flush=True)


def chain_figure(hours: float) -> tuple[int, float, float]:
    """(events, seconds of the whole backfill, seconds of its replay)."""
    state = WORK / "chain"
    shutil.rmtree(state, ignore_errors=True)
    port = processes.free_port()
    settings = load_local_settings(
        state_dir=str(state),
        local={"anvil_port": port, "node_modules": str(ROOT / "node_modules")},
        chain={"rpc_urls": [f"http://127.0.0.1:{port}"], "confirmations": 0,
               "batch_blocks": 2000},
        simulator={"history_block_interval_s": 12},
    )  # fmt: skip
    state.mkdir(parents=True)
    processes.start(stack.anvil_spec(settings), state)
    try:
        deployment = deploy_local_contracts(settings)
        deployment.save(settings.deployment_path)
        settings = settings.with_deployment()
        print(f"mining {hours:g} simulated hours ...", flush=True)
        first, last = MarketSimulator(settings, deployment).generate_history(hours)
        _train_chain_model(settings)
        stamps = _timestamps(settings, first, last)
        start = datetime.fromtimestamp(stamps[0] + 900, UTC)
        end = datetime.fromtimestamp(stamps[1], UTC)
        print(f"backfilling the chain {start:%H:%M}..{end:%H:%M} ...", flush=True)
        started = time.perf_counter()
        replay_started = []

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "score windows" and done == 0:
                replay_started.append(time.perf_counter())
            _progress(stage, done, total)

        result = backfill_chain(settings, start, end, progress, restart=True)
        replay_s = started + result.seconds - replay_started[0]
    finally:
        processes.stop(state, stack.ANVIL)
    print(
        f"chain: {result.items} events, {result.rows} windows in {result.seconds:.1f} s "
        f"({replay_s:.1f} s of it scoring)"
    )
    return result.items, result.seconds, replay_s


def _train_chain_model(settings: Settings) -> None:
    """A detector trained on the chain's own history, read once (not timed)."""
    work = WORK / "chain-model"
    shutil.rmtree(work, ignore_errors=True)
    reader = settings.with_sections(chain={"checkpoint_path": work / "cp.json"})
    read_chain(reader, once=True, record_to=work / "recording")
    rows = compute_features(settings, work / "recording" / "pool-events.jsonl", work)
    train_detector(rows).save(settings.model_path)


def _timestamps(settings: Settings, *blocks: int) -> list[int]:
    from publishers.chain.rpc import RpcClient

    with RpcClient.from_settings(settings.chain) as rpc:
        headers = rpc.get_headers(blocks)
    return [headers[b].timestamp for b in blocks]


def subgraph_figure(pools: int, days: int) -> tuple[int, float]:
    # The rows as The Graph returns them: the same builders as the stand-in's tests.
    from infra.local.subgraph.rows import (
        default_sources,
        pool_address,
        v2_pair,
        v2_row,
        v3_pool,
        v3_row,
    )

    state = WORK / "subgraph"
    shutil.rmtree(state, ignore_errors=True)
    rng = np.random.default_rng(11)
    v3_source, v2_source = default_sources()
    v3_rows, v2_rows, v3_pools, v2_pairs = [], [], [], []
    hours = days * 24
    for n in range(pools):
        address = pool_address(0x1000 + n)
        scale = 10 ** rng.uniform(3, 6)
        row, listing = (v3_row, v3_pools) if n % 2 == 0 else (v2_row, v2_pairs)
        listing.append((v3_pool if n % 2 == 0 else v2_pair)(address, tvl=scale * 20))
        for i in range(hours):
            if rng.random() < 0.05:
                continue  # a quiet hour: the publisher fills it
            volume = scale * (1 + 0.5 * np.sin(2 * np.pi * i / 24)) * rng.lognormal(0, 0.3)
            (v3_rows if n % 2 == 0 else v2_rows).append(
                row(address, H0 + i * HOUR_S, volume=round(float(volume), 2))
            )
    end_stamp = H0 + hours * HOUR_S
    subgraphs = {
        v3_source.path: StandInSubgraph("v3", v3_rows, v3_pools, block=(10, end_stamp + 60)),
        v2_source.path: StandInSubgraph("v2", v2_rows, v2_pairs, block=(10, end_stamp + 60)),
    }
    start = datetime.fromtimestamp(H0 + 24 * HOUR_S, UTC)
    end = datetime.fromtimestamp(end_stamp, UTC)
    with SubgraphStandIn(subgraphs) as standin:
        settings = load_local_settings(
            state_dir=str(state),
            subgraph={"endpoint_url": standin.url, "top_n": pools},
        )
        print(f"backfilling {pools} pools x {days} days of hours ...", flush=True)
        started = time.perf_counter()
        try:
            backfill_subgraph(settings, start, end, _progress, restart=True)
        except BackfillError as err:  # the read is done; the model comes next
            if "no hourly model" not in str(err):
                raise
        read_s = time.perf_counter() - started
        work = next((state / "backfill").glob("subgraph-*"))
        recorded = (work / "recording" / "pool-hourly.jsonl").read_bytes().splitlines()
        records = [PoolHour.from_json(line) for line in recorded if line]
        train_hourly_detector(records).save(settings.hourly_model_path)
        result = backfill_subgraph(settings, start, end, _progress)
    seconds = read_s + result.seconds
    print(
        f"subgraph: {result.items} pool hours read in {read_s:.1f} s, {result.rows} scored in "
        f"{result.seconds:.1f} s"
    )
    return result.items, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain-hours", type=float, default=6.0)
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    pool_hours, subgraph_s = subgraph_figure(args.pools, args.days)
    events, chain_s, replay_s = chain_figure(args.chain_hours)
    figures = {
        "subgraph_pool_hours_per_s": {
            "value": round(pool_hours / subgraph_s),
            "unit": "pool hours/s",
        },
        "chain_events_per_s": {"value": round(events / chain_s), "unit": "events/s"},
        # The two phases apart: reading (node, senders, decoding) and scoring (the replay).
        "chain_read_events_per_s": {
            "value": round(events / (chain_s - replay_s)),
            "unit": "events/s",
        },
        "chain_score_events_per_s": {"value": round(events / replay_s), "unit": "events/s"},
        "subgraph_pool_hours": {"value": pool_hours, "unit": "pool hours"},
        "chain_events": {"value": events, "unit": "events"},
    }
    path = write_results(
        "backfill",
        figures,
        note="local stand-in for The Graph (generated hours), private anvil (12 s blocks); "
        "FnApiRunner, one process",
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
