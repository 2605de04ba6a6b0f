"""The one way to point this process's Pub/Sub clients at the emulator.

google-cloud-pubsub clients (and Beam's Pub/Sub reads) find the emulator only through the
``PUBSUB_EMULATOR_HOST`` environment variable; production leaves it unset.
"""

from __future__ import annotations

import os

EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"


def use_pubsub_emulator(host: str | None, replace: bool = True) -> None:
    """Point every Pub/Sub client this process creates from now on at the emulator on
    ``host`` (host:port); None (production) changes nothing. ``replace=False`` keeps an
    emulator already chosen in the environment (a component called by a command that chose
    one)."""
    if not host:
        return
    if replace:
        os.environ[EMULATOR_ENV] = host
    else:
        os.environ.setdefault(EMULATOR_ENV, host)


def emulator_environment(host: str) -> dict[str, str]:
    """The environment variables that point a child process's Pub/Sub clients at ``host``."""
    return {EMULATOR_ENV: host}
