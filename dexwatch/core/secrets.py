"""Secrets a component needs at run time: from its setting (the environment), or from a
Secret Manager version named by its ``*_secret`` setting. Either way the value is
registered with the log scrubber before it is returned, so no log line can show it."""

from __future__ import annotations

from pydantic import SecretStr

from dexwatch.core import logs
from dexwatch.core.errors import DexwatchError


class SecretError(DexwatchError, RuntimeError):
    """A secret could not be read from Secret Manager."""


def resolve_secret(value: SecretStr | None, version: str | None, what: str) -> str | None:
    """The secret ``what`` (named in the error): ``value`` when set, else the Secret Manager
    ``version`` (projects/P/secrets/S/versions/V), else None."""
    if value is not None:
        secret = value.get_secret_value()
    elif version is None:
        return None
    else:
        from google.cloud import secretmanager

        try:
            client = secretmanager.SecretManagerServiceClient()
            response = client.access_secret_version(name=version)
        except Exception as err:  # noqa: BLE001 - credentials, permissions, network: all fatal
            raise SecretError(
                f"cannot read {what} from Secret Manager ({version}): {type(err).__name__}"
            ) from None
        secret = response.payload.data.decode().strip()
    logs.register_secret(secret)
    return secret
