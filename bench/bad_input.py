"""Bad input, live: a flood of malformed messages while the market trades, then a drain.

Runs the whole detector live (`dexwatch run`, its own stack on free ports under
bench/work/bad_input, the chain path), warms it up, injects drains on two pools (the
baseline latency),
then publishes ``--messages`` malformed messages to ``pool-events`` while the simulator
trades: every poison case of infra/local/sample_events.py (among them what the earlier parser
accepted), events from a day ahead of the clock, event_time attributes other than the block
time, events of pools no factory created, and conflicting copies of real events (the same
event id with a shifted block time or other amounts). Then it injects drains on two other
pools.

Figures (bench/results/bad_input.json):
- ``pipeline_alive``: 1 if the pipeline kept running and writing through the flood.
- ``dead_letter_match``: dead letters written / malformed messages sent.
- ``real_event_loss_share``: real events missing from the windows of the flood's stretch,
  counted against the chain itself (its logs read straight from the node with
  eth_getLogs, not through the publisher or the pipeline's validation);
  ``real_event_excess_share`` beside it (events counted that the chain does not have).
- ``false_alerts``: alerts whose windows fall in the flood's stretch.
- ``drain_alert_latency_s`` after the flood, ``drain_alert_latency_s_baseline`` before it
  (from the block that confirmed the drain's first block to the alert; the mean of the two
  drains each, every one listed in the note).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import sys
import threading
import time
from collections import defaultdict

import orjson
from _local_run import ROOT, LocalRun
from _results import write_results
from google.cloud import pubsub_v1

from dexwatch.core.schemas.pool_event import PoolEvent, rfc3339
from dexwatch.core.schemas.topics import POOL_EVENTS, topic_path
from infra.local.deployment import LocalDeployment
from publishers.chain.events import POOL_EVENT_TOPICS

sys.path.insert(0, str(ROOT))
from infra.local.sample_events import POISON  # noqa: E402

WORK = ROOT / "bench" / "work" / "bad_input"
BASELINE_POOLS = ("uniswap_v3:WETH/USDC:500", "sushiswap:LINK/WETH")
AFTER_POOLS = ("sushiswap:WETH/USDC", "uniswap_v3:WBTC/USDC:3000")
SUBSCRIPTION = "bench-bad-input-templates"
UNKNOWN_POOLS = [f"0x{random.Random(i).getrandbits(160):040x}" for i in range(50)]
KINDS = ("poison", "future", "attribute", "unknown-pool", "conflict")
# Marks the flood's messages, so that none of them becomes a template (the pipeline ignores
# attributes it does not know).
FLOOD_ATTRIBUTE = "bench_flood"


class _Templates:
    """Real events as the chain publisher sends them, from a subscription of our own:
    the malformed messages are made from them."""

    def __init__(self, project: str) -> None:
        self._events: list[PoolEvent] = []
        self._lock = threading.Lock()
        publisher = pubsub_v1.PublisherClient()
        self._subscriber = pubsub_v1.SubscriberClient()
        path = self._subscriber.subscription_path(project, SUBSCRIPTION)
        self._subscriber.create_subscription(
            request={"name": path, "topic": publisher.topic_path(project, POOL_EVENTS)}
        )

        def on_message(message) -> None:  # noqa: ANN001
            message.ack()
            if FLOOD_ATTRIBUTE in message.attributes:
                return  # our own: only what the chain publisher sent is a template
            event = PoolEvent.from_json(message.data)
            if not event.is_announcement and event.kind == "event":
                with self._lock:
                    self._events.append(event)
                    del self._events[:-2000]

        self._stream = self._subscriber.subscribe(path, on_message)

    def settled(
        self,
        rng: random.Random,
        min_age_s: float = 8.0,
        used: set[tuple] | None = None,
        variant: int = 0,
    ) -> PoolEvent:
        """A real event at least ``min_age_s`` old (the pipeline has its first version); with
        ``used``, one not yet used for this ``variant`` (and then marked): no two conflicting
        copies are the same message."""
        while True:
            with self._lock:
                old = [
                    e
                    for e in self._events
                    if e.block_timestamp < time.time() - min_age_s
                    and (used is None or (e.event_id, variant) not in used)
                ]
            if old:
                chosen = rng.choice(old[-500:])
                if used is not None:
                    used.add((chosen.event_id, variant))
                return chosen
            time.sleep(0.5)

    def close(self) -> None:
        self._stream.cancel()
        try:
            self._stream.result(timeout=10)
        except Exception:  # noqa: BLE001 - a cancelled stream ends with an exception by design
            pass
        self._subscriber.close()


def _new_id(event: PoolEvent, n: int) -> PoolEvent:
    """The same event under an id of its own (a transaction hash nobody sent)."""
    return dataclasses.replace(event, tx_hash=f"0x{0xBAD:08x}{n:056x}")


def _malformed(kind: str, template: PoolEvent, n: int, rng: random.Random):
    """(data, attributes) of one malformed message of ``kind``, unique by ``n``."""
    if kind == "poison":
        case = sorted(POISON)[n % len(POISON)]
        fresh = _new_id(template, n)
        burn = dataclasses.replace(
            fresh, dex="sushiswap", event="Burn",
            args={"sender": "0x" + "11" * 20, "to": "0x" + "11" * 20, "amount0": "5",
                  "amount1": "7"},
        )  # fmt: skip
        # Each poison case spoils one part of a V3 swap (a Burn lacks what some would spoil).
        swap = fresh if (fresh.dex, fresh.event) == ("uniswap_v3", "Swap") else _v3_like(fresh)
        return POISON[case](swap, burn), fresh.attributes()
    if kind == "future":
        ahead = dataclasses.replace(_new_id(template, n), block_timestamp=int(time.time()) + 86_400)
        return ahead.to_json(), ahead.attributes()
    if kind == "attribute":
        fresh = _new_id(template, n)
        claimed = rfc3339(fresh.block_timestamp - 3600 - n % 600)
        return fresh.to_json(), {**fresh.attributes(), "event_time": claimed}
    if kind == "unknown-pool":
        stranger = dataclasses.replace(_new_id(template, n), pool=UNKNOWN_POOLS[n % 50])
        return stranger.to_json(), stranger.attributes()
    # A conflicting copy of a real event: the same id, another block time or other amounts.
    if n % 2:
        copy = dataclasses.replace(template, block_timestamp=template.block_timestamp - 1 - n % 300)
    else:
        name = next(k for k in sorted(template.args) if template.args[k].isdigit())
        args = {**template.args, name: str(int(template.args[name]) + 1 + n)}
        copy = dataclasses.replace(template, args=args)
    return copy.to_json(), copy.attributes()


def _v3_like(event: PoolEvent) -> PoolEvent:
    """A V3 swap shaped after ``event`` (the poison cases start from a V3 swap)."""
    return dataclasses.replace(
        event, dex="uniswap_v3", event="Swap",
        args={"sender": "0x" + "11" * 20, "recipient": "0x" + "22" * 20, "amount0": "-5",
              "amount1": "7", "sqrtPriceX96": str(2**96), "liquidity": "1000", "tick": "0"},
    )  # fmt: skip


def _flood(project: str, templates: _Templates, count: int, rate: float) -> dict[str, int]:
    """Publish ``count`` malformed messages at ``rate`` a second; returns how many of each
    kind."""
    rng = random.Random(11)
    client = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=200, max_latency=0.05),
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
    )
    topic = topic_path(project, POOL_EVENTS)
    sent: dict[str, int] = defaultdict(int)
    copied: set[tuple] = set()
    futures = []
    started = time.time()
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        template = templates.settled(
            rng, used=copied if kind == "conflict" else None, variant=n % 2
        )
        data, attributes = _malformed(kind, template, n, rng)
        # Conflicting copies come under their pool's key, as from a publisher that read
        # another node; the rest as anyone would send them.
        key = template.ordering_key if kind == "conflict" else ""
        attributes = {**attributes, FLOOD_ATTRIBUTE: kind}
        futures.append(client.publish(topic, data, ordering_key=key, **attributes))
        sent[kind] += 1
        time.sleep(max(0.0, started + (n + 1) / rate - time.time()))
        if (n + 1) % 1000 == 0:
            print(f"  flood: {n + 1} of {count} sent", flush=True)
    for future in futures:
        future.result(timeout=120)
    return dict(sent)


def _chain_counts(run: LocalRun, pools: list[str], first_block: int, last_block: int):
    """Real events per (pool, block timestamp), read from the node's logs directly."""
    counts: dict[tuple[str, int], int] = defaultdict(int)
    times: dict[int, int] = {}
    for start in range(first_block, last_block + 1, 2000):
        end = min(last_block, start + 1999)
        logs = run.rpc(
            "eth_getLogs",
            [{"fromBlock": hex(start), "toBlock": hex(end), "address": pools,
              "topics": [POOL_EVENT_TOPICS]}],
        )  # fmt: skip
        for log in logs:
            number = int(log["blockNumber"], 16)
            if number not in times:
                times[number] = run.block_time(number)
            counts[(log["address"].lower(), times[number])] += 1
    return counts


def _loss(
    run: LocalRun, counts: dict[tuple[str, int], int], pools: list[str], start: int, end: int
) -> tuple[float, float, int]:
    """(share of real events missing from the windows ending in [start, end], share counted
    in excess, real events considered): the windows' counts against the chain's own logs."""
    from dexwatch.core.warehouse.duckdb import DuckDBWarehouse

    window_s = 60  # pipeline.current_slices * slice_s, the defaults
    rows = (
        DuckDBWarehouse(run.state_dir / "warehouse.duckdb")
        .query(
            "select pool, cast(epoch(window_end) as bigint), events from pool_scores "
            f"where source = 'chain' and epoch(window_end) between {start} and {end}"
        )
        .rows
    )
    written = {(pool, window_end): events for pool, window_end, events in rows}
    missing = excess = total = 0
    for pool in pools:
        for window_end in range(-(-start // 15) * 15, end + 1, 15):
            real = sum(counts.get((pool, t), 0) for t in range(window_end - window_s, window_end))
            if real == 0:
                continue
            got = written.get((pool, window_end), 0)
            total += real
            missing += max(0, real - got)
            excess += max(0, got - real)
    return missing / max(total, 1), excess / max(total, 1), total


def _drains(run: LocalRun, pools: tuple[str, ...]) -> list[float | None]:
    """Alert latencies of a drain on each pool (None where none came), 30 s apart."""
    latencies = []
    for pool in pools:
        measured = run.alert_latency("liquidity-drain", pool)
        latencies.append(None if measured is None else measured[0])
        time.sleep(30)
    return latencies


def _block_at(run: LocalRun, timestamp: int, head: int) -> int:
    low, high = 0, head
    while low < high:
        middle = (low + high) // 2
        if run.block_time(middle) < timestamp:
            low = middle + 1
        else:
            high = middle
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=120.0, help="malformed messages a second")
    parser.add_argument("--warmup-s", type=float, default=180.0)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    run = LocalRun(WORK)
    templates = None
    try:
        run.start()
        templates = _Templates("dexwatch-local")
        print(f"warming up for {args.warmup_s:g} s", flush=True)
        time.sleep(args.warmup_s)
        baseline = _drains(run, BASELINE_POOLS)
        print(f"baseline drains: {baseline}", flush=True)
        time.sleep(90)  # the drain's thread closes before the flood
        alerts_before = run.alert_count()
        flood_start = int(time.time())
        sent = _flood("dexwatch-local", templates, args.messages, args.rate)
        flood_end = int(time.time())
        print(f"flood sent in {flood_end - flood_start} s: {sent}", flush=True)
        time.sleep(20)
        alive = run.running()
        written_after = run.query("select max(epoch(window_end)) from pool_scores")
        after = _drains(run, AFTER_POOLS)
        print(f"drains after the flood: {after}", flush=True)
        # The flood's stretch of event time; its windows are final a lateness later.
        false_alerts = [
            a
            for _, a in run.alerts_since(alerts_before, lambda a: True)
            if flood_start - 60 <= a.window_end.timestamp() <= flood_end + 15
        ]
        time.sleep(30)
        alive = alive and run.running()
        deployment = LocalDeployment.load(run.state_dir / "deployment.json")
        pools = [p.address for p in deployment.pools]
        head = int(run.rpc("eth_blockNumber", []), 16)
        counts = _chain_counts(run, pools, _block_at(run, flood_start - 150, head), head)
        newest = [int(float(r[0])) for r in written_after if r[0].replace(".", "").isdigit()]
        alive = alive and bool(newest) and newest[0] >= flood_end
    finally:
        if templates is not None:
            templates.close()
        run.stop()
    # The pipeline has let go of the warehouse: read it directly.
    from dexwatch.core.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(run.state_dir / "warehouse.duckdb")
    stages = dict(warehouse.query("select stage, count(*) from dead_letters group by stage").rows)
    dead_letters = sum(stages.values())
    loss, excess, real_events = _loss(run, counts, pools, flood_start - 60, flood_end)
    figures = {
        "pipeline_alive": {"value": int(alive), "unit": "bool"},
        "dead_letter_match": {"value": round(dead_letters / args.messages, 4), "unit": "ratio"},
        "real_event_loss_share": {"value": round(loss, 6), "unit": "share"},
        "real_event_excess_share": {"value": round(excess, 6), "unit": "share"},
        "real_events_checked": {"value": real_events, "unit": "events"},
        "false_alerts": {"value": len(false_alerts), "unit": "alerts"},
        "drain_alert_latency_s": {
            "value": None if None in after else round(sum(after) / len(after), 2),
            "unit": "s",
        },
        "drain_alert_latency_s_baseline": {
            "value": None if None in baseline else round(sum(baseline) / len(baseline), 2),
            "unit": "s",
        },
        "malformed_messages": {"value": args.messages, "unit": "messages"},
        "flood_rate_per_s": {
            "value": round(args.messages / max(flood_end - flood_start, 1), 1),
            "unit": "messages/s",
        },
    }
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print("dead letters by stage:", stages)
    for alert in false_alerts:
        print("false alert:", alert.kind, alert.pool, alert.window_end, alert.top_features)
    note = (
        f"live local stack, 2 s blocks; {args.messages} malformed messages at "
        f"{args.rate:g}/s: {', '.join(f'{k} {v}' for k, v in sent.items())}; drain latencies "
        f"before {_seconds(baseline)}, after {_seconds(after)}"
    )
    path = write_results("bad_input", figures, note=note)
    print(f"wrote {path.relative_to(ROOT)}")


def _seconds(latencies: list[float | None]) -> str:
    return ", ".join("none" if x is None else f"{x:.2f} s" for x in latencies)


if __name__ == "__main__":
    main()
