"""The chain's market as one: pool announcements and slice prices → market-move and depeg
findings (``dexwatch.core.features.market``), one row each.

Each chain's ``MarketView`` is fed in event time: in streaming, a slice's price waits in
state until the watermark passes the slice's end, then every slice end the watermark passed
is evaluated in order (a slice seen early cannot leak into an earlier end's view); in batch,
each chain's slices are replayed in the same order. Same slices, same findings.
"""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam
import orjson
from apache_beam.coders import PickleCoder
from apache_beam.transforms import window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from dexwatch.core.features.market import Finding, MarketView
from dexwatch.core.features.slices import SliceSummary
from dexwatch.core.market_settings import Markets, MarketSettings

__all__ = ["PEG_POOL", "WatchMarket", "finding_row"]

# The kind of the notice that a pool holds two assets of one peg (the peg check's): the
# threading step keeps its price moves within the peg from alerting alone.
PEG_POOL = "peg-pool"


def finding_row(chain_id: int, finding: Finding) -> dict:
    """A row of the market_events table (its alert thread is the threading step's)."""
    return {
        "event_id": f"{chain_id}:{finding.scope}:{finding.at}",
        "chain_id": chain_id,
        "scope": finding.scope,
        "kind": finding.kind,
        "window_start": datetime.fromtimestamp(finding.since, UTC),
        "window_end": datetime.fromtimestamp(finding.at, UTC),
        "pools": orjson.dumps([{"dex": d, "pool": p} for d, p in finding.pools]).decode(),
        "size": finding.size,
        "severity": finding.severity,
        "evidence": orjson.dumps(list(finding.evidence)).decode(),
    }


def _peg_pool_notice(chain_id: int, pool: str, peg: str) -> dict:
    return {
        "event_id": f"{chain_id}:{PEG_POOL}:{pool}", "chain_id": chain_id, "kind": PEG_POOL,
        "pool": pool, "peg": peg, "window_start": datetime.fromtimestamp(0, UTC),
        "window_end": datetime.fromtimestamp(0, UTC),
    }  # fmt: skip


class _Pending:
    """One chain's view and the slice prices the watermark has not passed yet."""

    def __init__(self, settings: MarketSettings) -> None:
        self.view = MarketView(settings)
        # slice end: pool: what MarketView.observe takes of its slice
        self.prices: dict[int, dict[str, tuple]] = {}

    def add(self, pool: str, end: int, *last) -> None:
        self.prices.setdefault(end, {})[pool] = last

    def evaluate_until(self, chain_id: int, until: int) -> list[dict]:
        rows = []
        for end in sorted(e for e in self.prices if e <= until):
            for pool, last in self.prices.pop(end).items():
                self.view.observe(pool, end, *last)
            rows += [finding_row(chain_id, f) for f in self.view.evaluate(end)]
        return rows


def _announced(element) -> tuple[str, tuple]:
    row = element
    return str(row["chain_id"]), ("pool", row["dex"], row["pool"], row["token0"], row["token1"])


def _slice_price(element, slice_s: int) -> tuple[str, tuple]:
    key, value = element
    summary: SliceSummary = value[1] if isinstance(value, tuple) else value
    chain_id, _, pool = key.split(":")
    end = summary.start + slice_s
    last = (
        summary.last_price, summary.last_liquidity, summary.liquidity_removed,
        tuple(summary.pending_liquidity), summary.last_tick,
    )  # fmt: skip
    return chain_id, ("slice", pool, end, *last)


class _WatchMarketFn(beam.DoFn):
    """Streaming, per chain: prices wait for the watermark to pass their slice's end."""

    PENDING = ReadModifyWriteStateSpec("pending", PickleCoder())
    DUE = TimerSpec("due", TimeDomain.WATERMARK)

    def __init__(self, markets: Markets) -> None:
        self._markets = markets

    def process(
        self,
        element,
        pending_state=beam.DoFn.StateParam(PENDING),
        due=beam.DoFn.TimerParam(DUE),
    ):
        _, item = element
        pending: _Pending = pending_state.read() or _Pending(self._markets.of(int(element[0])))
        if item[0] == "pool":
            peg = pending.view.announce(*item[1:])
            if peg is not None:
                yield _peg_pool_notice(int(element[0]), item[2], peg)
        else:
            _, pool, end, *last = item
            pending.add(pool, end, *last)
            due.set(Timestamp(min(pending.prices)))
        pending_state.write(pending)

    @on_timer(DUE)
    def evaluate(
        self,
        key=beam.DoFn.KeyParam,
        now=beam.DoFn.TimestampParam,
        pending_state=beam.DoFn.StateParam(PENDING),
        due=beam.DoFn.TimerParam(DUE),
    ):
        pending: _Pending | None = pending_state.read()
        if pending is None:
            return
        yield from pending.evaluate_until(int(key), int(now.seconds()))
        if pending.prices:
            due.set(Timestamp(min(pending.prices)))
        pending_state.write(pending)


def _watch_sorted(element, markets: Markets):
    """Batch: one chain's announcements, then its slice prices in time order."""
    chain_id, items = element
    pending = _Pending(markets.of(int(chain_id)))
    slices = []
    for item in items:
        if item[0] == "pool":
            peg = pending.view.announce(*item[1:])
            if peg is not None:
                yield _peg_pool_notice(int(chain_id), item[2], peg)
        else:
            slices.append(item)
    for _, pool, end, *last in sorted(slices, key=lambda item: (item[2], item[1])):
        pending.add(pool, end, *last)
    yield from pending.evaluate_until(int(chain_id), max(pending.prices, default=0))


class WatchMarket(beam.PTransform):
    """(pool announcements, slice summaries keyed by chain_id:dex:pool) → finding rows
    (``finding_row``) and a notice of each peg pool (kind ``PEG_POOL``), in the global window.

    Args:
        markets: each chain's market section (its assets and pegs, the thresholds).
        slice_s: the slices' length (a summary's price is its slice's last).
        streaming: evaluate each slice end as the watermark passes it, or all at once.
    """

    def __init__(self, markets: Markets, slice_s: int, streaming: bool) -> None:
        super().__init__()
        self._markets = markets
        self._slice_s = slice_s
        self._streaming = streaming

    def expand(self, inputs):
        announcements, slices = inputs
        keyed = (
            announcements | "PoolsByChain" >> beam.Map(_announced),
            slices
            | "PricesInGlobalWindow" >> beam.WindowInto(window.GlobalWindows())
            | "PricesByChain" >> beam.Map(_slice_price, self._slice_s),
        ) | "PoolsAndPrices" >> beam.Flatten()
        if self._streaming:
            return keyed | "Evaluate" >> beam.ParDo(_WatchMarketFn(self._markets))
        return (
            keyed
            | "GroupByChain" >> beam.GroupByKey()
            | "EvaluateInOrder" >> beam.FlatMap(_watch_sorted, self._markets)
        )
