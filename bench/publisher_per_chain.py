"""Chain publishers for several chains: a process per chain, or one process for all.

Two anvils (bench/_two_chains.py: "local", 2 s blocks, and "chain-31338", 12 s blocks, the
real contracts at the same addresses), the market simulator mining ``--hours`` of history on
each. Then the publisher (``publishers.chain.run``, recording to files instead of Pub/Sub,
transaction senders read as by default) publishes each chain's whole history from a fresh
checkpoint, two ways, rounds alternating:

- ``processes``: one process per chain (``dexwatch publish chain --chain NAME``'s shape, what
  ``dexwatch run`` and Terraform start), the two at once;
- ``threads``: one process for both, a thread per chain.

Each child process is a fresh interpreter that imports the publisher, runs, and reports its
peak RSS (``ru_maxrss``) and the events it recorded; the two ways must record the same events.
Figures (bench/results/publisher_per_chain.json): ``processes_s`` and ``threads_s`` (median
wall time until both chains are published, the interpreters' start included),
``threads_vs_processes`` (their ratio: above 1, one process is slower), ``rss_mb_per_process``
(a one-chain process's peak RSS, the mean of the two), ``rss_mb_one_process`` (the process
with both chains) and ``rss_mb_saved_per_chain`` (what one process for all saves per chain
beyond the first: two processes' RSS minus one's), ``events``.

    .venv/bin/python bench/publisher_per_chain.py [--hours 0.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import yaml
from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _two_chains import CHAINS, anvil, chain_section  # noqa: E402

WORK = ROOT / "bench" / "work" / "publisher_per_chain"


def child(config: Path, names: list[str], record_to: Path) -> None:
    """Publish each chain of ``names`` once to the head, a thread each; print the process's
    peak RSS (MB) and the events recorded per chain, as JSON."""
    from infra.local.settings import load_local_settings
    from publishers.chain import run

    settings = load_local_settings(config)
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def publish(name: str) -> None:
        try:
            stats = run(settings.for_chain(name), once=True, record_to=record_to / name)
            counts[name] = stats.events
        except BaseException as err:  # noqa: BLE001 - reported by the parent
            errors.append(err)

    threads = [threading.Thread(target=publish, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rss_mb": rss_mb, "events": counts}))


def _config(run_dir: Path, stacks: dict) -> Path:
    """A settings file for both chains, with state (checkpoints) of its own: a fresh start."""
    chains = [
        {
            **chain_section(name, local.local.anvil_port),
            "factories": [f.model_dump() for f in deployment.factories],
        }
        for name, (local, deployment) in stacks.items()
    ]
    run_dir.mkdir(parents=True)
    config = run_dir / "dexwatch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(run_dir / "state"),
                "chains": chains,
                "pipeline": {"slice_s": 12},
                "local": {"node_modules": str(ROOT / "node_modules")},
            }
        )
    )
    return config


def _start(config: Path, names: list[str], record_to: Path) -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", str(config), str(record_to), *names]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"a publisher process failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def one_run(way: str, run_dir: Path, stacks: dict) -> tuple[float, list[dict]]:
    """(seconds until both chains are published, each process's report)."""
    config = _config(run_dir, stacks)
    groups = [[name] for name in CHAINS] if way == "processes" else [list(CHAINS)]
    started = time.perf_counter()
    procs = [_start(config, names, run_dir / "recording") for names in groups]
    reports = [_finish(proc) for proc in procs]
    return time.perf_counter() - started, reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=0.5, help="history mined on each chain")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from infra.local.market import MarketSimulator

    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    seconds: dict[str, list[float]] = {"processes": [], "threads": []}
    rss: dict[str, list[float]] = {"processes": [], "threads": []}
    events: dict[str, dict[str, int]] = {}
    with ExitStack() as anvils:
        stacks = {name: anvils.enter_context(anvil(WORK / name, name)) for name in CHAINS}
        print(f"mining {args.hours:g} h of history on both chains ...", flush=True)
        for stack in stacks.values():
            MarketSimulator(*stack).generate_history(args.hours)
        for round_ in range(args.rounds):
            ways = ("processes", "threads") if round_ % 2 == 0 else ("threads", "processes")
            for way in ways:
                took, reports = one_run(way, WORK / f"{way}-{round_}", stacks)
                recorded = {k: v for report in reports for k, v in report["events"].items()}
                if events.setdefault("recorded", recorded) != recorded:
                    raise RuntimeError(f"{way} recorded {recorded}, not {events['recorded']}")
                seconds[way].append(took)
                rss[way] += [report["rss_mb"] for report in reports]
                peaks = ", ".join(f"{report['rss_mb']:.0f}" for report in reports)
                print(f"  round {round_ + 1} {way}: {took:.1f} s, RSS {peaks} MB", flush=True)
    processes_s, threads_s = (statistics.median(seconds[w]) for w in ("processes", "threads"))
    per_process, one_process = statistics.mean(rss["processes"]), statistics.mean(rss["threads"])
    total = sum(events["recorded"].values())
    figures = {
        "processes_s": {"value": round(processes_s, 2), "unit": "s (median, both chains)"},
        "threads_s": {"value": round(threads_s, 2), "unit": "s (median, both chains)"},
        "threads_vs_processes": {
            "value": round(threads_s / processes_s, 3),
            "unit": "ratio of times (above 1: one process for all is slower)",
        },
        "rss_mb_per_process": {"value": round(per_process, 1), "unit": "MB (one chain)"},
        "rss_mb_one_process": {"value": round(one_process, 1), "unit": "MB (both chains)"},
        "rss_mb_saved_per_chain": {
            "value": round(2 * per_process - one_process, 1),
            "unit": "MB (two processes' peak RSS minus one's)",
        },
        "events": {"value": total, "unit": f"events recorded ({events['recorded']})"},
    }
    note = (
        f"two anvils (2 s and 12 s blocks), {args.hours:g} h of history each, published from "
        f"fresh checkpoints to files, senders read; {args.rounds} rounds alternating; "
        f"{time.monotonic() - started:.0f} s"
    )
    path = write_results("publisher_per_chain", figures, note)
    for name, figure in figures.items():
        print(f"  {name}: {figure['value']} {figure['unit']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[4:], Path(sys.argv[3]))
    else:
        main()
