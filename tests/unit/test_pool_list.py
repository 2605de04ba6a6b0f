"""The pool gate of publishers/chain/pool_list.py on its own: chain.pool_filter with the
subgraphs' list (a stand-in list and a stand-in chain of pool creations, a manual clock)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import pytest

from dexwatch.core.settings import PoolFilter
from publishers.chain.errors import PoolListError
from publishers.chain.events import Pool
from publishers.chain.pool_list import PoolGate, tvl_query, volume_query
from publishers.subgraph.entities import SPECS
from publishers.subgraph.errors import SubgraphQueryError, SubgraphUnavailable

TOKEN_A, TOKEN_B, TOKEN_C = (f"0x{n:040x}" for n in (0xA, 0xB, 0xC))


def _address(n: int) -> str:
    return f"0x{n:040x}"


def _pool(n: int, block: int, tokens: tuple[str, str] = (TOKEN_A, TOKEN_B)) -> Pool:
    return Pool(_address(n), "uniswap_v3", "v3", _address(0xF), block, *tokens)


class _List:
    """A pool list whose answer the test sets; counts its reads."""

    def __init__(self, *pools: Pool) -> None:
        self.listed: frozenset[str] | Exception = frozenset(p.address for p in pools)
        self.reads = 0

    def read(self) -> frozenset[str]:
        self.reads += 1
        if isinstance(self.listed, Exception):
            raise self.listed
        return self.listed


class _Chain:
    """Pool creations by block, read through the gate as the follower reads them."""

    def __init__(self, gate: PoolGate, pools: Iterable[Pool]) -> None:
        self.gate = gate
        self.pools = list(pools)
        self.asked: list[Sequence[int] | None] = []

    def created(self, blocks: Sequence[int] | None, last: int) -> list[Pool]:
        self.asked.append(None if blocks is None else list(blocks))
        wanted = (lambda b: b <= last) if blocks is None else set(blocks).__contains__
        return [p for p in self.pools if wanted(p.created_block) and self.gate.follows(p)]


class _Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gate(pool_list: _List, **pool_filter) -> tuple[PoolGate, _Clock]:
    clock = _Clock()
    settings = PoolFilter(min_tvl_usd=1e6, refresh_s=60, **pool_filter)
    return PoolGate(settings, pool_list, clock), clock


def test_without_a_threshold_the_gate_is_the_filter_and_reads_no_list() -> None:
    denied = _pool(2, 5)
    gate = PoolGate(PoolFilter(deny=[denied.address]))
    chain = _Chain(gate, [_pool(1, 5), denied])
    gate.start(first_start=True)
    assert [p.address for p in chain.created(None, 10)] == [_address(1)]
    assert gate.newly_listed(10, set(), chain.created) == []
    assert chain.asked == [None]  # only the test's own read
    with pytest.raises(PoolListError, match="no pool list"):
        PoolGate(PoolFilter(min_volume_usd_24h=10.0))


def test_listed_and_allowed_pools_are_followed_denied_and_other_tokens_never() -> None:
    listed, unlisted, allowed, denied, other = (_pool(n, 5) for n in range(1, 6))
    other = _pool(5, 5, (TOKEN_C, TOKEN_C))
    pool_list = _List(listed, denied, other)
    gate, _ = _gate(
        pool_list, allow=[allowed.address], deny=[denied.address], tokens=[TOKEN_A, TOKEN_B]
    )
    gate.start(first_start=True)
    assert gate.listed == {listed.address, denied.address, other.address}
    follows = {p.address: gate.follows(p) for p in (listed, unlisted, allowed, denied, other)}
    assert follows == {
        listed.address: True,
        unlisted.address: False,  # waits for a listing
        allowed.address: True,  # allow wins over the thresholds
        denied.address: False,  # deny wins over the list
        other.address: False,  # and so do the tokens
    }


def test_a_waiting_pool_is_followed_once_a_refresh_lists_it() -> None:
    listed, later, young = _pool(1, 5), _pool(2, 6), _pool(3, 30)
    pool_list = _List(listed)
    gate, clock = _gate(pool_list)
    chain = _Chain(gate, [listed, later, young])
    gate.start(first_start=True)
    assert [p.address for p in chain.created(None, 30)] == [listed.address]
    followed = {listed.address}
    # The same list: nothing to add, and no creation is read again.
    assert gate.newly_listed(20, followed, chain.created) == []
    assert chain.asked == [None, []]

    pool_list.listed = frozenset({listed.address, later.address, young.address})
    clock.now += 59
    assert gate.newly_listed(20, followed, chain.created) == []  # not yet refresh_s later
    assert pool_list.reads == 1
    clock.now += 1
    # Read again: the pool created up to the checkpoint's block is followed from the next
    # batch on; the one created after it is found by the batches that read its block.
    assert gate.newly_listed(20, followed, chain.created) == [later]
    assert (pool_list.reads, chain.asked[-1]) == (2, [6])
    # A batch read again (the chain moved) finds it again, until it is followed.
    assert gate.newly_listed(20, followed, chain.created) == [later]
    followed.add(later.address)
    asked = len(chain.asked)
    assert gate.newly_listed(24, followed, chain.created) == []
    assert gate.newly_listed(24, followed, chain.created) == []
    assert chain.asked[asked:] == [[]]  # then nothing is read until the next list


def test_a_followed_pool_that_falls_below_the_threshold_stays_followed() -> None:
    pool = _pool(1, 5)
    pool_list = _List(pool)
    gate, clock = _gate(pool_list)
    chain = _Chain(gate, [pool])
    gate.start(first_start=True)
    chain.created(None, 10)
    pool_list.listed = frozenset()
    clock.now += 60
    # Nothing is taken away: the gate only adds pools (the follower keeps what it follows).
    assert gate.newly_listed(10, {pool.address}, chain.created) == []
    assert gate.listed == frozenset()


def test_a_restart_reads_every_creation_once_when_the_list_names_pools_it_never_saw() -> None:
    followed_before, crossed, still_below = _pool(1, 5), _pool(2, 6), _pool(3, 7)
    pool_list = _List(followed_before, crossed)
    gate, clock = _gate(pool_list)
    chain = _Chain(gate, [followed_before, crossed, still_below])
    gate.start(first_start=False)  # a checkpoint: only followed_before is followed
    followed = {followed_before.address}
    assert gate.newly_listed(20, followed, chain.created) == [crossed]
    assert chain.asked == [None]
    followed.add(crossed.address)
    # The pools below wait now: a later listing reads their block only.
    pool_list.listed = frozenset({*followed, still_below.address})
    clock.now += 60
    assert gate.newly_listed(20, followed, chain.created) == [still_below]
    assert chain.asked == [None, [7]]


def test_an_unreachable_list_stops_a_first_start_only(caplog) -> None:
    down = SubgraphUnavailable("pool list on http://127.0.0.1:1/subgraphs/id/x: no answer")
    pool_list = _List()
    pool_list.listed = down
    gate, clock = _gate(pool_list)
    with pytest.raises(PoolListError, match=r"first start.*subgraphs/id/x: no answer"):
        gate.start(first_start=True)
    caplog.set_level(logging.WARNING, logger="dexwatch.publisher.chain.pool_list")
    gate.start(first_start=False)
    assert "following the pools followed so far" in caplog.text
    # Later reads that fail keep the last list.
    pool_list.listed = frozenset({_address(1)})
    clock.now += 60
    gate.newly_listed(10, set(), _Chain(gate, []).created)
    assert gate.listed == {_address(1)}
    pool_list.listed = down
    clock.now += 60
    assert gate.newly_listed(10, set(), _Chain(gate, []).created) == []
    assert gate.listed == {_address(1)} and "keeping the last one" in caplog.text

    refused = _List()
    refused.listed = SubgraphQueryError("http://x/subgraphs/id/y has no field 'reserveUSD'")
    with pytest.raises(PoolListError, match="no field 'reserveUSD'"):
        _gate(refused)[0].start(first_start=False)


def test_queries_page_by_id_with_the_thresholds_of_each_protocol() -> None:
    assert "pools(first: $first, orderBy: id" in tvl_query(SPECS["v3"])
    assert "totalValueLockedUSD_gte: $min, id_gt: $after" in tvl_query(SPECS["v3"])
    assert "pairs(first: $first" in tvl_query(SPECS["v2"])
    assert "reserveUSD_gte: $min" in tvl_query(SPECS["v2"])
    v2 = volume_query(SPECS["v2"])
    assert "pairHourDatas(first: $first, orderBy: id" in v2
    assert "hourStartUnix_gte: $from" in v2 and "pair { id } hourlyVolumeUSD" in v2
