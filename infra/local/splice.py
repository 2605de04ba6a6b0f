"""Incidents spliced into a recorded day of a real V3 pool: the logs a drain, a slow drain,
a rug pull, a price manipulation, a wash-trading burst or a run of sandwiches would leave,
written from the
pool's own state (price, tick and in-range liquidity of its last swap) at the block they go
into; or a fresh pool's rug: a new pool of the same factory, its creation, launch, pump and
emptying, sized against the real pool.

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

from infra.local.recorded_chain import (
    RecordedPool,
    Recording,
    RecordingError,
    abi_word,
    block_hash,
    creation_log,
)

KINDS = (
    "liquidity-drain", "slow-drain", "rug-pull", "fresh-pool-rug", "price-manipulation",
    "wash-trading", "sandwich",
)  # fmt: skip
# A run of sandwiches: one every other block, the victim's swap moving the price 1.5 % (its
# direction alternating), the front-run half as much.
_SANDWICHES = 10
_SANDWICH_VICTIM_MOVE = 1.015
_SANDWICH_FRONT_MOVE = math.sqrt(_SANDWICH_VICTIM_MOVE)
_SLOW_DRAIN_PARTS = 120
_SLOW_DRAIN_EVERY_S = 15
# A fresh pool: a fiftieth of the real pool's in-range liquidity, bought up 8 % every 15 s
# six times, emptied 15 s later (as infra.local.incidents' fresh-pool-rug).
_FRESH_SHARE = 0.02
_FRESH_PUMP_STEP = 1.08
_FRESH_PUMP_PARTS = 6
_FRESH_EVERY_S = 15
_FRESH_FEE, _FRESH_SPACING = 3000, 60

_SWAP = "0x" + keccak(text="Swap(address,address,int256,int256,uint160,uint128,int24)").hex()
_BURN = "0x" + keccak(text="Burn(address,int24,int24,uint128,uint256,uint256)").hex()
_MINT = "0x" + keccak(text="Mint(address,address,int24,int24,uint128,uint256,uint256)").hex()
_INITIALIZE = "0x" + keccak(text="Initialize(uint160,int24)").hex()
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
    # The share of the in-range liquidity removed (drains and rug pulls), the price move, or
    # what a run of sandwiches took (token1, raw units, implied by the spliced amounts).
    size: float
    pool: str  # the recorded pool, or the fresh pool a fresh-pool rug launched


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

    def __init__(
        self, recording: Recording, state: _State, name: str, address: str | None = None
    ) -> None:
        self.recording, self.state, self.name = recording, state, name
        self.address = address or recording.pool.address
        self.logs: list[dict[str, Any]] = []

    def _log(self, block: int, topics: list[str], data: str) -> None:
        index = 10_000 + len(self.logs)
        self.logs.append(
            {
                "address": self.address,
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

    def wide_range(self, spacing: int = 10) -> tuple[int, int]:
        """Ticks of a wide position around the price, on the pool's spacing."""
        tick = self.state.tick
        return (tick - _WIDE) // spacing * spacing, (tick + _WIDE) // spacing * spacing

    def burn(
        self, block: int, owner: str, share: float, ticks: tuple[int, int] | None = None
    ) -> None:
        state = self.state
        amount = int(state.liquidity * share)
        low, high = ticks or self.wide_range()
        amount0 = amount * _Q96 // state.sqrt_price
        amount1 = amount * state.sqrt_price // _Q96
        topics = [_BURN, _topic(int(owner, 16)), _topic(low), _topic(high)]
        self._log(block, topics, abi_word(amount) + abi_word(amount0) + abi_word(amount1))
        state.liquidity -= amount

    def launch(self, block: int, created: dict[str, Any], owner: str, ticks: tuple[int, int]):
        """A new pool's first block: its factory's PoolCreated log, its Initialize, and
        ``owner``'s Mint of all its liquidity (the state's) over ``ticks``."""
        self.logs.append({**created, "_timestamp": self.recording.timestamp(block)})
        state = self.state
        self._log(block, [_INITIALIZE], abi_word(state.sqrt_price) + abi_word(state.tick))
        amount0 = state.liquidity * _Q96 // state.sqrt_price
        amount1 = state.liquidity * state.sqrt_price // _Q96
        topics = [_MINT, _topic(int(owner, 16)), _topic(ticks[0]), _topic(ticks[1])]
        data = abi_word(int(owner, 16)) + abi_word(state.liquidity) + abi_word(amount0)
        self._log(block, topics, data + abi_word(amount1))

    def swap(self, block: int, trader: str, price_factor: float) -> tuple[int, int]:
        """A swap that moves the price by ``price_factor`` at the current liquidity; its
        amounts (the pool's view: positive paid in)."""
        new_sqrt = int(self.state.sqrt_price * math.sqrt(price_factor))
        return self._swap_to(block, trader, new_sqrt)

    def swap_amount0(self, block: int, trader: str, amount0: int) -> tuple[int, int]:
        """A swap of exactly ``amount0`` of token0 in (negative: out) at the current
        liquidity; its amounts."""
        state = self.state
        liquidity = state.liquidity * _Q96
        new_sqrt = liquidity * state.sqrt_price // (liquidity + amount0 * state.sqrt_price)
        return self._swap_to(block, trader, new_sqrt, amount0)

    def _swap_to(
        self, block: int, trader: str, new_sqrt: int, amount0: int | None = None
    ) -> tuple[int, int]:
        state = self.state
        amount1 = state.liquidity * (new_sqrt - state.sqrt_price) // _Q96
        if amount0 is None:
            amount0 = (
                state.liquidity * _Q96 // new_sqrt - state.liquidity * _Q96 // state.sqrt_price
            )
        state.sqrt_price, state.tick = new_sqrt, _tick_of(new_sqrt)
        topics = [_SWAP, _topic(int(trader, 16)), _topic(int(trader, 16))]
        data = (
            abi_word(amount0) + abi_word(amount1) + abi_word(new_sqrt) + abi_word(state.liquidity)
            + abi_word(state.tick)
        )  # fmt: skip
        self._log(block, topics, data)
        return amount0, amount1


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


def _blocks_every(recording: Recording, block: int, every_s: float, count: int) -> list[int]:
    """``count`` blocks from ``block`` on, ``every_s`` apart in block time (each at least the
    one after the block before it)."""
    start, blocks = recording.timestamp(block), [block - 1]
    for part in range(count):
        blocks.append(max(blocks[-1] + 1, recording.block_at(start + part * every_s)))
    return blocks[1:]


def _fresh_pool_rug(
    recording: Recording, block: int, name: str
) -> tuple[list[dict[str, Any]], int, float, str]:
    """A new pool of the recorded pool's factory, paired with its token1: created and given
    a fiftieth of the real pool's in-range liquidity by its team in ``block``, bought up
    about 59 % over 90 s, then emptied by the team. Its logs, last block, size and address."""
    real = recording.pool
    fresh = RecordedPool(
        address=_address(f"{name}:pool"), chain_id=real.chain_id, factory=real.factory,
        token0=_address(f"{name}:token"), token1=real.token1, fee=_FRESH_FEE,
        tick_spacing=_FRESH_SPACING, block_time_s=real.block_time_s,
    )  # fmt: skip
    level = _state_before(recording, block).liquidity
    sqrt_price = int(math.sqrt(1e-4) * _Q96)  # a new token at 1e-4 of token1
    state = _State(sqrt_price, int(level * _FRESH_SHARE), _tick_of(sqrt_price))
    writer = _Writer(recording, state, name, fresh.address)
    team, buyer = _address(f"{name}:team"), _address(f"{name}:buyer")
    ticks = writer.wide_range(_FRESH_SPACING)
    writer.launch(block, creation_log(fresh, block, log_index=9_999), team, ticks)
    *pump, last = _blocks_every(recording, block, _FRESH_EVERY_S, _FRESH_PUMP_PARTS + 2)[1:]
    for number in pump:
        writer.swap(number, buyer, _FRESH_PUMP_STEP)
    writer.burn(last, team, 1.0, ticks)
    return writer.logs, last, 1.0, fresh.address


def _incident_logs(
    recording: Recording, kind: str, block: int, rng: random.Random, name: str
) -> tuple[list[dict[str, Any]], int, float, str]:
    """The logs of one incident starting at ``block``; its last block, size and pool."""
    if kind == "fresh-pool-rug":
        return _fresh_pool_rug(recording, block, name)
    logs, last, size = _pool_incident_logs(recording, kind, block, rng, name)
    return logs, last, size, recording.pool.address


def _pool_incident_logs(
    recording: Recording, kind: str, block: int, rng: random.Random, name: str
) -> tuple[list[dict[str, Any]], int, float]:
    """The logs of one incident of the recorded pool starting at ``block``; its last block
    and size."""
    writer = _Writer(recording, _state_before(recording, block), name)
    attacker, victim = _address(f"{name}:attacker"), _address(f"{name}:victim")
    if kind == "liquidity-drain":
        # Half to four fifths of the pool's in-range liquidity, over one to three blocks
        # (more is a rug pull: dexwatch.core.features.kinds).
        share, steps = rng.uniform(0.5, 0.8), rng.randint(1, 3)
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
        parts = _blocks_every(recording, block, _SLOW_DRAIN_EVERY_S, _SLOW_DRAIN_PARTS)
        for number in parts:
            writer.state = _state_before(recording, number)
            writer.burn(number, attacker, per_part)
        return writer.logs, parts[-1], share
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
    if kind == "sandwich":
        # The attacker's front-run, the victim's swap the same way, and the attacker's exact
        # way back (the token0 it got), one after another in the block.
        taken = 0
        for index in range(_SANDWICHES):
            number, up = block + 2 * index, index % 2 == 0
            writer.state = _state_before(recording, number)
            move = _SANDWICH_FRONT_MOVE if up else 1 / _SANDWICH_FRONT_MOVE
            front0, front1 = writer.swap(number, attacker, move)
            writer.swap(number, victim, _SANDWICH_VICTIM_MOVE if up else 1 / _SANDWICH_VICTIM_MOVE)
            _, back1 = writer.swap_amount0(number, attacker, -front0)
            taken += -(front1 + back1)  # token1 the attacker got back over what it paid
        return writer.logs, block + 2 * (_SANDWICHES - 1), float(taken)
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
        new_logs, last, size, pool = _incident_logs(recording, kind, block, rng, name)
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
                pool=pool,
            )  # fmt: skip
        )
    logs.sort(key=lambda log: (int(log["blockNumber"], 16), int(log["logIndex"], 16)))
    return Recording(recording.pool, logs), spliced
