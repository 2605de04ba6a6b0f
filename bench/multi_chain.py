"""Several chains in one deployment: incidents injected on two local chains, replayed together.

Two anvils (bench/_two_chains.py, as tests/integration/test_two_chains.py): "local" (chain
31337, 2 s blocks) and "chain-31338" (a fixed 12 s block time), the real contracts at the same
addresses on both, each with the market simulator (seeds of their own) mining
``--history-hours`` of normal trading from the same genesis. Then incidents on BOTH chains,
``--incidents`` on each (pool incidents of infra.local.incidents.inject: wash trading, price
manipulation, runs of sandwiches, round trips in turn across pools, then destructive ones,
liquidity drains, rug pulls, quiet pools' drains and fresh pools' rugs, each on a pool of its
own), in slots of ``--gap-minutes`` of chain time taken in turn by the two chains: "local"
has its incidents in the even slots, "chain-31338" in the odd ones, with normal trading
everywhere else, so that every incident on one chain has a calm span on the other at the
same time (the pools at the same addresses included). Each chain's publisher records its
chain with the two-chain settings narrowed by ``for_chain``; a model is trained on both
chains' history before the incidents (shared: the deployment's one model); ONE batch replay
of both recordings fills a warehouse, and each chain is replayed alone as well. Beside it,
one model per chain, trained on that chain's history alone, scoring that chain alone.

Figures (bench/results/multi_chain.json):

- ``recall_per_chain``: the lower of the two chains' recall, detected incidents / injected.
  "Detected" is bench/incidents.py's rule (model.evaluation.incident_detection): a flagged
  window of the incident's pool ON ITS CHAIN (a scored window with is_anomaly, or a market
  view finding of that scope, of any kind) that ends after the incident's first block and
  starts no later than the detection allowance (pipeline.current_slices x slice_s) after its
  last. Each chain's recall, counts and kinds in ``details``.
- ``cross_chain_false_alerts``: alert threads of one chain in the two-chain run that (a) are
  not in that chain's run alone (a thread id missing there, or holding other rows), or (b)
  overlap in time an incident of the OTHER chain (its first block to its last + the
  allowance, any pool) while overlapping no incident of their own chain (its pool, the same
  span); each counted once. (b) is an upper bound: a chain's own false alert that happens to
  fall in the other chain's incident counts, and ``details`` says which of them the chain's
  run alone has too (so the other chain did not cause them).
- ``windows_differing_from_alone``: one chain's scored windows in the two-chain run that are
  not exactly its run alone's (either way), both chains.
- ``false_alerts_<chain>``: each chain's alert threads that overlap no incident of their pool
  (bench/incidents.py's false alerts), for context; ``events_chain_<id>``, ``replay_s`` (the
  two-chain replay), ``replay_alone_s``.
- ``recall_per_chain_own_models``, ``recall_<chain>_own_model``,
  ``false_alerts_<chain>_own_model``: the same with one model per chain (the choice between a
  shared model and one per chain rests on these, README "Several chains").

``live_sustained_events_per_s`` (both chains, live) is bench/live.py ``--chains 2``'s, added
to the same results file: a run of this benchmark keeps the live figures there.

    python bench/multi_chain.py [--history-hours 1] [--incidents 8] [--gap-minutes 10]
        [--note TEXT] [--quick]

``--quick`` is a smoke run (about a minute) that writes nothing: a quarter of an hour of
history leaves the model flagging ordinary price drift after half an hour.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _two_chains import (  # noqa: E402
    CHAINS,
    anvil,
    chain_columns,
    chain_id,
    chain_threads,
    concatenated,
    latest_timestamp,
    replay,
    thread_rows,
    two_chain_settings,
    window_rows,
)

from dexwatch.app.workflows.bootstrap import compute_features  # noqa: E402
from infra.local.incidents import inject  # noqa: E402
from infra.local.market import MarketSimulator  # noqa: E402
from model.chain_window import TrainingParams, train_detector  # noqa: E402
from model.evaluation import AlertThread, LabelledIncident, incident_detection  # noqa: E402
from publishers.chain import run as publish_chain  # noqa: E402

WORK = ROOT / "bench" / "work" / "multi_chain"
REVERSIBLE = ("wash-trading", "price-manipulation", "sandwich", "round-trips")
DESTRUCTIVE = ("liquidity-drain", "rug-pull", "quiet-pool-drain", "fresh-pool-rug")
QUIET_S = 600  # a quiet pool's drain comes after 10 silent minutes of its pool (inject's)
# bench/live.py --chains 2's, added to this benchmark's results file.
LIVE_FIGURES = ("live_sustained_events_per_s", "live_sustained_events_per_s_one_chain")
QUICK = {"history_hours": 0.25, "incidents": 3, "gap_minutes": 8.0}


def plan(name: str, pools: list[str], count: int) -> list[tuple[str, str]]:
    """(kind, pool) of each incident of chain ``name``: reversible kinds in turn across pools,
    then a quarter of them (at least one) destructive, each on a pool of its own; the second
    chain's turns shifted, so that the two chains differ in kind and pool at every step."""
    shift = list(CHAINS).index(name)
    destructive = max(1, count // 4)
    incidents = [
        (REVERSIBLE[(i + shift) % len(REVERSIBLE)], pools[(i + shift) % len(pools)])
        for i in range(count - destructive)
    ]
    incidents += [
        (DESTRUCTIVE[(j + 2 * shift) % len(DESTRUCTIVE)], pools[(3 * j + 5 * shift) % len(pools)])
        for j in range(destructive)
    ]
    return incidents


def mine_until(simulator: MarketSimulator, settings, timestamp: float) -> None:
    """Normal trading up to about ``timestamp`` of chain time (nothing if it is reached)."""
    seconds = timestamp - latest_timestamp(settings)
    if seconds >= settings.simulator.history_block_interval_s:
        simulator.generate_history(seconds / 3600)


def mine_incidents(
    name: str, stack, simulator: MarketSimulator, start: int, count: int, slot_s: float
) -> tuple[list, list[str]]:
    """Chain ``name``'s incidents, each at the start of its slot (the chain's turn: every
    other slot), normal trading between and after the last slot; returns their labels and
    any slot an incident overran."""
    settings, deployment = stack
    offset = list(CHAINS).index(name)
    labels, overran = [], []
    for i, (kind, pool) in enumerate(plan(name, [p.name for p in deployment.pools], count)):
        at = start + (2 * i + offset) * slot_s
        mine_until(simulator, settings, at - (QUIET_S if kind == "quiet-pool-drain" else 0))
        label = inject(settings, deployment, kind, pool, history=True, between=simulator.fill)
        labels.append(label)
        if label.last_timestamp.timestamp() > at + slot_s:
            overran.append(f"{name}: {kind} in {pool} ran past its slot")
        print(f"  {name}: {kind} in {pool} ({label.first_timestamp:%H:%M:%S}-"
              f"{label.last_timestamp:%H:%M:%S})", flush=True)  # fmt: skip
    mine_until(simulator, settings, start + (2 * count + 1) * slot_s)
    return labels, overran


def _incidents(labels: list) -> list[LabelledIncident]:
    return [
        LabelledIncident(x.label_id, x.pool, x.kind, x.first_timestamp, x.last_timestamp)
        for x in labels
    ]


def _overlaps(thread: AlertThread, incident: LabelledIncident, after_s: float) -> bool:
    first = incident.first_timestamp.timestamp()
    return thread.end > first and thread.start <= incident.last_timestamp.timestamp() + after_s


def _missed(cols: dict, incident: LabelledIncident, after_s: float) -> str:
    """What the windows holding a missed incident scored: the lowest, the model's verdict."""
    first = incident.first_timestamp.timestamp()
    last = incident.last_timestamp.timestamp() + after_s
    holds = (cols["pool"] == incident.pool) & (cols["end"] > first) & (cols["start"] <= last)
    if not holds.any():
        return "MISSED: no scored window holds it"
    lowest = float(cols["score"][holds].min())
    return f"MISSED: {int(holds.sum())} windows hold it, none flagged, lowest score {lowest:.3f}"


def _describe(thread: AlertThread) -> str:
    start, end = (time.strftime("%H:%M:%S", time.gmtime(t)) for t in (thread.start, thread.end))
    return f"{thread.pool} {start}-{end}"


def _detection(warehouse, cid: int, incidents: list, after_s: float, cooldown_s: float):
    """(one chain's scored columns, its incident detection) in a warehouse."""
    cols = chain_columns(warehouse, cid)
    threads = list(chain_threads(warehouse, cid).values())
    detection = incident_detection(
        cols["pool"], cols["start"], cols["end"], cols["is_anomaly"].astype(bool),
        incidents, after_s, cooldown_s, threads=threads,
    )  # fmt: skip
    return cols, detection


def cross_chain(both, alone: dict, incidents: dict, after_s: float) -> tuple[int, list[str]]:
    """The cross-chain false alerts (see the module's doc) and, in words, each of them and
    what else was looked at."""
    words: list[str] = []
    not_alone_count = during_count = 0
    names = list(CHAINS)
    for name in names:
        cid = chain_id(name)
        other = names[1 - names.index(name)]
        threads = chain_threads(both, cid)
        held, held_alone = thread_rows(both, cid), thread_rows(alone[name], cid)
        for alert_id, thread in sorted(threads.items()):
            not_alone = held.get(alert_id) != held_alone.get(alert_id)
            own = any(
                thread.pool == i.pool and _overlaps(thread, i, after_s) for i in incidents[name]
            )
            during = [i for i in incidents[other] if _overlaps(thread, i, after_s)]
            if not_alone:
                not_alone_count += 1
                why = "not in its chain's run alone"
            elif during and not own:
                during_count += 1
                why = "in its chain's run alone too"
            else:
                continue
            if during and not own:
                why += f"; during {other}'s {during[0].kind} in {during[0].pool} only"
            words.append(f"{name} {alert_id}: {_describe(thread)} ({why})")
        missing = sorted(set(held_alone) - set(held))
        not_alone_count += len(missing)
        words += [f"{name} {a}: in its run alone only" for a in missing]
        words.append(
            f"{name}: {len(threads)} threads in the two-chain run, {len(held_alone)} alone"
        )
    words.insert(
        0,
        f"{not_alone_count} threads differ from their chain's run alone; {during_count} more "
        "fall in the other chain's incidents only, as in their chain's run alone (its own "
        "false alerts, counted all the same)",
    )
    return not_alone_count + during_count, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--history-hours",
        type=float,
        default=1.0,
        help="normal trading before the incidents (the model's training)",
    )
    parser.add_argument("--incidents", type=int, default=8, help="incidents on each chain")
    parser.add_argument(
        "--gap-minutes",
        type=float,
        default=10.0,
        help="chain time from one incident to the other chain's next",
    )
    parser.add_argument("--note", default="", help="said of the machine in the results' note")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (0.25 h of history, 3 incidents a chain, 8 minutes apart): "
        "figures printed, not written",
    )
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    if args.incidents < 1 or args.gap_minutes < 5:
        parser.error("at least one incident a chain, at least 5 minutes apart")
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    recordings = {name: WORK / "recording" / name for name in CHAINS}
    labels: dict[str, list] = {}
    overran: list[str] = []
    with ExitStack() as anvils:
        stacks = {name: anvils.enter_context(anvil(WORK / name, name)) for name in CHAINS}
        settings = two_chain_settings(WORK / "state", stacks)
        simulators = {name: MarketSimulator(*stacks[name]) for name in CHAINS}

        def publish() -> None:
            for name in CHAINS:
                publish_chain(settings.for_chain(name), once=True, record_to=recordings[name])

        print(f"mining {args.history_hours:g} h of history on both chains ...", flush=True)
        for simulator in simulators.values():
            simulator.generate_history(args.history_hours)
        publish()
        histories = {
            name: concatenated(
                [recordings[name] / "pool-events.jsonl"], WORK / f"history-{name}.jsonl"
            )
            for name in CHAINS
        }
        history = concatenated(list(histories.values()), WORK / "history.jsonl")
        # The first slot starts a minute after the later chain's history.
        start = max(latest_timestamp(local) for local, _ in stacks.values()) + 60
        slot_s = args.gap_minutes * 60
        print(f"injecting {args.incidents} incidents on each chain ...", flush=True)
        for name in CHAINS:
            labels[name], late = mine_incidents(
                name, stacks[name], simulators[name], start, args.incidents, slot_s
            )
            overran += late
        publish()
    mined_s = time.monotonic() - started
    print("training the model on both chains' history ...", flush=True)
    rows = compute_features(settings, history, WORK / "features")
    train_detector(rows, TrainingParams(seed=1)).save(settings.model_path)
    own_models = {}
    for name in CHAINS:
        print(f"training {name}'s own model on its history alone ...", flush=True)
        narrowed = settings.for_chain(name)
        own = compute_features(narrowed, histories[name], WORK / f"features-{name}")
        own_models[name] = WORK / "models" / f"{name}.joblib"
        train_detector(own, TrainingParams(seed=1)).save(own_models[name])
    print("replaying both chains in one run, then each alone ...", flush=True)
    both, replay_s = replay(settings, [recordings[name] for name in CHAINS])
    alone, alone_s = {}, 0.0
    for name in CHAINS:
        narrowed = settings.for_chain(name).with_sections(
            warehouse={"path": WORK / f"alone-{name}.duckdb"}
        )
        alone[name], seconds = replay(narrowed, [recordings[name]])
        alone_s += seconds
    print("replaying each chain alone with its own model ...", flush=True)
    own_scored = {
        name: replay(
            settings.for_chain(name).with_sections(
                warehouse={"path": WORK / f"own-{name}.duckdb"},
                model={"path": own_models[name]},
            ),
            [recordings[name]],
        )[0]
        for name in CHAINS
    }
    after_s = settings.pipeline.current_slices * settings.pipeline.slice_s
    cooldown_s = settings.pipeline.alert_cooldown_s
    incidents = {name: _incidents(labels[name]) for name in CHAINS}
    figures: dict[str, dict] = {}
    details: dict[str, list[str]] = {}
    recalls, own_recalls, differing = [], [], 0
    for name in CHAINS:
        cid = chain_id(name)
        cols, detection = _detection(both, cid, incidents[name], after_s, cooldown_s)
        recalls.append(detection.recall or 0.0)
        own_cols, own = _detection(own_scored[name], cid, incidents[name], after_s, cooldown_s)
        own_recalls.append(own.recall or 0.0)
        found = sum(o.detected for o in detection.outcomes)
        key = name.replace("-", "_")
        details[f"recall_{key}"] = [
            f"{found} of {len(detection.outcomes)} detected: recall {detection.recall:.3f}",
            *(
                f"{o.kind} in {o.pool}: "
                + (f"detected, {o.delay_s:.0f} s after its first block" if o.detected else "")
                + ("" if o.detected else _missed(cols, incident, after_s))
                for o, incident in zip(detection.outcomes, incidents[name], strict=True)
            ),
        ]
        figures[f"recall_{key}"] = {
            "value": round(detection.recall or 0.0, 4),
            "unit": f"share of {len(detection.outcomes)} incidents",
        }
        figures[f"false_alerts_{key}"] = {
            "value": detection.false_threads,
            "unit": f"alert threads of {detection.threads} on no incident of their pool",
        }
        details[f"false_alerts_{key}"] = [_describe(t) for t in detection.false_alerts]
        figures[f"recall_{key}_own_model"] = {
            "value": round(own.recall or 0.0, 4),
            "unit": f"share of {len(own.outcomes)} incidents (the chain's own model)",
        }
        details[f"recall_{key}_own_model"] = [
            f"{o.kind} in {o.pool}: "
            + ("detected" if o.detected else _missed(own_cols, i, after_s))
            for o, i in zip(own.outcomes, incidents[name], strict=True)
        ]
        figures[f"false_alerts_{key}_own_model"] = {
            "value": own.false_threads,
            "unit": f"alert threads of {own.threads} on no incident of their pool",
        }
        details[f"false_alerts_{key}_own_model"] = [_describe(t) for t in own.false_alerts]
        diff = set(window_rows(both, cid)) ^ set(window_rows(alone[name], cid))
        differing += len(diff)
        lines = (recordings[name] / "pool-events.jsonl").read_bytes().count(b"\n")
        figures[f"events_chain_{cid}"] = {
            "value": lines,
            "unit": "events recorded (pool announcements included)",
        }
    cross, words = cross_chain(both, alone, incidents, after_s)
    events = sum(figures[f"events_chain_{chain_id(n)}"]["value"] for n in CHAINS)
    figures = {
        "recall_per_chain": {"value": round(min(recalls), 4), "unit": "share (the lower chain)"},
        "cross_chain_false_alerts": {"value": cross, "unit": "alert threads"},
        "recall_per_chain_own_models": {
            "value": round(min(own_recalls), 4),
            "unit": "share (the lower chain; one model per chain)",
        },
        "windows_differing_from_alone": {"value": differing, "unit": "scored windows"},
        **figures,
        "replay_s": {"value": round(replay_s, 1), "unit": f"s (both chains, {events} events)"},
        "replay_alone_s": {"value": round(alone_s, 1), "unit": "s (each chain alone, summed)"},
    }
    details["cross_chain_false_alerts"] = words
    if overran:
        details["schedule"] = overran
    total_s = time.monotonic() - started
    for name, figure in figures.items():
        print(f"  {name}: {figure['value']} {figure['unit']}")
    if args.quick:  # a smoke run: its model has too little history for figures to mean much
        print(f"--quick: nothing written ({total_s:.0f} s)")
        return
    note = (
        f"two anvils: local (31337, 2 s blocks) and chain-31338 (12 s blocks), "
        f"{args.history_hours:g} h of history, {args.incidents} pool incidents a chain in "
        f"turns {args.gap_minutes:g} min apart; one batch replay (FnApiRunner, one process). "
        f"Detected: a flagged window (or market finding) of the incident's pool on its chain, "
        f"any kind, from its first block to {after_s} s after its last (bench/incidents.py's "
        "rule). Cross-chain false alerts: a chain's alert threads in the two-chain run that "
        "its run alone has not (or holds otherwise), or that fall in the other chain's "
        "incident (same span) while on no incident of their own chain's pool; each once. "
        "The live_ figures are bench/live.py --chains 2's (kept from the file). "
        f"Mining {mined_s:.0f} s, run {total_s:.0f} s" + (f"; {args.note}" if args.note else "")
    )
    path = write_results("multi_chain", figures, note=note, details=details, keep=LIVE_FIGURES)
    print(f"wrote {path.relative_to(ROOT)} ({total_s:.0f} s)")


if __name__ == "__main__":
    main()
