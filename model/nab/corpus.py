"""The NAB corpus as stored: data/<group>/<series>.csv, labels/combined_windows.json and
config/profiles.json, read in place (never copied)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from model.nab.scoring import Profile, SeriesLabels


@dataclass(frozen=True)
class Series:
    name: str  # "<group>/<series>.csv", as the labels name it
    timestamps: np.ndarray  # datetime64
    values: np.ndarray  # float64
    labels: SeriesLabels


def load_series(root: Path, name: str, windows: list[list[str]]) -> Series:
    frame = pd.read_csv(root / "data" / name)
    timestamps = pd.to_datetime(frame["timestamp"]).to_numpy()
    rows = []
    for start, end in windows:
        first = _row_of(timestamps, start, name)
        last = _row_of(timestamps, end, name)
        rows.append((first, last))
    return Series(
        name=name,
        timestamps=timestamps,
        values=frame["value"].to_numpy(dtype=np.float64),
        labels=SeriesLabels(n_rows=len(frame), windows=tuple(rows)),
    )


def _row_of(timestamps: np.ndarray, stamp: str, name: str) -> int:
    """The row of a window edge: NAB's windows start and end on rows of the series."""
    row = int(np.searchsorted(timestamps, np.datetime64(pd.Timestamp(stamp))))
    if row >= len(timestamps) or timestamps[row] != np.datetime64(pd.Timestamp(stamp)):
        raise ValueError(f"{name}: window edge {stamp} is not a row of the series")
    return row


def load_corpus(root: Path, names: list[str] | None = None) -> list[Series]:
    """Every labelled series (or those named), in the labels file's order, sorted by name."""
    all_windows = orjson.loads((root / "labels" / "combined_windows.json").read_bytes())
    wanted = sorted(all_windows) if names is None else names
    return [load_series(root, name, all_windows[name]) for name in wanted]


def load_profiles(root: Path) -> dict[str, Profile]:
    config = orjson.loads((root / "config" / "profiles.json").read_bytes())
    return {
        name: Profile(
            name=name,
            tp_weight=entry["CostMatrix"]["tpWeight"],
            fn_weight=entry["CostMatrix"]["fnWeight"],
            fp_weight=entry["CostMatrix"]["fpWeight"],
        )
        for name, entry in config.items()
    }
