"""Event ABIs, their topic0, and decoding of raw log topics/data into named string values.

Decoding is the publisher's bottleneck (eth_abi's generic decoder manages ~12k V2 events/s),
so events whose inputs are all integers and addresses (every pool event) are decoded by
reading the 32-byte words directly; any other event falls back to eth_abi.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import eth_abi
from eth_abi.exceptions import DecodingError
from eth_utils import event_abi_to_log_topic

from dexwatch.core.errors import DexwatchError

_PARAM = re.compile(r"^(?P<type>[\w\[\]]+)(?P<indexed>\s+indexed)?(?:\s+(?P<name>\w+))?$")
_INTEGER = re.compile(r"^(u?)int(\d*)$")
_WORD = 32
_ADDRESS_PADDING = bytes(12)
_HASHED_WHEN_INDEXED = re.compile(r"^(string|bytes|tuple)$|\[")


class LogDecodeError(DexwatchError, ValueError):
    """Topics or data that do not encode the event they claim to be."""


def event_abi(signature: str) -> dict[str, Any]:
    """The JSON ABI entry of a flat event signature.

    ``"Sync(uint112 reserve0, uint112 reserve1)"`` → ``{"type": "event", "name": "Sync", ...}``;
    parameters may be marked ``indexed``. Tuple parameters are not supported here.
    """
    match = re.fullmatch(r"\s*(\w+)\((.*)\)\s*", signature)
    if not match:
        raise ValueError(f"not an event signature: {signature!r}")
    name, params = match.groups()
    inputs = []
    for param in filter(None, (p.strip() for p in params.split(","))):
        parsed = _PARAM.match(param)
        if not parsed:
            raise ValueError(f"bad parameter {param!r} in {signature!r}")
        inputs.append(
            {
                "type": parsed["type"],
                "name": parsed["name"] or "",
                "indexed": bool(parsed["indexed"]),
            }
        )
    return {"type": "event", "name": name, "anonymous": False, "inputs": inputs}


def _word_reader(abi_type: str) -> Callable[[bytes], str] | None:
    """A decoder of one 32-byte word of ``abi_type`` into its string form, or None if the type
    is not an integer or address. Rejects words with dirty padding, as eth_abi does."""
    if abi_type == "address":

        def read_address(word: bytes) -> str:
            if word[:12] != _ADDRESS_PADDING:
                raise LogDecodeError(f"address word with non-zero padding: 0x{word.hex()}")
            return "0x" + word[12:].hex()

        return read_address
    integer = _INTEGER.match(abi_type)
    if not integer:
        return None
    unsigned, bits = integer[1] == "u", int(integer[2] or 256)
    low, high = (0, 1 << bits) if unsigned else (-(1 << (bits - 1)), 1 << (bits - 1))

    def read_integer(word: bytes) -> str:
        value = int.from_bytes(word, "big", signed=not unsigned)
        if not low <= value < high:
            raise LogDecodeError(f"{abi_type} word out of range: 0x{word.hex()}")
        return str(value)

    return read_integer


def _format(abi_type: str, value: Any) -> str:
    """eth_abi's Python value of ``abi_type`` as a message string."""
    if isinstance(value, (list, tuple)):
        element = re.sub(r"\[\d*\]$", "", abi_type)
        return "[" + ",".join(_format(element, item) for item in value) + "]"
    if abi_type == "address":
        return value.lower()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _hex_bytes(text: str, what: str) -> bytes:
    if not isinstance(text, str) or not text.startswith("0x"):
        raise LogDecodeError(f"{what} is not 0x-prefixed hex: {text!r:.80}")
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise LogDecodeError(f"{what} is not valid hex: {text!r:.80}") from None


class EventDecoder:
    """Decodes the topics and data of one event, built from its JSON ABI entry."""

    def __init__(self, abi: dict[str, Any]) -> None:
        self.abi = abi
        self.name: str = abi["name"]
        self.topic0: str = "0x" + event_abi_to_log_topic(abi).hex()
        inputs = abi["inputs"]
        self._names = [param["name"] for param in inputs]
        self._indexed = [param for param in inputs if param["indexed"]]
        self._data_types = [param["type"] for param in inputs if not param["indexed"]]
        readers = [_word_reader(param["type"]) for param in inputs]
        # Fast path: (reads a topic?, position among topics or data words, reader) per input.
        self._plan: list[tuple[bool, int, Callable[[bytes], str]]] | None = None
        if all(readers):
            plan, topic, word = [], 0, 0
            for param, reader in zip(inputs, readers, strict=True):
                if param["indexed"]:
                    plan.append((True, topic, reader))
                    topic += 1
                else:
                    plan.append((False, word * _WORD, reader))
                    word += 1
            self._plan = plan

    @property
    def is_static(self) -> bool:
        """True when decoded word by word, without eth_abi."""
        return self._plan is not None

    def decode(self, topics: Sequence[str], data: str) -> dict[str, str]:
        """ABI argument names → decimal strings / lower-case hex; raises LogDecodeError."""
        if len(topics) != 1 + len(self._indexed):
            raise LogDecodeError(
                f"{self.name} has {len(self._indexed)} indexed inputs, log has {len(topics) - 1}"
            )
        indexed = [_hex_bytes(topic, "topic") for topic in topics[1:]]
        if any(len(word) != _WORD for word in indexed):
            raise LogDecodeError(f"{self.name}: a topic is not 32 bytes")
        body = _hex_bytes(data, "data")
        if self._plan is None:
            return self._decode_generic(indexed, body)
        if len(body) != _WORD * len(self._data_types):
            raise LogDecodeError(
                f"{self.name} data must be {_WORD * len(self._data_types)} bytes, got {len(body)}"
            )
        return {
            name: reader(indexed[at] if in_topic else body[at : at + _WORD])
            for name, (in_topic, at, reader) in zip(self._names, self._plan, strict=True)
        }

    def _decode_generic(self, indexed: list[bytes], body: bytes) -> dict[str, str]:
        try:
            data_values = iter(eth_abi.decode(self._data_types, body))
            topic_values = iter(
                "0x" + word.hex()  # dynamic indexed values are only their keccak hash
                if _HASHED_WHEN_INDEXED.search(param["type"])
                else _format(param["type"], eth_abi.decode([param["type"]], word)[0])
                for param, word in zip(self._indexed, indexed, strict=True)
            )
            return {
                param["name"]: next(topic_values)
                if param["indexed"]
                else _format(param["type"], next(data_values))
                for param in self.abi["inputs"]
            }
        except DecodingError as err:
            raise LogDecodeError(f"{self.name}: {err}") from None
