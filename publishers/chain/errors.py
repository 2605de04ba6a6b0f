"""Errors of the chain publisher; each message says what failed and what to do."""

from __future__ import annotations

from dexwatch.core.errors import DexwatchError


class ChainPublisherError(DexwatchError, RuntimeError):
    """The chain publisher cannot go on; its checkpoint is left as it was."""


class RpcError(ChainPublisherError):
    """A JSON-RPC node refused a request in a way retrying cannot fix."""


class MethodUnsupported(RpcError):
    """The node does not offer a JSON-RPC method (code -32601, or its words for it)."""


class RpcUnavailable(RpcError):
    """No configured RPC URL answered, after retries."""


class ReorgTooDeepError(ChainPublisherError):
    """The chain forked below the oldest block hash the checkpoint keeps."""


class CheckpointError(ChainPublisherError):
    """A checkpoint that cannot be read or belongs to another chain."""


class PoolListError(ChainPublisherError):
    """The subgraphs' pool list (chain.pool_filter thresholds) cannot be read where the
    publisher cannot go on without it."""
