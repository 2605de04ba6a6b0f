"""Which pool events count: those of announced pools, each ``event_id`` once.

Pools are announced on the same topic as their events: the publisher sends each pool's
creation log (PoolCreated / PairCreated) before any event of it, under the pool's ordering
key. An event of a pool nobody announced is dead-lettered (in production the topic's schema
and the publisher's identity are the first gate; this one stops what gets past them).

The first version of an ``event_id`` wins: a copy with the same content is a duplicate
(dropped and counted), a copy with other content (a shifted block time, other amounts) is a
conflict (dead-lettered as such). A retraction withdraws the counted version; if a reorg
flips back and the publisher sends the event again, it counts again. Streaming follows the
message order (the publisher keeps a pool's messages in order); batch follows the
recording's order.

Streaming keeps the state per pool, as the steps after it do: a pool's events stay in their
order (split over several keys, bundles of later events could overtake earlier ones, and
windows would be emitted from partial data). An id is remembered until the watermark has
passed its event time, or the newest event time of its pool when it came, by
``allowed_lateness_s`` and a slice: as long as an update of its slice is still taken. A copy
that comes later than that, with a block time new enough to be on time, counts again; a
copy that names another announced pool is that pool's event (only a publisher allowed on
the topic could send one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import CombiningValueStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.transforms.parse import DEAD_LETTERS, dead_letter_of
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.settings import PipelineSettings

POOLS = "pools"
STAGE = "admit"
# Ids are pruned in sweeps at most this often (event time) per bucket: a sweep reads them all.
_SWEEP_EVERY_S = 60


def pool_key(event: PoolEvent) -> str:
    return f"{event.chain_id}:{event.dex}:{event.pool}"


def _id_digest(event: PoolEvent) -> int:
    return int.from_bytes(hashlib.blake2b(event.event_id.encode(), digest_size=8).digest(), "big")


def pool_row(announcement: PoolEvent) -> dict:
    """A row of the pools table from a pool's announcement."""
    args = announcement.args
    return {
        "pool_id": f"{announcement.chain_id}:{announcement.pool}",
        "chain_id": announcement.chain_id,
        "dex": announcement.dex,
        "pool": announcement.pool,
        "token0": args["token0"],
        "token1": args["token1"],
        "fee": int(args["fee"]) if "fee" in args else None,
        "created_block": announcement.block_number,
        "created_at": datetime.fromtimestamp(announcement.block_timestamp, UTC),
        "announcement_id": announcement.event_id,
    }


# Verdicts on one message.
ANNOUNCE, ADMIT, RETRACT = "announce", "admit", "retract"
DUPLICATE, CONFLICT, UNKNOWN_POOL, FORGOTTEN_POOL = "duplicate", "conflict", "unknown", "gone"


# An id seen: (its version's fingerprint, live, the event time after which it is forgotten).
# Plain tuples: the runner pickles a pool's ids (ten minutes of its events) with every bundle
# it commits, and a tuple pickles about fifteen times faster than a dataclass (bench/live.py).
_Seen = tuple[int, bool, int]


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one message, and what recording it needs."""

    kind: str
    event: PoolEvent
    digest: int
    fingerprint: int


class Admission:
    """What decides admission: announced pools and the ids seen, with their versions. Used
    per pool in streaming and per block in batch.

    ``judge`` only looks; ``apply`` records a verdict (a runner's combining state needs
    the change to go through its ``add``)."""

    def __init__(self, announced: dict[str, int] | None = None) -> None:
        self.announced: dict[str, int] = announced or {}  # pool key → its fingerprint
        self.seen: dict[int, _Seen] = {}
        self.newest = 0
        self.next_sweep: int | None = None

    def judge(self, event: PoolEvent) -> Verdict:
        fingerprint = event.fingerprint()
        if event.is_announcement:
            held = self.announced.get(pool_key(event))
            if event.kind == "retraction":
                kind = FORGOTTEN_POOL if held == fingerprint else DUPLICATE
            elif held is None:
                kind = ANNOUNCE
            else:
                kind = DUPLICATE if held == fingerprint else CONFLICT
            return Verdict(kind, event, 0, fingerprint)
        digest = _id_digest(event)
        if pool_key(event) not in self.announced:
            return Verdict(UNKNOWN_POOL, event, digest, fingerprint)
        held_fingerprint, live, _ = self.seen.get(digest, (None, False, 0))
        if held_fingerprint is not None and held_fingerprint != fingerprint:
            kind = CONFLICT
        elif event.kind == "retraction":
            kind = RETRACT if held_fingerprint is None or live else DUPLICATE
        else:
            kind = ADMIT if held_fingerprint is None or not live else DUPLICATE
        return Verdict(kind, event, digest, fingerprint)

    def apply(self, verdict: Verdict, horizon_s: int) -> None:
        event = verdict.event
        if verdict.kind == ANNOUNCE:
            self.announced[pool_key(event)] = verdict.fingerprint
        elif verdict.kind == FORGOTTEN_POOL:
            del self.announced[pool_key(event)]
        elif verdict.kind in (ADMIT, RETRACT):
            self.newest = max(self.newest, event.block_timestamp)
            self.seen[verdict.digest] = (
                verdict.fingerprint,
                verdict.kind == ADMIT,
                self.newest + horizon_s,
            )
            if self.next_sweep is None:
                self.next_sweep = self.newest + horizon_s + _SWEEP_EVERY_S

    def sweep(self, now: int) -> None:
        """Forget the ids whose time has passed ``now`` (event time)."""
        self.seen = {d: s for d, s in self.seen.items() if s[2] > now}
        oldest = min((expiry for _, _, expiry in self.seen.values()), default=None)
        self.next_sweep = None if oldest is None else oldest + _SWEEP_EVERY_S


@dataclasses.dataclass(frozen=True, slots=True)
class _Applied:
    verdict: Verdict
    horizon_s: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Sweep:
    now: int


class _Admit(beam.CombineFn):
    """Combining state of _AdmitFn: the runner keeps the Admission in memory through a
    bundle and encodes it once at the bundle's end."""

    def create_accumulator(self) -> Admission:
        return Admission()

    def add_input(self, admission: Admission, item: _Applied | _Sweep) -> Admission:
        if isinstance(item, _Sweep):
            admission.sweep(item.now)
        else:
            admission.apply(item.verdict, item.horizon_s)
        return admission

    def merge_accumulators(self, accumulators):
        # A runner merges only encoded copies of one key's state: keep the fullest.
        return max(accumulators, key=lambda a: len(a.seen) + len(a.announced))

    def extract_output(self, admission: Admission) -> Admission:
        return admission


def _rejection(verdict: Verdict):
    event = verdict.event
    if verdict.kind == UNKNOWN_POOL:
        reason = f"unknown pool {event.pool}: no {event.dex} pool announced"
    else:
        reason = f"conflicting duplicate of {event.event_id}: the first version differs"
    return dead_letter_of(STAGE, reason, event)


class _AdmitFn(beam.DoFn):
    """(pool key, PoolEvent) → admitted events and retractions; ``pools``: a row per new
    announcement; ``dead_letters``: unknown pools and conflicting copies."""

    ADMISSION = CombiningValueStateSpec("admission", PickleCoder(), _Admit())
    SWEEP = TimerSpec("sweep", TimeDomain.WATERMARK)

    def __init__(self, horizon_s: int) -> None:
        self._horizon_s = horizon_s

    def process(
        self,
        element,
        admission_state=beam.DoFn.StateParam(ADMISSION),
        sweep=beam.DoFn.TimerParam(SWEEP),
    ):
        _, event = element
        admission: Admission = admission_state.read()
        verdict = admission.judge(event)
        if verdict.kind in (UNKNOWN_POOL, CONFLICT):
            beam.metrics.Metrics.counter("dexwatch", f"rejected_{verdict.kind}").inc()
            yield _rejection(verdict)
            return
        if verdict.kind == DUPLICATE:
            beam.metrics.Metrics.counter("dexwatch", "duplicate_events").inc()
            return
        before = admission.next_sweep
        admission_state.add(_Applied(verdict, self._horizon_s))
        admission = admission_state.read()
        if verdict.kind == ANNOUNCE:
            yield beam.pvalue.TaggedOutput(POOLS, pool_row(event))
        elif verdict.kind in (ADMIT, RETRACT):
            yield event
        if admission.next_sweep is not None and admission.next_sweep != before:
            sweep.set(Timestamp(admission.next_sweep))

    @on_timer(SWEEP)
    def swept(
        self,
        now=beam.DoFn.TimestampParam,
        admission_state=beam.DoFn.StateParam(ADMISSION),
        sweep=beam.DoFn.TimerParam(SWEEP),
    ):
        admission_state.add(_Sweep(int(now.seconds())))
        admission: Admission = admission_state.read()
        if admission.next_sweep is not None:
            sweep.set(Timestamp(admission.next_sweep))


def horizon_s(settings: PipelineSettings) -> int:
    """How long (event time) an id is remembered: while its slice still takes updates."""
    return settings.allowed_lateness_s + settings.slice_s


def _admit_block(element, announced: dict[str, bool]):
    """Batch: ((chain_id, block_hash), [(order, event fields)]) → the block's live events,
    dead letters for unknown pools and conflicts; copies are judged in recording order."""
    _, numbered = element
    events = [PoolEvent(*fields) for _, fields in sorted(numbered, key=lambda item: item[0])]
    ids = [event.event_id for event in events]
    if len(set(ids)) == len(ids) and all(e.kind == "event" for e in events):
        # The usual block: one message per event, nothing to judge but the pool.
        for event in events:
            if pool_key(event) in announced:
                yield event
            else:
                yield _rejection(Verdict(UNKNOWN_POOL, event, 0, 0))
        return
    admission = Admission(announced)
    live: dict[str, PoolEvent] = {}
    for event, event_id in zip(events, ids, strict=True):
        verdict = admission.judge(event)
        if verdict.kind in (UNKNOWN_POOL, CONFLICT):
            yield _rejection(verdict)
        elif verdict.kind in (ADMIT, RETRACT):
            admission.apply(verdict, 0)
            if verdict.kind == ADMIT:
                live[event_id] = event
            else:
                live.pop(event_id, None)
    yield from live.values()


# A PoolEvent as a plain tuple crosses a shuffle with Beam's fast coder instead of pickle.
_event_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(PoolEvent)))


def _block_key(item: tuple[int, PoolEvent]):
    order, event = item
    return (event.chain_id, event.block_hash), (order, _event_fields(event))


class AdmitEvents(beam.PTransform):
    """PoolEvents (announcements included) → outputs ``main`` (the events that count;
    streaming also passes retractions of counted events), ``pools`` (a pools-table row per
    announced pool) and ``dead_letters``.

    Args:
        settings: the pipeline settings (lateness and slice).
        streaming: per-pool state in message order; otherwise whole blocks at once, in the
            order of ``(order, event)`` pairs (the recording's line numbers).
    """

    def __init__(self, settings: PipelineSettings, streaming: bool = True) -> None:
        super().__init__()
        self._settings = settings
        self._streaming = streaming

    def expand(self, events):
        if self._streaming:
            return self._streaming_admission(events)
        return self._batch_admission(events)

    def _streaming_admission(self, events):
        s = self._settings
        fn = _AdmitFn(horizon_s(s))
        return (
            events
            | "AllTime" >> beam.WindowInto(window.GlobalWindows())
            | "KeyByPool" >> beam.Map(lambda event: (pool_key(event), event))
            | "Admit" >> beam.ParDo(fn).with_outputs(POOLS, DEAD_LETTERS, main="main")
        )

    def _batch_admission(self, numbered):
        announcements = numbered | "Announcements" >> beam.Filter(
            lambda item: item[1].is_announcement and item[1].kind == "event"
        )
        pools = announcements | "PoolRows" >> beam.Map(lambda item: pool_row(item[1]))
        announced = (
            announcements
            | "AnnouncedKeys" >> beam.Map(lambda item: pool_key(item[1]))
            | "Distinct" >> beam.Distinct()
            | "AsEntries" >> beam.Map(lambda key: (key, True))
        )
        admitted = (
            numbered
            | "PoolEventsOnly" >> beam.Filter(lambda item: not item[1].is_announcement)
            | "KeyByBlock" >> beam.Map(_block_key)
            | "GroupByBlock" >> beam.GroupByKey()
            | "AdmitBlocks"
            >> beam.FlatMap(_admit_block, beam.pvalue.AsDict(announced)).with_outputs(
                DEAD_LETTERS, main="main"
            )
        )
        return {"main": admitted.main, POOLS: pools, DEAD_LETTERS: admitted[DEAD_LETTERS]}
