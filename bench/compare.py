"""Benchmarks of two checkouts side by side: old and new code on the same machine, in the
same run, alternating (old, new, old, new ...) so that the machine's drift falls on both.

Each benchmark writes bench/results/<name>.json in its own checkout; this script reads the
figures after every run (and puts back the file that was there, so that a shortened run
does not replace a checkout's committed figures), keeps each figure's median per side and
writes bench/results/compare_<name>.json with, per figure, old, new and new/old, gathered
with the other benchmarks' comparisons in bench/results/compare.json. A
restructuring that keeps behaviour keeps every ratio between 0.8 and 1.25 (or better: the
direction of "better" is the figure's, so the ratios are shown, not judged).

    python bench/compare.py --old ../old-checkout decode scoring replay memory
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson
from _results import write_results

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(checkout: Path, name: str, args: list[str]) -> dict[str, float]:
    """Run one benchmark of ``checkout`` with its own code first on the path; its figures."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    results = checkout / "bench" / "results" / f"{name}.json"
    committed = results.read_bytes() if results.exists() else None
    started = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, str(checkout / "bench" / f"{name}.py"), *args],
            cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        figures = orjson.loads(results.read_bytes())
    finally:
        if committed is not None:
            results.write_bytes(committed)
    print(f"  {checkout.name}: {name} in {time.perf_counter() - started:.0f} s", flush=True)
    return {
        figure: float(value["value"])
        for figure, value in figures["figures"].items()
        if isinstance(value.get("value"), int | float)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmarks", nargs="+", help="names of bench/<name>.py")
    parser.add_argument("--old", type=Path, required=True, help="the old checkout")
    parser.add_argument("--new", type=Path, default=ROOT, help="the new checkout (this one)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, alternating")
    parser.add_argument("--args", default="", help="name=ARGS;name=ARGS: arguments per benchmark")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.args.split(";") if item)
    for name in args.benchmarks:
        print(f"{name}: {args.rounds} rounds, old and new alternating", flush=True)
        runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        figures: dict[str, dict] = {}
        for _ in range(args.rounds):
            for side, checkout in (("old", args.old), ("new", args.new)):
                runs[side].append(
                    run_benchmark(checkout.resolve(), name, extra.get(name, "").split())
                )
        for figure in runs["new"][0]:
            if not all(figure in run for run in runs["old"]):
                continue
            old = statistics.median(run[figure] for run in runs["old"])
            new = statistics.median(run[figure] for run in runs["new"])
            ratio = new / old if old else (1.0 if new == old else float("inf"))
            print(f"  {figure}: old {old:g}, new {new:g}, new/old {ratio:.3f}", flush=True)
            figures[f"{name}.{figure}.ratio"] = {"value": round(ratio, 4), "unit": "new/old"}
            figures[f"{name}.{figure}.old"] = {"value": old, "unit": "median"}
            figures[f"{name}.{figure}.new"] = {"value": new, "unit": "median"}
        # After each benchmark, so that a comparison cut short keeps what it measured.
        note = (
            f"old {describe(args.old)}, new {describe(args.new)}; {args.rounds} rounds each, "
            f"alternating; arguments: {extra.get(name) or 'the defaults'}"
        )
        print(write_results(f"compare_{name}", figures, note, summary="compare"))


def describe(checkout: Path) -> str:
    """The checkout's commit, short, for the results' note."""
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return f"{checkout.resolve().name} ({commit or 'not a git checkout'})"


if __name__ == "__main__":
    main()
