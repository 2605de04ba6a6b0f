"""Incidents spliced into a recorded day of a real V3 pool: the logs a drain, a slow drain,
a rug pull, a price manipulation or a wash-trading burst would leave, written from the
pool's own state (price, tick and in-range liquidity of its last swap) at the block they go
into.

    spliced, incidents = splice(recording, [(block, "liquidity-drain"), ...], seed=7)

Each incident's logs take log indexes after the block's real ones and transaction hashes of
their own. What follows an incident is the real traffic again (a drained pool's later swaps
report the liquidity it really had): an incident is judged on its own windows.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from typing import Any

from eth_utils import keccak

from infra.local.recorded_chain import Recording, RecordingError, abi_word, block_hash

KINDS = ("liquidity-drain", "slow-drain", "rug-pull", "price-manipulation", "wash-trading")
_SLOW_DRAIN_PARTS = 120
_SLOW_DRAIN_EVERY_S = 15

_SWAP = "0x" + keccak(text="Swap(address,address,int256,int256,uint160,uint128,int24)").hex()
_BURN = "0x" + keccak(text="Burn(address,int24,int24,uint128,uint256,uint256)").hex()
_Q96 = 2**96
_WIDE = 60_000  # ticks each side of the price: the drained positions are wide (x400 range)


@dataclasses.dataclass(frozen=True)
class SplicedIncident:
    """Where and what: the incident's first and last block, with their block times."""

    label_id: str
    kind: str
    first_block: int
    last_block: int
    first_timestamp: int
    last_timestamp: int
    # The share of the in-range liquidity removed (drains and rug pulls), or the price move.
    size: float


@dataclasses.dataclass
class _State:
    sqrt_price: int
    liquidity: int
    tick: int


def _topic(value: int) -> str:
    return "0x" + abi_word(value)


def _address(seed: str) -> str:
    return "0x" + keccak(text=seed).hex()[-40:]


def _tick_of(sqrt_price: int) -> int:
    return math.floor(math.log((sqrt_price / _Q96) ** 2, 1.0001))


class _Writer:
    """Logs of one incident, block by block, from the pool's state before it."""

    def __init__(self, recording: Recording, state: _State, name: str) -> None:
        self.recording, self.state, self.name = recording, state, name
        self.logs: list[dict[str, Any]] = []

    def _log(self, block: int, topics: list[str], data: str) -> None:
        index = 10_000 + len(self.logs)
        self.logs.append(
            {
                "address": self.recording.pool.address,
                "topics": topics,
                "data": "0x" + data,
                "blockNumber": hex(block),
                "blockHash": block_hash(self.recording.pool.chain_id, block),
                "transactionHash": "0x" + keccak(text=f"{self.name}:{index}").hex(),
                "transactionIndex": hex(500 + len(self.logs)),
                "logIndex": hex(index),
                "removed": False,
                "_timestamp": self.recording.timestamp(block),
            }
        )

    def burn(self, block: int, owner: str, share: float) -> None:
        state = self.state
        amount = int(state.liquidity * share)
        low = (state.tick - _WIDE) // 10 * 10
        high = (state.tick + _WIDE) // 10 * 10
        amount0 = amount * _Q96 // state.sqrt_price
        amount1 = amount * state.sqrt_price // _Q96
        topics = [_BURN, _topic(int(owner, 16)), _topic(low), _topic(high)]
        self._log(block, topics, abi_word(amount) + abi_word(amount0) + abi_word(amount1))
        state.liquidity -= amount

    def swap(self, block: int, trader: str, price_factor: float) -> None:
        """A swap that moves the price by ``price_factor`` at the current liquidity."""
        state = self.state
        new_sqrt = int(state.sqrt_price * math.sqrt(price_factor))
        amount1 = state.liquidity * (new_sqrt - state.sqrt_price) // _Q96
        amount0 = state.liquidity * _Q96 // new_sqrt - state.liquidity * _Q96 // state.sqrt_price
        state.sqrt_price, state.tick = new_sqrt, _tick_of(new_sqrt)
        topics = [_SWAP, _topic(int(trader, 16)), _topic(int(trader, 16))]
        data = (
            abi_word(amount0) + abi_word(amount1) + abi_word(new_sqrt) + abi_word(state.liquidity)
            + abi_word(state.tick)
        )  # fmt: skip
        self._log(block, topics, data)


def _state_before(recording: Recording, block: int) -> _State:
    """The pool's state after its last swap before ``block``."""
    last = None
    for log in recording.logs:
        if int(log["blockNumber"], 16) >= block:
            break
        if log["topics"][0] == _SWAP:
            last = log
    if last is None:
        raise RecordingError(f"no swap before block {block}: nothing to splice against")
    words = [int(last["data"][2 + 64 * i : 2 + 64 * (i + 1)], 16) for i in range(5)]
    tick = words[4] - 2**256 if words[4] >= 2**255 else words[4]
    return _State(sqrt_price=words[2], liquidity=words[3], tick=tick)


def _incident_logs(
    recording: Recording, kind: str, block: int, rng: random.Random, name: str
) -> tuple[list[dict[str, Any]], int, float]:
    """The logs of one incident starting at ``block``; its last block and size."""
    writer = _Writer(recording, _state_before(recording, block), name)
    attacker, victim = _address(f"{name}:attacker"), _address(f"{name}:victim")
    if kind == "liquidity-drain":
        # At least half the pool's in-range liquidity, over one to three blocks.
        share, steps = rng.uniform(0.5, 0.9), rng.randint(1, 3)
        per_step = 1 - (1 - share) ** (1 / steps)
        for step in range(steps):
            writer.burn(block + step, attacker, per_step)
        writer.swap(block + steps, victim, 1 + rng.uniform(-0.002, 0.002))
        return writer.logs, block + steps, share
    if kind == "slow-drain":
        # About half the pool's in-range liquidity in 120 Burns, one every 15 s for half an
        # hour. The real swaps between them report the liquidity the pool really had, so
        # each Burn takes its share of that: of the level the pipeline measures it against.
        share = rng.uniform(0.4, 0.6)
        per_part = 1 - (1 - share) ** (1 / _SLOW_DRAIN_PARTS)
        start, last = recording.timestamp(block), block - 1
        for part in range(_SLOW_DRAIN_PARTS):
            last = max(last + 1, recording.block_at(start + part * _SLOW_DRAIN_EVERY_S))
            writer.state = _state_before(recording, last)
            writer.burn(last, attacker, per_part)
        return writer.logs, last, share
    if kind == "rug-pull":
        share = rng.uniform(0.95, 0.99)
        writer.burn(block, attacker, share)
        # The team dumps into what is left: the price falls steeply on the thin pool.
        for step in range(1, 3):
            writer.swap(block + step, attacker, rng.uniform(0.7, 0.85))
        return writer.logs, block + 2, share
    if kind == "price-manipulation":
        # 10 % up within two blocks, then back a few blocks later (the manipulator's exit).
        writer.swap(block, attacker, math.sqrt(1.1))
        writer.swap(block + 1, attacker, math.sqrt(1.1))
        back = block + rng.randint(3, 6)
        writer.swap(back, attacker, 1 / 1.1)
        return writer.logs, back, 0.1
    if kind == "wash-trading":
        # Two addresses trading against each other, 40 swaps over about 10 blocks.
        other = _address(f"{name}:accomplice")
        for index in range(40):
            trader = attacker if index % 2 == 0 else other
            factor = 1.0002 if index % 2 == 0 else 1 / 1.0002
            writer.swap(block + index // 4, trader, factor)
        return writer.logs, block + 9, 40.0
    raise ValueError(f"unknown incident kind {kind!r} (known: {', '.join(KINDS)})")


def splice(
    recording: Recording, incidents: Sequence[tuple[int, str]], seed: int
) -> tuple[Recording, list[SplicedIncident]]:
    """A copy of ``recording`` with incidents (first block, kind) spliced in; their labels.

    Args:
        recording: the real day.
        incidents: where each incident starts and its kind (KINDS).
        seed: sizes and lengths are drawn from a generator seeded with it.
    """
    rng = random.Random(seed)
    logs = list(recording.logs)
    spliced = []
    for number, (block, kind) in enumerate(incidents):
        name = f"spliced:{seed}:{number}:{kind}"
        new_logs, last, size = _incident_logs(recording, kind, block, rng, name)
        logs += new_logs
        spliced.append(
            SplicedIncident(
                label_id=name,
                kind=kind,
                first_block=block,
                last_block=last,
                first_timestamp=recording.timestamp(block),
                last_timestamp=recording.timestamp(last),
                size=size,
            )  # fmt: skip
        )
    logs.sort(key=lambda log: (int(log["blockNumber"], 16), int(log["logIndex"], 16)))
    return Recording(recording.pool, logs), spliced
