"""Injected incidents on the local chain: how well dexwatch's alerts find them, beside a
fixed-threshold rule on the same windows.

One fixed simulated period per trial, fixed seeds: a private anvil with the real contracts
and the market simulator (blocks one slice apart, as in
tests/integration/test_false_alarms.py), with
incidents injected into every pool in rounds of ``--gap-hours`` (pools take turns, with
normal trading between; incident blocks as far apart as in live runs): first ``--rounds``
rounds of the kinds that leave a pool as it was (wash trading, price manipulation,
runs of sandwiches, repeated round trips, in turn across pools), then a market round (a
market move, one asset's move, a depeg), then one round of liquidity drains, rug pulls,
slow drains, quiet pools' drains and fresh pools' rugs (in turn across pools, shifted in the
next trial; a fresh pool's rug launches a pool of its own beside the one it names), each
followed by the rest of the round as aftermath. The real
chain publisher records it, the real pipeline replays it in batch into a warehouse, scored by a
first model bootstrapped from other normal traffic (another chain, another seed; the
training `dexwatch run` does when it has no model, on blocks one slice apart instead of
live-like ones, as in tests/integration/test_false_alarms.py), or by ``--model``.

dexwatch's alerts are the threads the pipeline itself opened (its anomalies table: a
drained pool's remains stay in the drain's thread); the rule's flagged windows are threaded
by the same cooldown (model.evaluation.alert_threads). Then
(model.evaluation.incident_detection): ``recall`` (incidents with a flagged window holding
part of them), ``precision`` (alerts that overlap an incident of their pool),
``false_alerts_per_pool_week``, ``median_delay_s`` (event time from an incident's first
block to the end of the first flagged window; live alerts fire earlier, on early panes: see
bench/latency.py); ``rule_recall``, ``rule_precision`` (and the rule's other figures) for
model.rules. Writes bench/results/incidents.json.

With ``--before CHECKOUT`` (a worktree of the commit before this work), that checkout's own
first model and pipeline score the same recordings (``bench/_before.py``): ``before_...``.
``--trials 21`` gives 5 pool-weeks of scored traffic.

With ``--market FILE`` (a config file, e.g. infra/local/markets/polygon-busy-pool.yaml), the
trials and the first model's bootstrap run that market's simulator settings (its traders,
providers and rhythm; history blocks still one slice apart, incidents at its live block
time), in a work folder of their own, and the figures go to
``bench/results/incidents_<market>.json``.

    python bench/incidents.py [--trials 4] [--rounds 4] [--gap-hours 1.5] [--model PATH]
        [--before CHECKOUT] [--market FILE] [--held-out]

``--replay-only`` replays the last run's recordings, labels and first model through the
pipeline of this checkout, without mining (minutes instead of half an hour; the simulator's
own changes since are not in it). ``--held-out`` mines the next ``--trials`` seeds instead
of the first ones, to report on periods no setting was chosen on
(``incidents[_<market>]_held_out.json``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from _before import score_before
from _private_chain import GENESIS, private_chain_settings
from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from beam_pipelines.options import batch_options  # noqa: E402
from beam_pipelines.pipeline import build_replay_pipeline  # noqa: E402
from dexwatch.app.workflows.bootstrap import bootstrap_model  # noqa: E402
from dexwatch.core.schemas.labels import IncidentLabel  # noqa: E402
from dexwatch.core.schemas.tables import INCIDENT_LABELS  # noqa: E402
from dexwatch.core.settings import PipelineSettings  # noqa: E402
from dexwatch.core.warehouse import open_warehouse  # noqa: E402
from infra.local import processes, stack  # noqa: E402
from infra.local.deploy import deploy_local_contracts  # noqa: E402
from infra.local.incidents import inject  # noqa: E402
from infra.local.market import MarketSimulator  # noqa: E402
from infra.local.market_events import inject_market_event  # noqa: E402
from infra.local.settings import LocalSettings, SimulatorSettings  # noqa: E402
from model.evaluation import (  # noqa: E402
    AlertThread,
    IncidentDetection,
    LabelledIncident,
    chain_windows,
    incident_detection,
    market_windows,
    opened_threads,
)
from model.rules import describe_rules, rule_flags  # noqa: E402
from publishers.chain import run as publish_chain  # noqa: E402

WORK = ROOT / "bench" / "work" / "incidents"
BOOTSTRAP_SEED = 21
# 21 trials of 8 hours and 5 pools: 5 pool-weeks of scored traffic (--trials 21).
TRIAL_SEEDS = tuple(range(31, 52))
REVERSIBLE = ("wash-trading", "price-manipulation", "sandwich", "round-trips")
DESTRUCTIVE = ("liquidity-drain", "rug-pull", "slow-drain", "quiet-pool-drain", "fresh-pool-rug")
# The market round, between them: every floating token's move, one token's move alone (in
# turn across trials), one stablecoin's depeg (in turn, the numeraire USDC among them).
MARKET_ROUND = ("market-move", "asset-move", "depeg")
LONE_ASSETS = ("WBTC", "UNI", "WETH")
DEPEGGED = ("DAI", "USDT", "USDC")
WARMUP_HOURS = 0.5


def _settings(state: Path, seed: int, model: Path, market: dict) -> LocalSettings:
    return private_chain_settings(
        state, seed, PipelineSettings().slice_s, market,
        model={"path": str(model)}, warehouse={"path": str(state / "warehouse.duckdb")},
    )  # fmt: skip


def _market(path: Path | None) -> dict:
    """A config file's simulator settings (none: the default market's)."""
    return yaml.safe_load(path.read_text()).get("simulator", {}) if path else {}


def mine_trial(
    settings: LocalSettings, trial: int, rounds: int, gap_hours: float, live_block_s: float
) -> list:
    """Mine one trial's period with its incidents, their blocks ``live_block_s`` apart;
    returns their labels."""
    processes.start(stack.anvil_spec(settings, GENESIS), settings.state_dir)
    try:
        deployment = deploy_local_contracts(settings, start_timestamp=GENESIS + 1)
        deployment.save(settings.deployment_path)
        simulator = MarketSimulator(settings, deployment)
        simulator.generate_history(WARMUP_HOURS)
        # Incident blocks as far apart as in live runs: how fast an incident unfolds is part
        # of what it looks like (a wash-trading burst's swaps per slice).
        live_blocks = settings.with_sections(simulator={"block_interval_s": live_block_s})
        labels: list[IncidentLabel] = []
        for round_ in range(rounds + 1):
            if round_ == rounds:
                labels += _market_round(live_blocks, deployment, simulator, trial, gap_hours)
            kinds = REVERSIBLE if round_ < rounds else DESTRUCTIVE
            # Pools take turns, with normal trading between: every pool keeps its baseline.
            for index, pool in enumerate(deployment.pools):
                kind = kinds[(index + round_ + trial) % len(kinds)]
                labels.append(
                    inject(live_blocks, deployment, kind, pool.name, history=True,
                           between=simulator.fill)
                )  # fmt: skip
                simulator.generate_history(gap_hours / len(deployment.pools))
            print(f"  round {round_ + 1}/{rounds + 1}: {' and '.join(kinds)}", flush=True)
        publish_chain(
            settings.with_deployment(),
            once=True,
            record_to=settings.state_dir / "recording",
        )
    finally:
        processes.stop(settings.state_dir, stack.ANVIL)
    return labels


def recorded_labels(settings: LocalSettings) -> list[IncidentLabel]:
    """The labels of a trial mined before (``--replay-only``); its warehouse is emptied for
    the replay (the recording stays)."""
    path = settings.warehouse_path
    if not path.exists():
        raise SystemExit(f"no earlier run to replay: {path} is missing")
    rows = open_warehouse(settings).query("select * from incident_labels")
    labels = [IncidentLabel(**dict(zip(rows.columns, row, strict=True))) for row in rows.rows]
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    return labels


def _market_round(
    settings: LocalSettings, deployment, simulator: MarketSimulator, trial: int, gap_hours: float
) -> list[IncidentLabel]:
    """A market move, a lone token's move and a depeg, ``gap_hours`` apart."""
    labels = []
    for kind in MARKET_ROUND:
        asset = {"asset-move": LONE_ASSETS, "depeg": DEPEGGED}.get(kind, (None,))
        labels += inject_market_event(
            settings, deployment, kind, asset[trial % len(asset)], simulator=simulator
        )
        simulator.generate_history(gap_hours)
    print(f"  market round: {' and '.join(MARKET_ROUND)}", flush=True)
    return labels


def market_move_alerts(threads: list[AlertThread], incidents: list, after_s: float) -> list[int]:
    """Per market move, the alert threads any pool or scope opened within it (its blocks
    and ``after_s`` after): one is the market's alert alone."""
    counts = []
    for incident in incidents:
        if incident.kind == "market-move":
            first = incident.first_timestamp.timestamp()
            last = incident.last_timestamp.timestamp() + after_s
            counts.append(sum(first - 60 <= t.start <= last for t in threads))
    return counts


def replay(
    settings: LocalSettings, labels: list
) -> tuple[dict[str, np.ndarray], list, list[AlertThread]]:
    """Replay the recording into the trial's warehouse; returns its chain windows as
    columns, the incidents, and the alert threads the pipeline opened."""
    warehouse = open_warehouse(settings)
    warehouse.upsert(INCIDENT_LABELS, [label.model_dump() for label in labels])
    events = settings.state_dir / "recording" / "pool-events.jsonl"
    build_replay_pipeline(
        settings.with_deployment(), batch_options(), events
    ).run().wait_until_finish()
    columns = chain_windows(warehouse)
    threads = opened_threads(warehouse)
    incidents = [
        LabelledIncident(
            label.label_id, label.pool, label.kind, label.first_timestamp, label.last_timestamp
        )  # fmt: skip
        for label in labels
    ]
    return columns, incidents, threads


def _merge(results: list[IncidentDetection]) -> IncidentDetection:
    return IncidentDetection(
        outcomes=[o for r in results for o in r.outcomes],
        threads=sum(r.threads for r in results),
        false_alerts=[a for r in results for a in r.false_alerts],
        pool_weeks=sum(r.pool_weeks for r in results),
        kinds=[k for r in results for k in r.kinds],
    )


def _in_remains(detection: IncidentDetection, incidents: list) -> int:
    """False alerts in what a drain or rug pull left of its pool (after the incident)."""
    ruined = {}
    for incident in incidents:
        if incident.kind in DESTRUCTIVE:
            ruined[incident.pool] = incident.last_timestamp.timestamp()
    return sum(a.pool in ruined and a.start > ruined[a.pool] for a in detection.false_alerts)


def _figures(prefix: str, detection: IncidentDetection, in_remains: int) -> dict[str, dict]:
    figures = {
        "recall": (detection.recall, "share of incidents"),
        "precision": (detection.precision, "share of alerts"),
        "false_alerts_per_pool_week": (detection.false_alerts_per_pool_week, "alerts"),
        "median_delay_s": (detection.median_delay_s, "s (event time)"),
        "false_alerts": (detection.false_threads, "alerts"),
        "false_alerts_in_drained_pools": (in_remains, "alerts"),
        "kind_accuracy": (
            detection.kind_accuracy,
            f"share of {len(detection.kinds)} detected incidents",
        ),
    }
    for kind, summary in detection.by_kind().items():
        key = kind.replace("-", "_")
        figures[f"recall_{key}"] = (summary["recall"], f"share of {summary['incidents']}")
        figures[f"median_delay_s_{key}"] = (summary["median_delay_s"], "s (event time)")
    return {
        f"{prefix}{name}": {"value": round(value, 4), "unit": unit}
        for name, (value, unit) in figures.items()
        if value is not None
    }


def _print(name: str, detection: IncidentDetection, in_remains: int) -> None:
    def show(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    print(
        f"\n{name}: recall {show(detection.recall, '.2f')}, "
        f"precision {show(detection.precision, '.2f')} "
        f"({detection.threads} alerts, {detection.false_threads} false, {in_remains} of them "
        "in what a drain or rug pull left), "
        f"{show(detection.false_alerts_per_pool_week, '.1f')} false alerts per pool-week, "
        f"median delay {show(detection.median_delay_s, '.0f')} s"
    )
    for kind, summary in detection.by_kind().items():
        print(
            f"  {kind:<20} recall {show(summary['recall'], '.2f')} of {summary['incidents']}, "
            f"median delay {show(summary['median_delay_s'], '.0f')} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, choices=range(1, len(TRIAL_SEEDS) + 1))
    parser.add_argument("--rounds", type=int, default=4, help="rounds of reversible incidents")
    parser.add_argument("--gap-hours", type=float, default=1.5)
    parser.add_argument("--model", type=Path, help="a saved detector (default: bootstrap one)")
    parser.add_argument(
        "--before", type=Path, help="a checkout of the detector before this work, scored beside"
    )
    parser.add_argument("--market", type=Path, help="a config file's simulator settings")
    parser.add_argument(
        "--replay-only", action="store_true",
        help="replay the last run's recordings (its labels and first model) without mining",
    )  # fmt: skip
    parser.add_argument(
        "--held-out", action="store_true",
        help="the next --trials seeds instead of the first ones (figures to *_held_out.json)",
    )  # fmt: skip
    args = parser.parse_args()
    first = args.trials if args.held_out else 0
    if first + args.trials > len(TRIAL_SEEDS):
        parser.error(f"--held-out takes at most {len(TRIAL_SEEDS) // 2} trials")
    seeds = TRIAL_SEEDS[first : first + args.trials]

    results_name = "incidents" + (f"_{args.market.stem.replace('-', '_')}" if args.market else "")
    results_name += "_held_out" if args.held_out else ""
    work = WORK.parent / results_name
    market = _market(args.market)
    live_block_s = market.get("block_interval_s", SimulatorSettings().block_interval_s)
    if not args.replay_only:
        shutil.rmtree(work, ignore_errors=True)
    started = time.monotonic()
    model = args.model or work / "model" / "bootstrap.joblib"
    if args.model is None and not args.replay_only:
        base = _settings(work / "bootstrap", BOOTSTRAP_SEED, model, market)
        print(f"bootstrapping a first model ({base.model.bootstrap_hours:g} h, seed "
              f"{BOOTSTRAP_SEED})", flush=True)  # fmt: skip
        bootstrap_model(base, hours=base.model.bootstrap_hours, genesis_timestamp=GENESIS)
    model_results, rule_results, trials = [], [], {}
    in_remains = {"dexwatch": 0, "rule": 0, "before": 0}
    moves_alerts: list[int] = []
    for trial in range(args.trials):
        settings = _settings(work / f"trial-{trial}", seeds[trial], model, market)
        doing = "replaying" if args.replay_only else "mining"
        print(f"trial {trial + 1}/{args.trials} (seed {seeds[trial]}): {doing}", flush=True)
        if args.replay_only:
            labels = recorded_labels(settings)
        else:
            labels = mine_trial(settings, trial, args.rounds, args.gap_hours, live_block_s)
        print("  replaying through the pipeline", flush=True)
        columns, incidents, threads = replay(settings, labels)
        after_s = settings.pipeline.current_slices * settings.pipeline.slice_s
        cooldown_s = settings.pipeline.alert_cooldown_s
        # dexwatch's windows with its market view's findings; the rule has no market view.
        found = market_windows(open_warehouse(settings))
        seen = {k: np.concatenate([columns[k], found[k]]) for k in found}
        moves_alerts += market_move_alerts(threads, incidents, after_s)
        for name, results, cols, flagged, opened in (
            ("dexwatch", model_results, seen, seen["is_anomaly"].astype(bool), threads),
            ("rule", rule_results, columns, rule_flags(columns), None),
        ):
            detection = incident_detection(
                cols["pool"], cols["start"], cols["end"], flagged, incidents, after_s,
                cooldown_s, threads=opened, scores=cols["score"],
                kinds=cols["kind"] if opened else None,
            )  # fmt: skip
            results.append(detection)
            in_remains[name] += _in_remains(detection, incidents)
        recording = settings.state_dir / "recording" / "pool-events.jsonl"
        trials[f"trial-{trial}"] = (recording, incidents, after_s, cooldown_s)
    dexwatch, rule = _merge(model_results), _merge(rule_results)
    _print("dexwatch", dexwatch, in_remains["dexwatch"])
    _print(f"rule ({describe_rules()})", rule, in_remains["rule"])
    figures = {
        **_figures("", dexwatch, in_remains["dexwatch"]),
        **_figures("rule_", rule, in_remains["rule"]),
    }
    if args.before is not None:
        print(f"scoring the detector before this work ({args.before})", flush=True)
        recordings = {name: trial[0] for name, trial in trials.items()}
        scored = score_before(args.before, work / "before", recordings)["default"]
        before_results = []
        for name, (_, incidents, after_s, cooldown_s) in trials.items():
            windows, threads = scored[name]
            detection = incident_detection(
                windows["pool"], windows["start"], windows["end"], windows["is_anomaly"] > 0,
                incidents, after_s, cooldown_s, threads=threads,
                scores=windows.get("score"), kinds=windows.get("kind"),
            )  # fmt: skip
            before_results.append(detection)
            in_remains["before"] += _in_remains(detection, incidents)
        before = _merge(before_results)
        _print(f"before ({args.before.name})", before, in_remains["before"])
        figures.update(_figures("before_", before, in_remains["before"]))
    by_kind = dexwatch.by_kind()
    if "asset-move" in by_kind:
        figures["isolated_move_alerted"] = {
            "value": by_kind["asset-move"]["recall"],
            "unit": f"share of {by_kind['asset-move']['incidents']} lone 8 % moves alerted",
        }
    if moves_alerts:
        figures["market_move_alerts_per_event"] = {
            "value": round(float(np.mean(moves_alerts)), 4),
            "unit": f"alerts per market move ({len(moves_alerts)}; max {max(moves_alerts)})",
        }
    figures["incidents"] = {"value": len(dexwatch.outcomes), "unit": "incidents"}
    figures["pool_weeks"] = {"value": round(dexwatch.pool_weeks, 4), "unit": "pool-weeks"}
    path = write_results(
        results_name,
        figures,
        note=f"{args.trials} trials x 8 pools, {args.rounds} reversible rounds + a market "
        "round + 1 destructive, "
        f"{args.gap_hours:g} h apart"
        + (f"; market: {args.market.name}" if args.market else "; the default market")
        + (f"; before: {args.before.name}" if args.before else "")
        + f"; seeds {seeds[0]}-{seeds[-1]}"
        + ("; replayed the last run's recordings" if args.replay_only else "")
        + f"; {time.monotonic() - started:.0f} s",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
