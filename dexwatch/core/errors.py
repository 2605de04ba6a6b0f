"""The one root of the errors dexwatch raises on purpose.

A ``DexwatchError`` carries a message meant for the user: one line that names the cause
(a key, a file, an address), never a secret. The CLI prints that line and exits with the
error's ``exit_code``; anything else is a bug and keeps its traceback. Each component
derives its own errors from it (``publishers.chain.errors``, ``model.registry`` ...), and
they keep the builtin base they had (ValueError, RuntimeError ...) for callers that catch
those.
"""

from __future__ import annotations

from typing import ClassVar


class DexwatchError(Exception):
    """An expected failure, explained in one line."""

    exit_code: ClassVar[int] = 1


class UsageError(DexwatchError):
    """The user asked for something that cannot be done as asked: a bad setting, flag or
    parameter. Exit code 2, as for command-line usage errors."""

    exit_code: ClassVar[int] = 2
