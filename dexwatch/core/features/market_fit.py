"""The market view's statistics: asset levels fitted to the pools' prices by least absolute
deviations, and each move's usual size (``dexwatch.core.features.market``)."""

from __future__ import annotations

import math

import numpy as np

# A move's limit is also this many of its own usual moves over the horizon (the root mean
# square, weighted exp(-age / a day), after an hour of them): a market whose assets move
# 3 % in five minutes every hour (the default simulated market's ten-minute days) needs a
# larger move than a real one (ETH: about 0.3 %), whose limit stays move_threshold.
_USUAL_MOVES = 5.0
_USUAL_DECAY_S = 86_400.0
_USUAL_AFTER_S = 3600
# The robust fit's rounds, and the misfit below which a pool counts as agreeing (a log: a
# hundredth of a basis point).
_FIT_ROUNDS = 30
_FIT_FLOOR = 1e-6


def least_absolute(design: np.ndarray, targets: np.ndarray, pin: np.ndarray) -> np.ndarray:
    """The levels that minimise the sum of absolute misfits, with ``pin @ levels = 0``
    (iteratively reweighted least squares): one pool off the others' consensus keeps its
    misfit to itself instead of spreading it over every asset it links."""
    weights = np.ones(len(targets))
    solution = np.zeros(design.shape[1])
    for _ in range(_FIT_ROUNDS):
        root = np.sqrt(weights)[:, None]
        system = np.vstack([design * root, pin * 1e6])
        solution = np.linalg.lstsq(system, np.append(targets * root[:, 0], 0.0), rcond=None)[0]
        weights = 1.0 / np.maximum(np.abs(design @ solution - targets), _FIT_FLOOR)
    return solution


def spread(levels: np.ndarray, members: list[int]) -> float:
    priced = [i for i in members if not np.isnan(levels[i])]
    return float(max(levels[priced]) - min(levels[priced])) if len(priced) >= 2 else 0.0


class UsualMoves:
    """Each key's usual move (the market factor's, a pool's gap from it): the root mean
    square of its moves, weighted exp(-age / _USUAL_DECAY_S)."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[int, int, float, float]] = {}  # first, last, sum w, w x^2

    def limit(self, key: str, at: int, move: float, floor: float) -> float:
        """The limit of ``move`` from the moves before it (then it is folded in): ``floor``,
        or _USUAL_MOVES usual moves if more; infinite before _USUAL_AFTER_S of moves."""
        first, last, weight, squares = self._state.get(key, (at, at, 0.0, 0.0))
        usual = math.sqrt(squares / weight) if weight else 0.0
        decay = math.exp(-(at - last) / _USUAL_DECAY_S)
        # A move past the floor is an incident, not a habit: it counts at the floor's size
        # (a pool's manipulations caught at slice ends would raise its own limit).
        folded = min(abs(move), floor)
        self._state[key] = (first, at, weight * decay + 1.0, squares * decay + folded * folded)
        if at - first < _USUAL_AFTER_S:
            return math.inf
        return max(floor, _USUAL_MOVES * usual)


def fit_levels(
    edges: list[tuple[int, int, float]], assets: int, numeraire: list[int]
) -> np.ndarray | None:
    """Every asset's log price (its *level*) from ``edges`` (token0, token1, the pool's log
    price in token1 per token0), pinned to the numeraire's assets' mean; NaN where no pool
    links an asset to the numeraire's main group (``linked_group``); None without one."""
    linked = linked_group(edges, numeraire)
    if not linked:
        return None
    order = sorted(linked)
    column = {asset: k for k, asset in enumerate(order)}
    rows, targets = [], []
    for token0, token1, price in edges:
        if token0 in column:
            row = np.zeros(len(order))
            row[column[token0]], row[column[token1]] = 1.0, -1.0
            rows.append(row)
            targets.append(price)
    pin = np.zeros(len(order))
    for asset in numeraire:
        if asset in column:
            pin[column[asset]] = 1.0
    levels = np.full(assets, np.nan)
    levels[order] = least_absolute(np.array(rows), np.array(targets), pin)
    return levels


def linked_group(edges: list[tuple[int, int, float]], numeraire: list[int]) -> set[int]:
    """The assets a chain of pools links to the numeraire's main group: of the groups no
    pool links to each other, the one with the most numeraire assets, then assets. (One pin
    for two groups would set their levels against each other arbitrarily: a DAI whose pools
    to USDC fell silent or were drained read as 77 % off its peg.)"""
    neighbours: dict[int, set[int]] = {}
    for token0, token1, _ in edges:
        neighbours.setdefault(token0, set()).add(token1)
        neighbours.setdefault(token1, set()).add(token0)
    groups: list[set[int]] = []
    for start in (asset for asset in numeraire if asset in neighbours):
        if any(start in group for group in groups):
            continue
        group, frontier = {start}, [start]
        while frontier:
            for other in neighbours[frontier.pop()] - group:
                group.add(other)
                frontier.append(other)
        groups.append(group)
    return max(groups, key=lambda g: (len(g & set(numeraire)), len(g)), default=set())
