"""The detector as it was before real-traffic detection (issue 13), on the same recordings:
run with a checkout of that commit first on PYTHONPATH (``bench/_before.py`` starts it so),
it uses only what that checkout offers.

It bootstraps that checkout's first model (the simulator, seed 21, as ``dexwatch run``
does), with ``--tuning`` trains its model on that recording's windows (``dexwatch train``'s
fitting), and replays each recording with each, writing per replay the scored windows
(pool, start, end, is_anomaly) and the alert threads its pipeline opened to
``<work>/<name>.json``. Recordings are copied without ``tx_from``, a field its messages did
not have yet.

    PYTHONPATH=OLD python bench/_before_detector.py --work DIR [--tuning FILE] NAME=FILE ...
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import orjson

from beam_pipelines.options import batch_options
from beam_pipelines.pipeline import build_replay_pipeline
from dexwatch.app.workflows.bootstrap import bootstrap_model
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import open_warehouse
from infra.local import processes
from infra.local.settings import load_local_settings
from model.chain_window import train_detector

BOOTSTRAP_SEED = 21


def without_senders(events: Path, into: Path) -> Path:
    into.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in events.read_bytes().splitlines():
        message = orjson.loads(line)
        message.pop("tx_from", None)
        lines.append(orjson.dumps(message))
    into.write_bytes(b"\n".join(lines) + b"\n")
    return into


def replay(events: Path, work: Path, model: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    settings = Settings(state_dir=work).with_sections(model={"path": model})
    build_replay_pipeline(settings, batch_options(flags=[]), events).run().wait_until_finish()
    warehouse = open_warehouse(settings)
    anomalies = bool(
        warehouse.query(
            "select 1 from information_schema.tables where table_name = 'anomalies'"
        ).rows
    )  # the pipeline wrote an anomaly
    names = ", ".join(f"s.{name}" for name in FEATURE_NAMES)
    rows = warehouse.query(
        "select s.pool, epoch(s.window_start), epoch(s.window_end), s.is_anomaly, "
        f"{names}, s.score, " + ("coalesce(a.kind, '')" if anomalies else "''")
        + " from pool_scores s"
        + (" left join anomalies a using (window_id)" if anomalies else "")
        + " where s.source = 'chain' order by s.window_end"
    ).rows  # fmt: skip
    threads = []
    if anomalies:
        threads = warehouse.query(
            "select pool, min(epoch(window_start)), max(epoch(window_end)) from anomalies "
            "where source = 'chain' group by pool, alert_id"
        ).rows
    return {
        "windows": [list(row[:-2]) for row in rows],
        "kinds": [list(row[-2:]) for row in rows],  # each window's score and anomaly kind
        "threads": [list(t) for t in threads],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--tuning", type=Path, help="a recording to train a model on, too")
    parser.add_argument("--node-modules", type=Path, required=True, help="for the simulator")
    parser.add_argument("recordings", nargs="+", help="NAME=FILE: recordings to score")
    args = parser.parse_args()
    work: Path = args.work
    shutil.rmtree(work, ignore_errors=True)
    port = processes.free_port()
    default = work / "default.joblib"
    settings = load_local_settings(
        state_dir=str(work / "bootstrap"),
        local={"anvil_port": port, "node_modules": str(args.node_modules)},
        chain={"rpc_urls": [f"http://127.0.0.1:{port}"]},
        simulator={"seed": BOOTSTRAP_SEED},
        model={"path": str(default)},
    )
    bootstrap_model(settings, hours=settings.model.bootstrap_hours)
    models = {"default": default}
    if args.tuning is not None:
        tuning = without_senders(args.tuning, work / "tuning.jsonl")
        windows = replay(tuning, work / "tuning", default)["windows"]
        models["real"] = work / "real.joblib"
        train_detector([dict(zip(FEATURE_NAMES, row[4:], strict=True)) for row in windows]).save(
            models["real"]
        )
    for item in args.recordings:
        name, events = item.split("=", 1)
        copied = without_senders(Path(events), work / f"{name}.jsonl")
        scored = {
            detector: replay(copied, work / name / detector, model)
            for detector, model in models.items()
        }
        (work / f"{name}.json").write_bytes(orjson.dumps(scored))
        print(f"  before: {name} scored", flush=True)


if __name__ == "__main__":
    main()
