"""Errors of the subgraph publisher; each message says what failed and what to do.

Messages never carry the gateway API key: URLs are shown with the key replaced by ***.
"""

from __future__ import annotations

from dexwatch.core.errors import DexwatchError


class SubgraphPublisherError(DexwatchError, RuntimeError):
    """The subgraph publisher cannot go on; its checkpoint is left as it was."""


class SubgraphUnavailable(SubgraphPublisherError):
    """The subgraph did not answer usefully after every retry (429, 5xx, timeouts, or
    GraphQL errors that looked transient)."""


class SubgraphQueryError(SubgraphPublisherError):
    """The subgraph refused a query in a way retrying cannot fix (bad key, bad argument)."""


class SubgraphSchemaError(SubgraphQueryError):
    """The subgraph's schema lacks an entity or field the publisher queries: the subgraph
    id points at another schema or version than the configured protocol expects."""


class CheckpointError(SubgraphPublisherError):
    """A checkpoint that cannot be read or belongs to another chain."""
