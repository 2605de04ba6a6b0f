"""A private chain for a benchmark that mines its own period (the market simulator on an
anvil of its own): its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.local import processes
from infra.local.settings import LocalSettings, load_local_settings

ROOT = Path(__file__).resolve().parent.parent
# Every private chain of a benchmark starts at this time (2026-11-30 00:00 UTC, fixed before
# any run was looked at): the simulator's rhythm follows chain time, so only a fixed start
# mines the same period from the same seed on every run.
GENESIS = 1_795_996_800


def private_chain_settings(
    state: Path, seed: int, block_s: int, simulator: dict[str, Any] | None = None, **sections: Any
) -> LocalSettings:
    """Settings for an anvil on a free port with its state under ``state``: the simulator
    (``seed``, and ``simulator``'s other settings) mines blocks ``block_s`` apart, history and
    live alike, and the chain publisher reads every block at once, without confirmations.
    ``sections``: other settings sections (model, warehouse, ...)."""
    port = processes.free_port()
    return load_local_settings(
        state_dir=str(state),
        local={"anvil_port": port, "node_modules": str(ROOT / "node_modules")},
        chain={"rpc_urls": [f"http://127.0.0.1:{port}"], "confirmations": 0,
               "checkpoint_path": str(state / "checkpoint.json"), "batch_blocks": 2000},
        simulator={**(simulator or {}), "block_interval_s": block_s,
                   "history_block_interval_s": block_s, "seed": seed},
        **sections,
    )  # fmt: skip


def bootstrap_settings(
    state: Path, seed: int, market: Path | None = None, **sections: Any
) -> LocalSettings:
    """Settings for ``dexwatch run``'s first-model bootstrap on an anvil of its own under
    ``state``, with the settings of ``market`` (a config file) when given, its simulator's
    seed ``seed``. ``sections``: other settings sections (model, ...)."""
    port = processes.free_port()
    # The config file's simulator settings: an override replaces a section whole.
    simulator = yaml.safe_load(market.read_text()).get("simulator", {}) if market else {}
    return load_local_settings(
        market,
        state_dir=str(state),
        local={"anvil_port": port, "node_modules": str(ROOT / "node_modules")},
        chain={"rpc_urls": [f"http://127.0.0.1:{port}"]},
        simulator={**simulator, "seed": seed},
        **sections,
    )
