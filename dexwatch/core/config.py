"""Loading the settings: from where, in which order, with which errors.

Settings come, highest priority first, from keyword arguments, ``DEXWATCH_*`` environment
variables (nested keys joined by ``__``, e.g. ``DEXWATCH_CHAIN__CONFIRMATIONS=5``) and a
YAML file (``--config``, ``DEXWATCH_CONFIG`` or ``./dexwatch.yaml``). Every model rejects
unknown keys, so a typo is an error that names the key instead of a silently ignored value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

from dexwatch.core import logs
from dexwatch.core.settings import OneChainEnvironment, Settings, SettingsError

CONFIG_ENV = "DEXWATCH_CONFIG"
DEFAULT_CONFIG_FILE = Path("dexwatch.yaml")

S = TypeVar("S", bound=Settings)


def _describe(error: ValidationError, source: str, one_chain: bool) -> str:
    """One line a bad key; keys of a one-chain form's chain named as written (chain.x)."""
    lines = []
    for err in error.errors():
        loc = err["loc"]
        if one_chain and loc[:2] == ("chains", 0):
            loc = ("chain", *loc[2:])
        key = ".".join(str(part) for part in loc) or "(root)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting '{key}' in {source}")
        else:
            lines.append(f"invalid setting '{key}' in {source}: {err['msg']}")
    return "; ".join(lines)


def _one_chain_in(path: Path | None) -> bool:
    """Whether the YAML file at ``path`` has the one-chain form's ``chain`` section."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) if path else None
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "chain" in data


def config_file_from_env(explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        return explicit
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def _secrets(value: Any) -> Iterator[str]:
    """Every SecretStr value, and the secret parts of every http(s) URL, in ``value``."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets(item)
    elif isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str) and value.startswith(("http://", "https://")):
        yield from logs.url_secrets(value)


def load_settings(
    config_file: Path | None = None, *, schema: type[S] | None = None, **overrides: Any
) -> S:
    """Load settings from the config file, the environment and ``overrides``, and register
    their secrets (SecretStr values, keys in URLs) with the scrubber of dexwatch.core.logs: every
    process loads its settings here, so none prints them.

    ``schema`` is Settings or a subclass adding sections (the local stack's, in
    infra.local.settings). Raises SettingsError with one line naming each bad key.
    """
    schema = schema or Settings  # type: ignore[assignment]
    unknown_env = sorted(
        name
        for name in os.environ
        if name.startswith("DEXWATCH_")
        and name != CONFIG_ENV
        and name.removeprefix("DEXWATCH_").split("__")[0].lower()
        not in {*schema.model_fields, "chain"}  # chain: the one-chain form of chains
    )
    if unknown_env:
        raise SettingsError(f"unknown setting in environment: {', '.join(unknown_env)}")
    path = config_file_from_env(config_file)
    if path is not None and not path.is_file():
        raise SettingsError(f"config file not found: {path}")
    source = f"{path} / DEXWATCH_* environment" if path else "DEXWATCH_* environment"

    class _FromFile(schema):  # type: ignore[valid-type,misc]
        config_file: ClassVar[Path | None] = path

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as err:
        one_chain = (
            "chain" in overrides
            or _one_chain_in(path)
            or any(name.startswith(OneChainEnvironment.PREFIX) for name in os.environ)
        )
        raise SettingsError(_describe(err, source, one_chain)) from None
    except Exception as err:  # malformed YAML and the like
        raise SettingsError(f"cannot read {source}: {err}") from None
    for secret in _secrets(loaded):
        logs.register_secret(secret)
    return loaded  # type: ignore[return-value]
