"""Real traffic: dexwatch on recorded days of a real pool, served as a chain to the real
publisher, replayed through the real pipeline.

The days are every log of the USDC/WETH 0.05 % Uniswap V3 pool on Polygon on three days
(``../shared/data/real-logs/``, 2 s blocks). Settings may be chosen on ``TUNING_DAY`` only;
the figures are reported on the two others (``HELD_OUT_DAYS``: a quiet day and a busy one),
which no choice looks at. Nothing in these days is a known incident: every alert is false.

Each day: the recorded-chain node (``infra.local.recorded_chain``) serves the logs over
JSON-RPC, the chain publisher records them, ``pipeline replay`` scores them. Detectors, side
by side on the same windows:

- ``default``: the model a new user has, bootstrapped by ``dexwatch run`` from the
  simulator (its settings from ``--market``, a config file, or the defaults; or ``--model``);
- ``real``: a model trained (``model.chain_window.train_detector``, the fitting ``dexwatch
  train`` does) on the tuning day's windows, as a user who trained on real traffic other
  than the day scored;
- ``rule``: the fixed-threshold rules of ``model.rules``;
- with ``--before CHECKOUT`` (a worktree of the commit before this work, e.g. 7ae14f1):
  that checkout's own bootstrap and trained models, scoring the same recordings with its
  own pipeline (``bench/_before_detector.py``), reported as ``before_...`` and
  ``before_default_...``.

Figures (held-out days): ``false_alerts_per_pool_day`` (the alert threads the pipeline
opened, per pool-day, with the ``real`` model; ``default_...`` and ``rule_...`` beside
it); ``scored_event_share`` (share of the pool's events inside a scored window); the same
on the tuning day with a ``tuning_`` prefix, for reference; and
``bootstrap_false_alerts_real_days``, the ``default`` model's alert threads over all three
days (nothing is chosen on them for that model: it never saw real traffic). The recordings carry no
transaction senders or pool balances: features that would need them run without.
``spliced_sandwich_value_error``: over the spliced runs of sandwiches, the largest relative
gap between what the windows' ``patterns`` say the sandwiches took (each counted once) and
what the spliced amounts imply.

    python bench/real_traffic.py [--model PATH | --market FILE] [--before CHECKOUT]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _before import score_before
from _private_chain import GENESIS, bootstrap_settings
from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from beam_pipelines.options import batch_options  # noqa: E402
from beam_pipelines.pipeline import build_replay_pipeline  # noqa: E402
from dexwatch.app.workflows.bootstrap import bootstrap_model  # noqa: E402
from dexwatch.core.features.blocks import sandwiches_in  # noqa: E402
from dexwatch.core.features.chain import FEATURE_NAMES  # noqa: E402
from dexwatch.core.market_settings import MarketSettings  # noqa: E402
from dexwatch.core.settings import Settings  # noqa: E402
from dexwatch.core.warehouse import open_warehouse  # noqa: E402
from infra.local.recorded_chain import RecordedChainNode, Recording, open_recording  # noqa: E402
from infra.local.splice import KINDS, SplicedIncident, splice  # noqa: E402
from model.chain_window import train_detector  # noqa: E402
from model.evaluation import (  # noqa: E402
    AlertThread,
    IncidentDetection,
    LabelledIncident,
    chain_windows,
    incident_detection,
    opened_threads,
)
from model.rules import rule_flags  # noqa: E402
from publishers.chain import run as publish_chain  # noqa: E402

REAL_LOGS = ROOT.parent / "shared" / "data" / "real-logs"
FILE = "polygon-uniswap-v3-usdc-weth-500-{day}.csv"
TUNING_DAY = "2022-01-05"
HELD_OUT_DAYS = ("2021-12-22", "2023-11-25")
WORK = ROOT / "bench" / "work" / "real-traffic"
BOOTSTRAP_SEED = 21
DAYS = (TUNING_DAY, *HELD_OUT_DAYS)
SPLICE_SEEDS = {"2021-12-22": 41, "2023-11-25": 42}
# Figure-name prefixes: the detector a user would have is reported unprefixed.
LABELS = {
    "real": "", "default": "default_", "rule": "rule_",
    "before_real": "before_", "before_default": "before_default_",
}  # fmt: skip
INCIDENT_EVERY_S = 3600
# Said with every result since: what was seen of the held-out days.
READ_HELD_OUT = (
    "the held-out days' false alerts of the run before features v7 were read (range orders "
    "taken back within seconds, deposits of 8-31x the in-range liquidity: the shapes the "
    "real-traffic issue found on its Ethereum day), so these days are no longer unseen"
)
# The incidents of the hourly plan; a slow drain (half an hour, and an hour of its loss in
# every window after it) goes into a copy of each held-out day, at its middle, with a fresh
# pool's rug (a pool of its own) a quarter of the day in.
HOURLY_KINDS = ("liquidity-drain", "rug-pull", "price-manipulation", "wash-trading", "sandwich")


def record(recording: Recording, work: Path) -> Path:
    """Serve a recorded day to the real chain publisher; its recording of pool events."""
    with RecordedChainNode(recording) as node:
        settings = node.following(Settings(state_dir=work / "publisher"), batch_blocks=2000)
        stats = publish_chain(settings, once=True, record_to=work)
    print(f"  {work.parent.name}: {stats.events} events published from {len(recording.logs)} logs")
    return work / "pool-events.jsonl"


def incident_plan(recording: Recording) -> list[tuple[int, str]]:
    """Where the incidents go: one every INCIDENT_EVERY_S of the day, kinds in turn, each
    at the first block after its time that has a swap before it."""
    first = recording.timestamp(recording.first_block)
    day = recording.timestamp(recording.last_block) - first
    plan = []
    for index in range(int(day // INCIDENT_EVERY_S)):
        at = first + INCIDENT_EVERY_S * (index + 0.5)
        plan.append((recording.block_at(at), HOURLY_KINDS[index % len(HOURLY_KINDS)]))
    return plan


# The real pool's tokens as the market view's assets, as a Polygon deployment configures
# them: with one pool there is no market to move and no peg to break, so the view must stay
# silent, and the pool's price anomalies wait a slice for it.
POLYGON_ASSETS = [
    {"address": "0x2791bca1f2de4661ed88a30c99a7a9449aa84174", "symbol": "USDC", "decimals": 6,
     "peg": "USD"},
    {"address": "0x7ceb23fd6bc0add59e62ac25578270cff1b9f619", "symbol": "WETH", "decimals": 18,
     "peg": "ETH"},
]  # fmt: skip


def replay_day(events: Path, work: Path, model: Path) -> dict[str, np.ndarray]:
    """Score a recorded day with ``model`` (the market view on); its chain windows as
    columns."""
    shutil.rmtree(work, ignore_errors=True)
    settings = Settings(state_dir=work).with_sections(
        model={"path": model}, market=MarketSettings(assets=POLYGON_ASSETS)
    )
    build_replay_pipeline(settings, batch_options(flags=[]), events).run().wait_until_finish()
    return chain_windows(open_warehouse(settings))


def scored_event_share(recording: Recording, windows: dict[str, np.ndarray]) -> float:
    """Share of the recording's logs whose block time falls inside a scored window."""
    starts, ends = windows["start"], windows["end"]
    order = np.argsort(starts)
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    stamps = np.array([recording.timestamp(int(log["blockNumber"], 16)) for log in recording.logs])
    # The last window starting at or before each event covers it if it ends after it.
    at = np.searchsorted(starts, stamps, side="right") - 1
    covered = (at >= 0) & (ends[np.maximum(at, 0)] > stamps)
    return float(covered.mean())


def detection(
    windows: dict[str, np.ndarray],
    flagged: np.ndarray,
    settings: Settings,
    incidents: Sequence[SplicedIncident] = (),
    threads: list[AlertThread] | None = None,
) -> IncidentDetection:
    """The alerts (``threads`` the pipeline opened, or else the flags threaded as the
    pipeline threads them) against the spliced incidents."""
    labels = [
        LabelledIncident(
            incident.label_id,
            incident.pool,
            incident.kind,
            datetime.fromtimestamp(incident.first_timestamp, UTC),
            datetime.fromtimestamp(incident.last_timestamp, UTC),
        )  # fmt: skip
        for incident in incidents
    ]
    pipeline = settings.pipeline
    # Kinds are the pipeline's: known where it opened the threads (not for the rules).
    scores, kinds = (windows.get("score"), windows.get("kind")) if threads else (None, None)
    return incident_detection(
        windows["pool"], windows["start"], windows["end"], flagged, labels,
        pipeline.current_slices * pipeline.slice_s, pipeline.alert_cooldown_s, threads,
        scores, kinds,
    )  # fmt: skip


def bootstrap(work: Path, market: Path | None) -> Path:
    """The first model ``dexwatch run`` trains when it has none (simulated traffic), with
    the settings of ``market`` (a config file) when given."""
    model = work / "default.joblib"
    settings = bootstrap_settings(
        work / "bootstrap", BOOTSTRAP_SEED, market, model={"path": str(model)}
    )
    print(f"bootstrapping the default model ({settings.model.bootstrap_hours:g} h)", flush=True)
    bootstrap_model(settings, hours=settings.model.bootstrap_hours, genesis_timestamp=GENESIS)
    return model


def feature_rows(windows: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """The windows' features as the rows training takes."""
    columns = [windows[name] for name in FEATURE_NAMES]
    return [dict(zip(FEATURE_NAMES, values, strict=True)) for values in zip(*columns, strict=True)]


def train_on(windows: dict[str, np.ndarray], path: Path) -> Path:
    """A model trained on real windows, as ``dexwatch train`` trains it."""
    train_detector(feature_rows(windows)).save(path)
    return path


Scored = tuple[dict[str, np.ndarray], np.ndarray, list[AlertThread] | None]


def replayed(events: Path, work: Path, model: Path) -> dict[str, Scored]:
    """A recording scored by ``model`` (the model's own alerts) and by the rules on the
    same windows (threaded as the pipeline threads)."""
    windows = replay_day(events, work, model)
    return {
        "model": (
            windows,
            windows["is_anomaly"] > 0,
            opened_threads(open_warehouse(Settings(state_dir=work))),
        ),
        "rule": (windows, rule_flags(windows), None),
    }


def before_detector(before: Path, events: dict[str, Path]) -> dict[str, dict[str, Scored]]:
    """The detector before this work, from a checkout of it (bench/_before.py): per
    detector ('before_default', 'before_real'), per recording, its scored windows."""
    others = {name: path for name, path in events.items() if name != TUNING_DAY}
    scored = score_before(before, WORK / "before", others, tuning=events[TUNING_DAY])
    return {
        f"before_{detector}": {
            name: (windows, windows["is_anomaly"] > 0, threads)
            for name, (windows, threads) in by_recording.items()
        }
        for detector, by_recording in scored.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="the default model (default: bootstrap one)")
    parser.add_argument("--market", type=Path, help="simulator settings for the bootstrap")
    parser.add_argument(
        "--before", type=Path, help="a checkout of the detector before this work, scored beside"
    )
    args = parser.parse_args()
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    models = {"default": args.model or bootstrap(WORK, args.market)}
    settings = Settings()

    print("recording the days, and the held-out days with incidents spliced in", flush=True)
    recordings = {day: open_recording(REAL_LOGS / FILE.format(day=day)) for day in DAYS}
    events = {day: record(recordings[day], WORK / day / "recording") for day in DAYS}
    incidents = {}
    for day in HELD_OUT_DAYS:
        recording = recordings[day]
        spliced, incidents[day] = splice(recording, incident_plan(recording), SPLICE_SEEDS[day])
        events[f"{day}-spliced"] = record(spliced, WORK / f"{day}-spliced" / "recording")
        middle = recording.block_at(
            (recording.timestamp(recording.first_block) + recording.timestamp(recording.last_block))
            / 2
        )
        # And a fresh pool's rug a quarter of the day in: a pool of its own beside the real one.
        quarter = recording.block_at(recording.timestamp(recording.first_block) + 6 * 3600)
        slow, incidents[f"{day}-slow"] = splice(
            recording, [(middle, "slow-drain"), (quarter, "fresh-pool-rug")], SPLICE_SEEDS[day]
        )
        events[f"{day}-slow"] = record(slow, WORK / f"{day}-slow" / "recording")
    tuning_windows = replay_day(
        events[TUNING_DAY], WORK / TUNING_DAY / "default", models["default"]
    )
    models["real"] = train_on(tuning_windows, WORK / "real.joblib")

    scored: dict[str, dict[str, Scored]] = {"default": {}, "real": {}, "rule": {}}
    for name, path in events.items():
        for model_name, model in models.items():
            results = replayed(path, WORK / name / model_name, model)
            scored[model_name][name] = results["model"]
            if model_name == "real":
                scored["rule"][name] = results["rule"]
        print(f"  {name}: scored", flush=True)
    if args.before is not None:
        print(f"scoring the detector before this work ({args.before})", flush=True)
        scored.update(before_detector(args.before, events))

    figures: dict[str, dict] = {}
    details: dict[str, list[str]] = {}
    for detector, by_recording in scored.items():
        label = LABELS[detector]
        for prefix, days in (("tuning_", (TUNING_DAY,)), ("", HELD_OUT_DAYS)):
            if not all(day in by_recording for day in days):
                continue  # the detector before this work is not scored on its tuning day
            false_alerts = []
            for day in days:
                windows, flagged, threads = by_recording[day]
                found = detection(windows, flagged, settings, threads=threads)
                false_alerts += [
                    explained(a, windows, flagged, named=threads is not None)
                    for a in found.false_alerts
                ]
            figure = f"{prefix}{label}false_alerts_per_pool_day"
            figures[figure] = {
                "value": round(len(false_alerts) / len(days), 3),
                "unit": "alert threads per pool-day",
            }
            if false_alerts:
                details[figure] = false_alerts
            if detector in ("real", "before_real"):
                shares = [scored_event_share(recordings[day], by_recording[day][0]) for day in days]
                figures[f"{prefix}{label}scored_event_share"] = {
                    "value": round(float(np.mean(shares)), 4),
                    "unit": "share of events",
                }
        if detector == "default":
            figures["bootstrap_false_alerts_real_days"] = {
                "value": sum(
                    detection(
                        *by_recording[day][:2], settings, threads=by_recording[day][2]
                    ).false_threads
                    for day in DAYS
                ),
                "unit": f"alert threads over {len(DAYS)} real days, target <= 1",
            }
        outcomes, kinds = [], []
        for day in HELD_OUT_DAYS:
            for name, spliced_as in ((day, f"{day}-spliced"), (f"{day}-slow", f"{day}-slow")):
                windows, flagged, threads = by_recording[spliced_as]
                found = detection(windows, flagged, settings, incidents[name], threads)
                outcomes += found.outcomes
                kinds += found.kinds
        figures.update(
            spliced_figures(label, outcomes, recordings[HELD_OUT_DAYS[0]].pool.block_time_s)
        )
        if kinds:  # the pipeline's own kinds (the rule names none)
            figures[f"{label}spliced_kind_accuracy"] = {
                "value": round(sum(a == b for a, b in kinds) / len(kinds), 4),
                "unit": f"share of {len(kinds)} detected incidents whose kind is theirs",
            }
    errors = [
        error
        for day in HELD_OUT_DAYS
        for error in sandwich_value_error(WORK / f"{day}-spliced" / "real", incidents[day])
    ]
    figures["spliced_sandwich_value_error"] = {
        "value": round(max(errors), 6),
        "unit": f"largest relative error of the take over {len(errors)} runs of sandwiches",
    }
    path = write_results(
        "real_traffic",
        figures,
        note=f"settings chosen on {TUNING_DAY}; reported on {' and '.join(HELD_OUT_DAYS)}; "
        f"the 'real' model trained on {TUNING_DAY}; incidents spliced one an hour at seeds "
        f"{SPLICE_SEEDS}; no senders or balances in the recordings; {READ_HELD_OUT}"
        + (f"; before: {args.before.name}" if args.before else "")
        + (f"; default model: {args.model}" if args.model else "")
        + (f"; bootstrap market: {args.market.name}" if args.market else "")
        + f"; {time.monotonic() - started:.0f} s",
        details=details,
    )
    print(f"wrote {path}")


def sandwich_value_error(work: Path, incidents: Sequence[SplicedIncident]) -> list[float]:
    """Per spliced run of sandwiches: |taken by the windows' patterns - implied| / implied,
    the patterns read from the warehouse of a replay (``work``), each sandwich once."""
    warehouse = open_warehouse(Settings(state_dir=work))
    rows = warehouse.query("select patterns from pool_scores where patterns is not null").rows
    taken = {(s.block_number, s.front_tx): s.extracted for (p,) in rows for s in sandwiches_in(p)}
    errors = []
    for incident in incidents:
        if incident.kind == "sandwich":
            found = sum(v for (block, _), v in taken.items()
                        if incident.first_block <= block <= incident.last_block)  # fmt: skip
            errors.append(abs(found - incident.size) / incident.size)
    return errors


def explained(
    alert: AlertThread, windows: dict[str, np.ndarray], flagged: np.ndarray, named: bool
) -> str:
    """An alert in words: when, how long, and (``named``: the pipeline's own alert) its most
    anomalous window's kind and score, or else how many windows were flagged."""
    inside = (
        flagged
        & (windows["pool"] == alert.pool)
        & (windows["start"] >= alert.start)
        & (windows["end"] <= alert.end)
    )
    at = np.flatnonzero(inside)
    if named and at.size and "kind" in windows:
        worst = at[np.argmin(windows["score"][at])]
        what = f"{windows['kind'][worst]} at score {windows['score'][worst]:.2f}"
    else:
        what = f"{at.size} windows flagged"
    when = datetime.fromtimestamp(alert.start, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{when} UTC, {(alert.end - alert.start) / 60:.1f} min: {what}"


def spliced_figures(label: str, outcomes: list, block_s: float) -> dict[str, dict]:
    drains = [o for o in outcomes if o.kind == "liquidity-drain"]
    delays = [o.delay_s for o in outcomes if o.delay_s is not None]
    figures = {
        f"{label}spliced_recall": {
            "value": round(sum(o.detected for o in outcomes) / len(outcomes), 4),
            "unit": f"share of {len(outcomes)} incidents",
        },
        f"{label}spliced_drain_recall": {
            "value": round(sum(o.detected for o in drains) / len(drains), 4),
            "unit": f"share of {len(drains)} drains of 50-80 % of the in-range liquidity",
        },
        f"{label}median_delay_blocks": {
            "value": round(float(np.median(delays)) / block_s, 1) if delays else None,
            "unit": "blocks from the incident's first block to its first alert's window end",
        },
    }
    for kind in KINDS:
        of_kind = [o for o in outcomes if o.kind == kind]
        name = kind.replace("-", "_")
        figures[f"{label}spliced_recall_{name}"] = {
            "value": round(sum(o.detected for o in of_kind) / len(of_kind), 4),
            "unit": f"share of {len(of_kind)}",
        }
        kind_delays = [o.delay_s for o in of_kind if o.delay_s is not None]
        figures[f"{label}median_delay_blocks_{name}"] = {
            "value": round(float(np.median(kind_delays)) / block_s, 1) if kind_delays else None,
            "unit": "blocks from the incident's first block to its first alert's window end",
        }
    return figures


if __name__ == "__main__":
    main()
