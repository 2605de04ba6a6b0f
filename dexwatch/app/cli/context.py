"""What every command shares: the --config choice, settings, one-line failures, signals,
progress bars."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from dexwatch.core import logs
from dexwatch.core.emulator import use_pubsub_emulator
from dexwatch.core.settings import SettingsError
from infra.local.settings import LocalSettings, load_local_settings

if TYPE_CHECKING:
    from rich.progress import TaskID

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]


class State:
    config: Path | None = None


@contextlib.contextmanager
def stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per stage of a long command, fed by ``(stage, done, total)`` calls."""
    from rich.progress import Progress

    with Progress(transient=not sys.stderr.isatty()) as progress:
        tasks: dict[str, TaskID] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield on_progress


def report(message: str) -> None:
    """Print one error line; messages may quote what a node or server answered, so the
    line is scrubbed of secrets."""
    typer.secho(f"error: {logs.scrub(message)}", fg=typer.colors.RED, err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop a command with one error line (see ``report``) and exit code ``code``."""
    report(message)
    raise typer.Exit(code)


def cli_settings(market: Path | None = None) -> LocalSettings:
    """The settings of --config, with the ``simulator`` settings of ``market`` (a market file,
    such as infra/local/markets/polygon-busy-pool.yaml) over the config's own when given. A
    chain with a fixed block time keeps it: the market's block intervals give way."""
    settings = load_local_settings(State.config)
    if market is not None:
        settings = load_local_settings(State.config, simulator=_market_section(market, settings))
    settings = settings.with_deployment()
    logs.configure(settings.logging.level, settings.logging.format)
    return settings


def local_chain(settings: LocalSettings, key: str | None) -> LocalSettings:
    """The one-chain settings of the local chain named ``key`` (``LocalSettings.local_chains``:
    its anvil, deployment and block time); without one, the only local chain, or a one-line
    error naming them."""
    chains = settings.local_chains()
    if key is None and len(chains) == 1:
        return chains[0]
    wanted = one_chain(settings, key).chain.chain_id  # the configured chain named key
    for chain in chains:
        if chain.chain.chain_id == wanted:
            return chain.with_deployment()
    names = ", ".join(f"{c.chain.name} ({c.chain.chain_id})" for c in chains)
    fail(f"chain {key!r} is not one the local stack runs; the local chains are {names}")


def one_chain(settings: LocalSettings, key: str | None) -> LocalSettings:
    """The settings of the chain named ``key`` (a name or an id); without one, a one-line
    error naming the configured chains."""
    if key is None:
        names = ", ".join(chain.name for chain in settings.chains)
        fail(f"{len(settings.chains)} chains are configured ({names}): name one with --chain")
    try:
        return settings.for_chain(key)
    except SettingsError as err:
        fail(str(err))


def _market_section(market: Path, settings: LocalSettings) -> dict:
    import yaml

    try:
        section = (yaml.safe_load(market.read_text()) or {}).get("simulator")
    except (OSError, yaml.YAMLError, AttributeError) as err:
        fail(f"cannot read the market file {market}: {err}")
    if not isinstance(section, dict):
        fail(f"{market} has no simulator section: a market file holds one (infra/local/markets/)")
    if settings.chain.block_time_s is not None:
        for name in ("block_interval_s", "history_block_interval_s"):
            section.pop(name, None)
    return section


def use_local_emulator(settings: LocalSettings) -> None:
    use_pubsub_emulator(settings.pubsub.emulator_host)


def stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, so long-running commands can finish cleanly."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def local_deployment(settings: LocalSettings):  # type: ignore[no-untyped-def]
    from infra.local.deployment import LocalDeployment

    try:
        return LocalDeployment.load(settings.deployment_path)
    except FileNotFoundError as err:
        fail(str(err))


def require_model(settings: LocalSettings, hourly: bool = False) -> None:
    if settings.model.serving != "local":
        return
    if not settings.model_path.is_file():
        fail(f"no model at {settings.model_path}: run `dexwatch model bootstrap` first")
    if hourly and not settings.hourly_model_path.is_file():
        fail(
            f"no hourly model at {settings.hourly_model_path}: run "
            "`dexwatch model bootstrap-hourly` first, or set pipeline.hourly to false"
        )


def moment(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{flag}: not a date or ISO time: {value!r}", code=2)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
