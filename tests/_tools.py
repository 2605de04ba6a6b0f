"""The deployment checks' tools that live in their own virtualenvs (Makefile ``tools``):
made by ``make`` on first use, so a bare ``pytest`` works as ``make test`` does."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKOV_VENV = ROOT / ".venv-checkov"
BQ_VENV = ROOT / ".venv-bq"


def tool_venv(venv: Path) -> Path:
    """``venv`` ready to use (``make tools`` when its marker is missing)."""
    if not (venv / ".installed").exists():
        subprocess.run(["make", "-s", "-C", str(ROOT), "tools"], check=True, timeout=600)
    return venv


def checkov() -> Path:
    return tool_venv(CHECKOV_VENV) / "bin" / "checkov"


def bqemulator() -> tuple[Path, Path]:
    """The emulator's executable and the HOME it runs with (DuckDB's spatial extension is
    installed there, not downloaded)."""
    venv = tool_venv(BQ_VENV)
    return venv / "bin" / "bqemulator", venv / "home"
