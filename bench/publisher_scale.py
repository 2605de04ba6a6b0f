"""The chain publisher with 10,000 followed pools: throughput and requests beside 10 pools.

Two private anvils, each with the local deployment (8 pools, same addresses on both). On the
big chain ``--pools`` more pools are created through the deployment's real factories
(Uniswap V3 ``createPool``, Uniswap V2 and SushiSwap ``createPair``, of distinct synthetic
token pairs): quiet pools, with no event besides their creation. Both chains are then
brought to the same block timestamp and the market simulator mines the same busy stretch
on each (same seed, same chain times, so the same trades: the event counts are checked).

The publisher (``publishers.chain.run``, recording to files instead of Pub/Sub, transaction
senders read as by default) first runs untimed up to the block before the stretch, so every
pool is discovered and checkpointed. Each timed run starts from a copy of that checkpoint
and publishes the stretch in full: its time covers the whole ``run()``, the start (loading
the pool registry of 10,000 pools on the big chain), the announcement again of each pool
before its first event after the start (real behaviour on every start) and the checkpoint
writes included. Three configurations, rounds alternating:

- ``topic``: the big chain, default ``chain.max_log_addresses`` (1,000): pool events asked
  by topic alone, logs of pools not followed dropped;
- ``10_pools``: the small chain, default settings (the 8 pools asked by address);
- ``address_list``: the big chain, ``chain.max_log_addresses`` above the pool count: every
  eth_getLogs names all the followed pools.

Requests are counted in one more run of each configuration (untimed, not in the medians)
through a counting reverse proxy in front of anvil: HTTP requests, and the JSON-RPC calls
inside them (a batch of 100 eth_getTransactionByHash counts as 1 request, 100 calls).

Writes bench/results/publisher_scale.json.

    .venv/bin/python bench/publisher_scale.py [--pools 10000] [--hours 0.25] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _private_chain import GENESIS, private_chain_settings
from _results import write_results
from _scale_chain import CountingProxy, Counts, create_quiet_pools

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.local import evm, processes, stack  # noqa: E402
from infra.local.deploy import deploy_local_contracts  # noqa: E402
from infra.local.deployment import LocalDeployment  # noqa: E402
from infra.local.market import MarketSimulator, MarketStats, busiest_span_start  # noqa: E402
from infra.local.settings import LocalSettings  # noqa: E402
from publishers.chain import PublishStats, run  # noqa: E402
from publishers.chain.checkpoint import FileCheckpointStore  # noqa: E402

WORK = ROOT / "bench" / "work" / "publisher_scale"
SEED = 23
# Chain time between genesis and the stretch on both chains: the big chain's pool creations
# (a block a second) fit in it, and the stretch starts at the same chain time on both.
PREAMBLE_S = 600


@dataclass
class Chain:
    name: str
    settings: LocalSettings
    deployment: LocalDeployment
    checkpoint: Path = Path()  # the publisher's, after the stretch's block - 1
    first: int = 0  # the stretch's blocks
    last: int = 0
    market: MarketStats | None = None
    mining_s: float = 0.0


@dataclass
class Config:
    name: str
    chain: Chain
    chain_changes: dict


def _progress(what: str) -> Callable[[int, int], None]:
    shown = {"at": 0.0}

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - shown["at"] >= 5:
            shown["at"] = now
            print(f"  {what}: {done}/{total}", flush=True)

    return report


def _start(name: str, genesis: int, block_s: int) -> Chain:
    state = WORK / name / "state"
    state.mkdir(parents=True)
    settings = private_chain_settings(state, SEED, block_s)
    processes.start(stack.anvil_spec(settings, genesis), settings.state_dir)
    deployment = deploy_local_contracts(settings, start_timestamp=genesis + 1)
    deployment.save(settings.deployment_path)
    return Chain(name, settings.with_deployment(), deployment)


def _mine_quiet(chain: Chain, blocks: int, last_timestamp: int) -> int:
    """Mine ``blocks`` empty blocks a second apart, the last stamped ``last_timestamp``; the
    last one's number."""
    rpc = evm.Rpc(chain.settings.local.rpc_url)
    try:
        for timestamp in range(last_timestamp - blocks + 1, last_timestamp + 1):
            evm.mine(rpc, timestamp)  # one at a time: anvil runs a batch's calls concurrently
        number, stamped = evm.latest_block(rpc)
    finally:
        rpc.close()
    assert stamped == last_timestamp, (stamped, last_timestamp)
    return number


def _publish(
    config: Config, tag: str, rpc_url: str | None = None, start_only: bool = False
) -> tuple[PublishStats, float]:
    """One publisher run over the stretch from a copy of the chain's checkpoint: its stats
    and seconds (the whole run()). ``start_only``: up to the checkpoint's block, so the run
    only starts (loads the checkpoint and the pool registry) and finds nothing to publish."""
    chain = config.chain
    work = WORK / "runs" / f"{config.name}-{tag}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    checkpoint = work / "checkpoint.json"
    shutil.copyfile(chain.checkpoint, checkpoint)
    # The followed pools are in the registry beside the checkpoint.
    source = FileCheckpointStore(chain.checkpoint).pools.path
    shutil.copyfile(source, FileCheckpointStore(checkpoint).pools.path)
    changes = {**config.chain_changes, "checkpoint_path": checkpoint}
    if rpc_url is not None:
        changes["rpc_urls"] = [rpc_url]
    settings = chain.settings.with_sections(chain=changes)
    assert settings.chain.senders, "transaction senders must be read, as by default"
    until = chain.first - 1 if start_only else None
    started = time.perf_counter()
    stats = run(settings, once=True, record_to=work / "recording", until_block=until)
    seconds = time.perf_counter() - started
    last = chain.first - 1 if start_only else chain.last
    if stats.last_block != last:
        raise RuntimeError(f"{config.name}: published up to {stats.last_block}, not {last}")
    recording = work / "recording" / "pool-events.jsonl"
    recorded = recording.read_bytes().count(b"\n") if recording.exists() else 0
    if recorded != stats.events + stats.announcements:
        raise RuntimeError(f"{config.name}: {recorded} messages recorded, stats {stats}")
    shutil.rmtree(work)
    return stats, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=int, default=10_000, help="quiet pools to create")
    parser.add_argument("--hours", type=float, default=0.25, help="simulated hours of traffic")
    parser.add_argument("--block-s", type=int, default=2, help="seconds between blocks")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    wall = time.perf_counter()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    genesis = busiest_span_start(
        private_chain_settings(WORK, SEED, args.block_s).simulator, args.hours, GENESIS
    )
    chains: list[Chain] = []
    try:
        print("starting two anvils and deploying ...", flush=True)
        big = _start("big", genesis, args.block_s)
        chains.append(big)
        small = _start("small", genesis, args.block_s)
        chains.append(small)
        if [p.address for p in big.deployment.pools] != [p.address for p in small.deployment.pools]:
            raise RuntimeError("the two deployments' pools differ")
        print(f"creating {args.pools} pools through the factories ...", flush=True)
        started = time.perf_counter()
        blocks, last_stamp, per_dex = create_quiet_pools(
            big.settings.local.rpc_url,
            big.deployment,
            args.pools,
            genesis + 5,  # after the deployment's 4 blocks
            _progress("pools"),
        )
        creation_s = time.perf_counter() - started
        print(f"  {args.pools} pools in {blocks} blocks, {creation_s:.1f} s: {per_dex}")
        # Quiet blocks before the stretch, more than the checkpoint's reorg window: the
        # checkpoint the timed runs start from keeps the events (announcements) of its
        # window's blocks, and a real chain's pools were not all made just before.
        quiet = big.settings.chain.reorg_window + 2
        stretch_at = genesis + PREAMBLE_S
        if last_stamp >= stretch_at - quiet:
            raise RuntimeError(f"the pool creations take more than {PREAMBLE_S} s of chain time")
        for chain in chains:
            before = _mine_quiet(chain, quiet, stretch_at)
            print(f"mining {args.hours:g} h of {args.block_s} s blocks on the {chain.name} "
                  f"chain (from block {before + 1}) ...", flush=True)  # fmt: skip
            simulator = MarketSimulator(chain.settings, chain.deployment)
            started = time.perf_counter()
            chain.first, chain.last = simulator.generate_history(
                args.hours, _progress("blocks"), block_interval_s=args.block_s
            )
            chain.market = simulator.stats
            chain.mining_s = time.perf_counter() - started
            print(f"  {chain.mining_s:.1f} s: {simulator.stats}", flush=True)
            # Discovery (untimed): every pool found and checkpointed before the stretch.
            chain.checkpoint = WORK / chain.name / "checkpoint.json"
            discovery = chain.settings.with_sections(chain={"checkpoint_path": chain.checkpoint})
            started = time.perf_counter()
            stats = run(
                discovery,
                once=True,
                record_to=WORK / chain.name / "discovery",
                until_block=chain.first - 1,
            )
            print(f"  discovery up to block {chain.first - 1}: {stats.announcements} pools "
                  f"announced, {stats.events} events, {time.perf_counter() - started:.1f} s",
                  flush=True)  # fmt: skip
            kept = FileCheckpointStore(chain.checkpoint).load()
            assert kept is not None
            window = sum(len(events) for events in kept.published.values())
            print(f"  the checkpoint follows {len(kept.pools)} pools, keeps {window} events of "
                  f"its window", flush=True)  # fmt: skip
            expected = len(chain.deployment.pools) + (args.pools if chain is big else 0)
            if stats.announcements != expected:
                raise RuntimeError(f"{chain.name}: {stats.announcements} pools, not {expected}")

        # Topic mode past chain.max_log_addresses (1,000 by default): a smaller --pools (a
        # trial run) lowers it to stay in topic mode.
        topic_changes = {}
        default_max = big.settings.chain.max_log_addresses
        if args.pools + len(big.deployment.pools) <= default_max:
            topic_changes = {"max_log_addresses": args.pools}
        configs = [
            Config("topic", big, topic_changes),
            Config("10_pools", small, {}),
            Config("address_list", big, {"max_log_addresses": args.pools + 1000}),
        ]
        # Requests, counted once per configuration (not timed).
        counts: dict[str, Counts] = {}
        counted: dict[str, PublishStats] = {}
        for config in configs:
            with CountingProxy(config.chain.settings.local.rpc_url) as proxy:
                counted[config.name], _ = _publish(config, "counted", proxy.url)
                counts[config.name] = proxy.take()
            print(f"{config.name}: {counts[config.name].describe()}", flush=True)
        # Timed rounds, alternating.
        times: dict[str, list[float]] = {c.name: [] for c in configs}
        start_times: dict[str, list[float]] = {c.name: [] for c in configs}
        stats_of: dict[str, PublishStats] = {}
        for number in range(1, args.rounds + 1):
            for config in configs:
                stats, seconds = _publish(config, f"round{number}")
                if config.name in stats_of and stats != stats_of[config.name]:
                    raise RuntimeError(f"{config.name}: round {number} differs: {stats}")
                stats_of[config.name] = stats
                times[config.name].append(seconds)
                _, start_s = _publish(config, f"start{number}", start_only=True)
                start_times[config.name].append(start_s)
                print(f"round {number} {config.name}: {stats.events} events "
                      f"(+{stats.announcements} announcements) in {seconds:.2f} s = "
                      f"{stats.events / seconds:,.0f}/s; a start alone {start_s:.2f} s",
                      flush=True)  # fmt: skip
    finally:
        for chain in chains:
            processes.stop(chain.settings.state_dir, stack.anvil_name(chain.settings))

    topic, few, listed = (stats_of[name] for name in ("topic", "10_pools", "address_list"))
    for name, stats in counted.items():
        if stats != stats_of[name]:
            raise RuntimeError(f"{name}: the counted run differs from the timed ones: {stats}")
    if topic.events != listed.events:
        raise RuntimeError(f"topic mode published {topic.events}, address list {listed.events}")
    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    rate = {name: stats_of[name].events / median[name] for name in median}

    def per_1000(count: int, name: str) -> float:
        return round(1000 * count / stats_of[name].events, 2)

    figures = {
        "events_per_s": {"value": round(rate["topic"]), "unit": "events/s"},
        "events_per_s_10_pools": {"value": round(rate["10_pools"]), "unit": "events/s"},
        "scale_ratio": {
            "value": round(rate["topic"] / rate["10_pools"], 3),
            "unit": "ratio",
            "target": ">= 0.8",
        },
        "rpc_requests_per_1000_events": {
            "value": per_1000(counts["topic"].http_requests, "topic"),
            "unit": "HTTP requests per 1000 events",
        },
        "rpc_calls_per_1000_events": {
            "value": per_1000(counts["topic"].rpc_calls, "topic"),
            "unit": "JSON-RPC calls per 1000 events",
        },
        "events_per_s_address_list": {"value": round(rate["address_list"]), "unit": "events/s"},
        "rpc_requests_per_1000_events_address_list": {
            "value": per_1000(counts["address_list"].http_requests, "address_list"),
            "unit": "HTTP requests per 1000 events",
        },
        "rpc_calls_per_1000_events_address_list": {
            "value": per_1000(counts["address_list"].rpc_calls, "address_list"),
            "unit": "JSON-RPC calls per 1000 events",
        },
    }
    pools_of = {"topic": args.pools + 8, "10_pools": 8, "address_list": args.pools + 8}
    details = {
        "events": [
            f"{name}: {stats.events} events published, {stats.announcements} pool "
            f"announcements again, {stats.foreign_logs} foreign logs dropped, "
            f"{stats.batches} batch(es)"
            for name, stats in stats_of.items()
        ],
        "round_seconds": [
            f"{name}: " + ", ".join(f"{s:.3f}" for s in seconds) + f" (median {median[name]:.3f})"
            for name, seconds in times.items()
        ],
        "start_seconds": [
            f"{name}: "
            + ", ".join(f"{s:.3f}" for s in seconds)
            + f" (median {statistics.median(seconds):.3f}): a run with nothing to publish "
            "(load the checkpoint and the pool registry, check the tip), not in the figures"
            for name, seconds in start_times.items()
        ],
        "requests": [f"{name}: {counts[name].describe()}" for name in counts],
        "chains": [
            f"big: {args.pools} quiet pools created in {blocks} blocks ({per_dex}), "
            f"{creation_s:.1f} s; stretch blocks {big.first}-{big.last} mined in "
            f"{big.mining_s:.1f} s: {big.market}",
            f"small: stretch blocks {small.first}-{small.last} mined in {small.mining_s:.1f} s: "
            f"{small.market}",
            f"both: {quiet} empty blocks a second apart right before the stretch (more than "
            "chain.reorg_window), so the checkpoints the runs start from hold no events of "
            "their window",
            f"followed pools: {pools_of}",
        ],
        "settings": [
            f"{c.name}: chain section changes {c.chain_changes or 'none'} "
            f"(max_log_addresses default {big.settings.chain.max_log_addresses})"
            for c in configs
        ],
    }
    note = (
        f"two private anvils, the same {args.hours:g} simulated hours of {args.block_s} s "
        f"blocks (seed {SEED}) mined on each: {topic.events} events on the chain with "
        f"{args.pools} extra quiet pools made by the real factories, {few.events} on the one "
        "with the 8 local pools. Each figure the median of "
        f"{args.rounds} rounds alternating topic / 10 pools / address list; a run is the whole "
        "publishers.chain.run(once=True, record_to=DIR) from a checkpoint at the block before "
        "the stretch (pools already discovered): it includes loading the pool registry and "
        "announcing again each pool before its first event after the start "
        f"({topic.announcements} messages on the big chain, {few.announcements} on the small "
        "one: real behaviour on every start), reading the "
        "transactions' senders (default) and the checkpoint writes. "
        f"chain.batch_blocks {big.settings.chain.batch_blocks}, confirmations 0. "
        "details.start_seconds: a run with nothing to publish, each round, the start's own "
        "cost. "
        "rpc_requests_*: HTTP requests per 1000 published events (announcements not counted "
        "as events), rpc_calls_*: JSON-RPC calls inside them (a batch counts each call), "
        "counted by a reverse proxy in one extra untimed run per configuration; the timed runs "
        "go straight to anvil. address_list: chain.max_log_addresses set above the pool count"
    )
    path = write_results("publisher_scale", figures, note=note, details=details)
    print(f"wrote {path.relative_to(ROOT)} in {time.perf_counter() - wall:.0f} s")
    for name, figure in figures.items():
        print(f"  {name}: {figure['value']} {figure['unit']}")


if __name__ == "__main__":
    main()
