"""A Pub/Sub emulator of a benchmark's own, on a free port, for the benchmarks that run
`dexwatch pipeline run` against it (live, memory), and what that pipeline has written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dexwatch.core.emulator import use_pubsub_emulator
from dexwatch.core.warehouse import is_missing_table, open_warehouse
from infra.local import processes, stack
from infra.local.settings import load_local_settings


@contextmanager
def own_emulator(state_dir: Path) -> Iterator[str]:
    """Start an emulator with its state in ``state_dir``, point the Pub/Sub clients of this
    process at it, and yield its host:port; stopped on the way out."""
    settings = load_local_settings(
        state_dir=str(state_dir), local={"emulator_port": processes.free_port()}
    )
    processes.start(stack.emulator_spec(settings), state_dir, ready_timeout_s=60)
    try:
        use_pubsub_emulator(settings.local.emulator_host)
        yield settings.local.emulator_host
    finally:
        processes.stop(state_dir, stack.EMULATOR)


def delete_subscriptions(project: str) -> None:
    """Every subscription of ``project``: the next run starts from a fresh one."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    for subscription in subscriber.list_subscriptions(project=f"projects/{project}"):
        subscriber.delete_subscription(subscription=subscription.name)


def newest_window_end(settings, chains: int = 1) -> float | None:  # noqa: ANN001
    """The newest window end in the pipeline's pool_scores (unix s), the earliest of each
    chain's when ``chains`` chains are published; None before rows of every chain."""
    if not settings.warehouse_path.exists():
        return None
    try:
        rows = open_warehouse(settings).query(
            "select max(epoch(window_end)) from pool_scores group by chain_id"
        )
    except Exception as err:
        if is_missing_table(err):  # the pipeline creates the table with its first rows
            return None
        raise
    newest = [row[0] for row in rows.rows if row[0] is not None]
    return float(min(newest)) if len(newest) >= chains else None
