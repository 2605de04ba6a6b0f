"""Retrying transient failures, shared by the network clients: the chain JSON-RPC client,
the subgraph gateway client and the HTTP model handler.

Each client decides which of its failures are transient and what a give-up says; how long
a request may take, how often it is tried and how long to wait in between is a RetryPolicy,
one settings section per client (``chain.retry``, ``subgraph.retry``, ``model.http_retry``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tenacity
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

# (attempt number from 1, the error it failed with)
OnFailure = Callable[[int, BaseException], None]
# (attempt number from 1, the error it failed with, seconds about to be waited)
OnRetry = Callable[[int, BaseException, float], None]


class RetryPolicy(BaseModel):
    """Each request times out after ``timeout_s``; a transient failure is tried again up to
    ``max_retries`` times, waiting before retry n a time uniform in
    [0, min(backoff_max_s, backoff_base_s * 2^(n-1))]: exponential backoff with full jitter,
    so clients that failed together spread out.

    It has no defaults of its own: each settings section gives its own, and a partial
    section changes only the keys it names (``over_field_default``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(gt=0)
    max_retries: int = Field(ge=0)
    backoff_base_s: float = Field(gt=0)
    backoff_max_s: float = Field(gt=0)

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def retrying(
        self,
        retry_on: type[BaseException] | tuple[type[BaseException], ...],
        *,
        on_failure: OnFailure | None = None,
        on_retry: OnRetry | None = None,
    ) -> tenacity.Retrying:
        """A tenacity Retrying calling a function until it returns, raises something other
        than ``retry_on``, or has failed ``attempts`` times: then its last error is raised
        as is (no RetryError), for the client to turn into its give-up error.

        ``on_failure`` is called after each failed attempt, the last one included;
        ``on_retry`` only before waiting for the next one.
        """
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(retry_on),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_random_exponential(
                multiplier=self.backoff_base_s, max=self.backoff_max_s
            ),
            after=None if on_failure is None else _failure_hook(on_failure),
            before_sleep=None if on_retry is None else _retry_hook(on_retry),
            reraise=True,
        )


def over_field_default(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A ``mode="before"`` field validator for a RetryPolicy setting: the keys a mapping
    leaves out keep the field's default (``chain: {retry: {max_retries: 0}}`` keeps the
    chain's timeout), instead of failing for want of RetryPolicy defaults."""
    if isinstance(value, dict):
        default = cls.model_fields[info.field_name].default
        return {**default.model_dump(), **value}
    return value


def _error(state: tenacity.RetryCallState) -> BaseException:
    assert state.outcome is not None and state.outcome.failed
    error = state.outcome.exception()
    assert error is not None
    return error


def _failure_hook(on_failure: OnFailure) -> Callable[[tenacity.RetryCallState], None]:
    def after(state: tenacity.RetryCallState) -> None:
        on_failure(state.attempt_number, _error(state))

    return after


def _retry_hook(on_retry: OnRetry) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        on_retry(state.attempt_number, _error(state), delay)

    return before_sleep
