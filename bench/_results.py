"""What every benchmark writes: bench/results/<name>.json in the project's one format."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine(note: str = "") -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"
    return f"{text}; {note}" if note else text


def write_results(
    name: str,
    figures: dict[str, dict],
    note: str = "",
    summary: str | None = None,
    details: dict[str, list[str]] | None = None,
    keep: tuple[str, ...] = (),
) -> Path:
    """Write the figures ({figure: {"value": number, "unit": text}}) and return the path.

    ``summary`` names a results file that gathers an issue's figures from several
    benchmarks: these figures replace their namesakes there, the others stay. ``details``:
    what lies behind a figure, in words (e.g. each alert counted), under the figure's name.
    ``keep``: figures another benchmark added to this file (``add_figures``), kept as they
    are, with their details."""
    path = RESULTS_DIR / f"{name}.json"
    if keep and path.exists():
        held = orjson.loads(path.read_bytes())
        kept = {k: v for k, v in held["figures"].items() if k in keep}
        held_details = held.get("details", {})
        figures = {**figures, **kept}
        details = {**(details or {}), **{k: held_details[k] for k in kept if k in held_details}}
    _write(path, name, figures, note, details)
    if summary is not None:
        summary_path = RESULTS_DIR / f"{summary}.json"
        gathered = (
            orjson.loads(summary_path.read_bytes())["figures"] if summary_path.exists() else {}
        )
        _write(
            summary_path,
            summary,
            {**gathered, **figures},
            "figures gathered from several benchmarks; each one's run is in its own file",
        )
    return path


def _write(
    path: Path,
    name: str,
    figures: dict[str, dict],
    note: str,
    details: dict[str, list[str]] | None = None,
) -> None:
    result: dict = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(note),
        "figures": figures,
    }
    if details:
        result["details"] = details
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


def add_figures(name: str, figures: dict[str, dict], note: str) -> Path:
    """Add ``figures`` to bench/results/<name>.json, measured by another benchmark: its
    other figures and details stay, ``note`` says where these come from."""
    path = RESULTS_DIR / f"{name}.json"
    result = orjson.loads(path.read_bytes())
    result["figures"] = {**result["figures"], **figures}
    details = result.setdefault("details", {})
    for figure in figures:
        details[figure] = [f"{note} (measured {datetime.now(UTC).isoformat(timespec='seconds')})"]
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return path
