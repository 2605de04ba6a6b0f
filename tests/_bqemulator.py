"""A local BigQuery emulator (bqemulator, its own virtualenv: tests/_tools.py) for the tests that
run the warehouse's tables and views on BigQuery's API.

``running_bqemulator`` starts one on free ports on 127.0.0.1, with its state and log in a
directory of the caller's, and yields a client and a fresh dataset; it stops it on exit. The
emulator runs BigQuery SQL by translating it for DuckDB, so it accepts some SQL BigQuery
would refuse and checks rows less: a row with an unknown field is accepted silently, and a
missing REQUIRED field or a wrong type makes the insert fail with HTTP 500 (which the
client's default retry repeats for ten minutes: pass ``INSERT_RETRY``).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from infra.local import processes
from tests._tools import bqemulator

PROJECT = "local-proj"
NAME = "bqemulator"
# A bad row makes the emulator answer 500: fail within seconds rather than retry for minutes.
INSERT_RETRY = bigquery.DEFAULT_RETRY.with_deadline(5)


@dataclass(frozen=True)
class Emulator:
    client: bigquery.Client
    project: str
    dataset: str
    endpoint: str


def _wait_ready(endpoint: str, state_dir: Path, timeout_s: float = 60.0) -> None:
    """Until the REST API answers (the port opens before the app is ready)."""
    url = f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if processes.running_pid(state_dir, NAME) is None:
            log = processes.log_path(state_dir, NAME).read_text(errors="replace")[-2000:]
            raise processes.StackError(f"{NAME} exited:\n{log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise processes.StackError(f"{NAME} did not answer {url} in {timeout_s}s")


@contextmanager
def running_bqemulator(state_dir: Path, dataset: str = "dexwatch") -> Iterator[Emulator]:
    """A running emulator with an empty ``dataset``, stopped on exit.

    Args:
        state_dir: where its pid file and log go (``logs/bqemulator.log``).
        dataset: the dataset to create.
    """
    executable, home = bqemulator()
    rest, grpc = processes.free_port(), processes.free_port()
    argv = [
        str(executable), "start", "--rest-port", str(rest), "--grpc-port", str(grpc),
        "--project", PROJECT, "--ephemeral", "--log-level", "warning",
    ]  # fmt: skip
    # HOME: where DuckDB finds the spatial extension the emulator loads (no download).
    spec = processes.ProcessSpec(NAME, argv, "127.0.0.1", rest, env={"HOME": str(home)})
    processes.start(spec, state_dir, ready_timeout_s=60)
    try:
        endpoint = f"http://127.0.0.1:{rest}"
        _wait_ready(endpoint, state_dir)
        client = bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
        client.create_dataset(f"{PROJECT}.{dataset}")
        yield Emulator(client, PROJECT, dataset, endpoint)
    finally:
        processes.stop(state_dir, NAME)
