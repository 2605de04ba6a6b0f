"""Secrets (RPC URL keys, API keys) never reach a line a user sees: log records of any
logger, JSON log lines, CLI error lines, uncaught tracebacks, and the log files `dexwatch
run` keeps of its components; even when an RPC node quotes the key back."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml

from dexwatch.app.cli import context as cli
from dexwatch.app.workflows.local_run import CHAIN_PUBLISHER, _component_specs
from dexwatch.core import logs
from infra.local import processes
from infra.local.settings import load_local_settings
from tests._faulty_rpc import KeyQuotingNode
from tests.conftest import ROOT

INFURA_KEY = "9aa3d95b3bc440fa88ea12eaa4456161"
ALCHEMY_KEY = "aBcD1234efGH5678ijKL9012mnOP3456"
QUERY_KEY = "qk7Hf2LmZ91xYt"
FACTORY = {"dex": "uniswap_v3", "protocol": "v3", "address": "0x" + "1f" * 20}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """logs.configure and install_excepthooks change process-wide state: put it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks


# --- which parts of a URL are secret ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        (f"https://mainnet.infura.io/v3/{INFURA_KEY}", [INFURA_KEY]),
        (f"https://eth-mainnet.g.alchemy.com/v2/{ALCHEMY_KEY}", [ALCHEMY_KEY]),
        (f"https://rpc.example.org/eth?apikey={QUERY_KEY}&network=mainnet", [QUERY_KEY]),
        ("https://rpc.example.org/?token=abcdefgh", ["abcdefgh"]),
        ("https://user:pa%40ss-w0rd@node.example.org:8443/", ["pa%40ss-w0rd", "pa@ss-w0rd"]),
        ("http://127.0.0.1:8545", []),
        ("https://gateway.thegraph.com/api", []),
        ("https://polygon-zkevm-2.example.org/ethereum-mainnet/rpc", []),
    ],
)
def test_url_secrets_are_keys_not_plain_words(url: str, secrets: list[str]) -> None:
    assert [s for s in logs.url_secrets(url) if len(s) >= 6] == secrets


def test_scrub_replaces_registered_secrets_longest_first() -> None:
    logs.register_secret("shortkey12")
    logs.register_secret("shortkey12-and-longer")
    assert logs.scrub("a shortkey12-and-longer b shortkey12") == "a *** b ***"
    assert logs.scrub("nothing secret") == "nothing secret"


def test_loaded_settings_register_their_secrets(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEXWATCH_SUBGRAPH__API_KEY", "gatewaykey-0123456789")
    load_local_settings(
        chain={"rpc_urls": [f"https://mainnet.infura.io/v3/{INFURA_KEY}"]},
        model={"http_url": f"https://predict.example.org/predict?key={QUERY_KEY}"},
    )
    line = f"{INFURA_KEY} gatewaykey-0123456789 {QUERY_KEY} https://mainnet.infura.io/v3/"
    assert logs.scrub(line) == "*** *** *** https://mainnet.infura.io/v3/"


# --- log lines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_every_logger_record_is_scrubbed(fmt: str, capfd, restore_logging) -> None:
    logs.register_secret(ALCHEMY_KEY)
    logs.configure("INFO", fmt)
    library = logging.getLogger("some.library.without.a.filter")
    library.warning("node said %s", f"bad key {ALCHEMY_KEY}", extra={"url": f"/v2/{ALCHEMY_KEY}"})
    logging.getLogger("dexwatch.x").info("extras", extra={"keys": [ALCHEMY_KEY]})
    try:
        raise RuntimeError(f"refused {ALCHEMY_KEY}")
    except RuntimeError:
        library.exception("failed")
    err = capfd.readouterr().err
    assert ALCHEMY_KEY not in err
    assert "node said bad key ***" in err and "refused ***" in err
    if fmt == "json":
        records = [json.loads(line) for line in err.splitlines()]
        assert records[0]["event"] == "node said bad key ***"
        assert records[0]["url"] == "/v2/***"
        assert records[1]["keys"] == ["***"]


def test_the_root_handler_filter_scrubs_the_record_itself(restore_logging) -> None:
    logs.register_secret(INFURA_KEY)
    logs.configure("INFO", "json")
    (handler,) = logging.getLogger().handlers
    record = logging.getLogger("anything").makeRecord(
        "anything", logging.INFO, __file__, 1, "key %s", (INFURA_KEY,), None
    )
    assert handler.filter(record)
    assert record.getMessage() == "key ***"


# --- the command line -----------------------------------------------------------------------------


def test_cli_error_lines_are_scrubbed(capsys) -> None:
    logs.register_secret(INFURA_KEY)
    with pytest.raises(typer.Exit):
        cli.fail(f"the node refused /v3/{INFURA_KEY}")
    assert capsys.readouterr().err.strip() == "error: the node refused /v3/***"


def _publish_chain(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    return subprocess.run(
        [sys.executable, "-m", "dexwatch", *args, "publish", "chain", "--once"],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _chain_env(tmp_path: Path, rpc_url: str) -> dict[str, str]:
    return {
        "DEXWATCH_STATE_DIR": str(tmp_path / ".dexwatch"),
        "DEXWATCH_CHAIN__RPC_URLS": json.dumps([rpc_url]),
        "DEXWATCH_CHAIN__FACTORIES": json.dumps([FACTORY]),
        "DEXWATCH_CHAIN__RETRY__MAX_RETRIES": "1",
        "DEXWATCH_CHAIN__RETRY__BACKOFF_BASE_S": "0.01",
        "DEXWATCH_PUBSUB__EMULATOR_HOST": f"127.0.0.1:{processes.free_port()}",
    }


def test_a_node_quoting_the_path_key_in_its_error_is_shown_scrubbed(tmp_path: Path) -> None:
    with KeyQuotingNode("error") as node:
        result = _publish_chain(tmp_path, _chain_env(tmp_path, f"{node.url}/v3/{INFURA_KEY}"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert INFURA_KEY not in output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: eth_chainId failed: -32000: invalid project id or API key in /v3/***"]


def test_a_node_quoting_the_query_key_while_rate_limiting_is_logged_scrubbed(
    tmp_path: Path,
) -> None:
    config = tmp_path / "dexwatch.yaml"
    with KeyQuotingNode("rate_limited") as node:
        rpc_urls = [f"{node.url}/eth?apikey={QUERY_KEY}"]
        config.write_text(yaml.safe_dump({"chain": {"rpc_urls": rpc_urls}}))
        env = {**_chain_env(tmp_path, rpc_urls[0]), "DEXWATCH_LOGGING__FORMAT": "json"}
        del env["DEXWATCH_CHAIN__RPC_URLS"]  # from the config file this time
        result = _publish_chain(tmp_path, env, "--config", str(config))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert QUERY_KEY not in output
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    retries = [r for r in records if r["event"].startswith("eth_chainId failed on")]
    assert len(retries) == 2 and node.requests == 2
    assert all("rate limit exceeded for /eth?apikey=***" in r["event"] for r in retries)
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "no RPC URL answered" in error and "/eth?apikey=***" in error


def test_an_unexpected_exception_keeps_its_traceback_scrubbed(tmp_path: Path) -> None:
    with KeyQuotingNode("garbage") as node:
        result = _publish_chain(tmp_path, _chain_env(tmp_path, f"{node.url}/v2/{ALCHEMY_KEY}"))
    assert result.returncode == 1
    assert ALCHEMY_KEY not in result.stdout + result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: invalid literal for int() with base 16: 'unknown project /v2/***'" in (
        result.stderr
    )


# --- dexwatch run ---------------------------------------------------------------------------------


def test_dexwatch_runs_component_log_holds_no_key(tmp_path: Path) -> None:
    """`dexwatch run` writes each component's stdout and stderr to its log file unchanged, so
    it is each component's own scrubbing that keeps the key out: the chain publisher started
    as `dexwatch run` starts it, against a node that quotes its key back."""
    with KeyQuotingNode("error") as node:
        config = tmp_path / "dexwatch.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(tmp_path / ".dexwatch"),
                    "chain": {"rpc_urls": [f"{node.url}/v3/{INFURA_KEY}"], "factories": [FACTORY]},
                }
            )
        )
        settings = load_local_settings(config)
        (spec,) = [s for s in _component_specs(settings, config, {}) if s.name == CHAIN_PUBLISHER]
        state_dir = settings.state_dir
        try:
            processes.start(spec, state_dir)
        except processes.StackError as err:  # it may already have exited
            assert INFURA_KEY not in str(err)
        deadline = time.monotonic() + 60
        while processes.running_pid(state_dir, CHAIN_PUBLISHER) and time.monotonic() < deadline:
            time.sleep(0.2)
        processes.stop(state_dir, CHAIN_PUBLISHER)
    log = processes.log_path(state_dir, CHAIN_PUBLISHER).read_text()
    assert "invalid project id or API key in /v3/***" in log
    assert INFURA_KEY not in log
