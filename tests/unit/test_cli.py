"""The command line as a user meets it: help, configuration errors, queries."""

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dexwatch.app.cli import app

runner = CliRunner()


def _dexwatch(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dexwatch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("local", "simulate", "publish", "run", "query", "config"):
        assert command in result.output
    for group, commands in {
        "local": ("up", "down", "status"),
        "simulate": ("run", "history", "inject"),
        "publish": ("chain",),
    }.items():
        output = runner.invoke(app, [group, "--help"]).output
        assert all(c in output for c in commands)


def test_invalid_config_is_one_clear_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "dexwatch.yaml").write_text("chain:\n  confirmations: -1\npubsub:\n  projct: x\n")
    result = _dexwatch("config", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "chain.confirmations" in lines[0] and "pubsub.projct" in lines[0]
    assert "Traceback" not in result.stderr


def test_config_shows_effective_settings_without_rpc_secrets(tmp_path: Path) -> None:
    (tmp_path / "dexwatch.yaml").write_text(
        "chain:\n  rpc_urls: ['https://rpc.example.org/v2/TOPSECRETKEY']\n"
    )
    result = _dexwatch("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "https://rpc.example.org" in result.stdout
    assert "TOPSECRETKEY" not in result.stdout + result.stderr


def test_query_without_a_warehouse_explains(tmp_path: Path) -> None:
    result = _dexwatch("query", "select 1", cwd=tmp_path)
    assert result.returncode == 1
    assert "no warehouse" in result.stderr


def test_inject_rejects_unknown_kind(tmp_path: Path) -> None:
    result = _dexwatch("simulate", "inject", "--kind", "meteor", "--pool", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown incident kind 'meteor'" in result.stderr
