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


MARKETS = Path(__file__).resolve().parents[2] / "infra" / "local" / "markets"


def test_market_option_mines_the_markets_simulator_with_the_configs_chain(
    tmp_path: Path, monkeypatch
) -> None:
    from dexwatch.app.cli.context import State, cli_settings

    config = tmp_path / "mainnet.yaml"
    config.write_text(
        "chain:\n  chain_id: 1\n  block_time_s: 12\n  confirmations: 3\npipeline:\n  slice_s: 12\n"
        "simulator:\n  swaps_per_minute: 99\n"
    )
    monkeypatch.setattr(State, "config", config)
    settings = cli_settings(MARKETS / "polygon-busy-pool.yaml")
    # The market's simulator settings, over the config's own ...
    assert settings.simulator.price_discovery == "arbitrage"
    assert settings.simulator.swaps_per_minute == 2.4
    assert settings.simulator.lp_change_share == (0.0002, 0.0008)
    # ... on the config's chain, whose 12 s blocks the market's 2 s intervals give way to.
    assert settings.chain.chain_id == 1 and settings.chain.confirmations == 3
    assert settings.simulator.block_interval_s == 12
    assert settings.simulator.history_block_interval_s == 12
    # Without --market, the config's simulator.
    assert cli_settings().simulator.swaps_per_minute == 99


def test_market_option_without_a_simulator_section_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "not-a-market.yaml").write_text("chain:\n  chain_id: 1\n")
    result = _dexwatch("model", "bootstrap", "--market", "not-a-market.yaml", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no simulator section" in lines[0]


def test_publish_chain_with_several_chains_asks_which(tmp_path: Path) -> None:
    (tmp_path / "dexwatch.yaml").write_text(
        "pipeline: {slice_s: 12}\nchains:\n  - {chain_id: 137, block_time_s: 2}\n"
        "  - {chain_id: 1, block_time_s: 12}\n"
    )
    result = _dexwatch("publish", "chain", "--once", cwd=tmp_path)
    assert result.returncode != 0
    assert "2 chains are configured (polygon, ethereum): name one with --chain" in result.stderr
    result = _dexwatch("publish", "chain", "--once", "--chain", "base", cwd=tmp_path)
    assert "no chain 'base' is configured" in result.stderr
