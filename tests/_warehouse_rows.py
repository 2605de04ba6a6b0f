"""Rows of the pipeline's and the Slack consumer's shape for the warehouse views' tests
(tests/integration/test_bigquery_views.py): scored windows and hours, anomalies with their
alert threads, clicks and dead letters, with early panes later replaced and a retried click;
on two chains: Ethereum (1) and Polygon (137), where the address P1 is a pool too (CREATE2
addresses repeat across chains).

Their times are relative to now (the views' "last 7 days" is CURRENT_TIMESTAMP's): the recent
rows lie within one hour R, so within one UTC day; the others 2 and 10 days earlier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from beam_pipelines.transforms.parse import dead_letter_row
from dexwatch.core.features.chain import FEATURE_DEFINITIONS
from dexwatch.core.features.hourly import HOURLY_FEATURE_DEFINITIONS
from dexwatch.core.schemas.alert import TopFeature
from dexwatch.core.schemas.tables import (
    ALERT_FEEDBACK,
    ANOMALIES,
    DEAD_LETTERS,
    POOL_SCORES,
    Table,
)

R = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
D2, D10 = R - timedelta(days=2), R - timedelta(days=10)
MIN = timedelta(minutes=1)
P1, P2, P3 = "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20
V3, SUSHI, V2 = "uniswap-v3", "sushiswap", "uniswap-v2"


def t(minutes: int) -> datetime:
    return R + minutes * MIN


POLYGON = 137


def _id(pool: str, end: datetime, chain_id: int = 1) -> str:
    return f"{chain_id}:{pool}:{int(end.timestamp())}"


def scored(
    pool, dex, end, score, scored_at, *, source="chain", top="liquidity_removed_share", chain_id=1
):
    """A pool_scores row as the scoring step yields it (chain windows of 5 minutes)."""
    chain = source == "chain"
    start = end - (5 * MIN if chain else timedelta(hours=1))
    features = FEATURE_DEFINITIONS if chain else HOURLY_FEATURE_DEFINITIONS
    return {
        "window_id": _id(pool, end, chain_id) if chain else f"{_id(pool, start, chain_id)}:hour",
        "chain_id": chain_id, "dex": dex, "pool": pool, "source": source,
        "window_start": start, "window_end": end, "events": 12 if chain else 40,
        **{name: 0.5 for name, _ in features}, **({"patterns": None} if chain else {}),
        "score": score, "is_anomaly": score < 0,
        "top_features": orjson.dumps([TopFeature(name=top, value=0.9, deviation=6.5).model_dump()])
        .decode(),
        "model_version": "chain-v7" if chain else "hourly-v2", "scored_at": scored_at,
    }  # fmt: skip


def anomaly(row: dict, severity: str, kind: str, alert_id: str) -> dict:
    return {**row, "severity": severity, "kind": kind, "confidence": 0.75, "alert_id": alert_id}


A1, A2, A3, A5 = _id(P1, t(5)), _id(P2, t(25)), _id(P2, D2 + 5 * MIN), _id(P3, D10 + 5 * MIN)
MARKET = f"1:market:{int(D2.timestamp())}"  # a market event's thread, no pool anomaly in it
A_POLY = _id(P1, t(5), POLYGON)  # P1 on Polygon: a thread of two windows

S_P1 = {
    "hour": scored(P1, V3, t(0), -0.02, t(20), source="subgraph", top="tvl_usd"),
    5: scored(P1, V3, t(5), -0.12, t(9)),
    10: scored(P1, V3, t(10), -0.30, t(11), top="liquidity_lost_1h"),
    15: scored(P1, V3, t(15), -0.08, t(16)),
}
S_P2 = {25: scored(P2, SUSHI, t(25), -0.04, t(26), top="top_trader_share"),
        30: scored(P2, SUSHI, t(30), -0.06, t(34), top="top_trader_share"),
        "d2": scored(P2, SUSHI, D2 + 5 * MIN, -0.15, D2 + 6 * MIN, top="price_change")}  # fmt: skip
P3_SCORES = (-0.5, -0.2, -0.1, -0.07, -0.06)
P3_KINDS = ("rug-pull", "liquidity-drain", "rug-pull", "rug-pull", "rug-pull")
P3_SEVERITIES = ("high", "medium", "low", "low", "low")
S_P3 = [scored(P3, V2, D10 + 5 * k * MIN, s, D10 + (5 * k + 1) * MIN)
        for k, s in enumerate(P3_SCORES, start=1)]  # fmt: skip
S_POLY = {m: scored(P1, V3, t(m), s, t(m + 1), chain_id=POLYGON, top="price_change")
          for m, s in ((5, -0.20), (10, 0.10), (15, -0.40))}  # fmt: skip
SCORES_EARLY = [  # early panes: replaced by later ones of the same window_id
    scored(P1, V3, t(5), -0.05, t(6)),
    scored(P2, SUSHI, t(30), -0.01, t(31), top="top_trader_share"),
    scored(P3, V2, D10 + 10 * MIN, -0.03, D10 + 10 * MIN + timedelta(seconds=30)),
]
SCORES = [
    scored(P1, V3, t(0), 0.10, t(1)),
    *S_P1.values(),
    scored(P1, V3, t(20), 0.05, t(21)),
    scored(P1, V3, D10 + 5 * MIN, 0.2, D10 + 6 * MIN),
    *S_P2.values(),
    *S_P3,
    *S_POLY.values(),
]
ANOMALIES_EARLY = [
    anomaly(SCORES_EARLY[0], "low", "liquidity-drain", A1),
    anomaly(SCORES_EARLY[1], "low", "price-dislocation", A2),
    anomaly(SCORES_EARLY[2], "low", "rug-pull", A5),
]
ANOMALY_ROWS = [
    anomaly(S_P1["hour"], "low", "liquidity-drain", A1),
    anomaly(S_P1[5], "medium", "liquidity-drain", A1),
    anomaly(S_P1[10], "high", "rug-pull", A1),
    anomaly(S_P1[15], "low", "rug-pull", A1),
    anomaly(S_P2[25], "low", "wash-trading", A2),
    anomaly(S_P2[30], "low", "wash-trading", A2),
    anomaly(S_P2["d2"], "medium", "price-dislocation", A3),
    *(anomaly(row, sev, kind, A5)
      for row, sev, kind in zip(S_P3, P3_SEVERITIES, P3_KINDS, strict=True)),
    anomaly(S_POLY[5], "medium", "price-dislocation", A_POLY),
    anomaly(S_POLY[15], "high", "rug-pull", A_POLY),
]  # fmt: skip


def click(alert_id, user_id, verdict, at, user_name=None, **alert) -> dict:
    """An alert_feedback row as the Slack consumer writes it (``alert``: the message's)."""
    return {
        "feedback_id": f"{alert_id}:{user_id}:{at.timestamp():.6f}", "alert_id": alert_id,
        "verdict": verdict, "user_id": user_id, "user_name": user_name, "channel": "C1",
        "message_ts": "1790000000.000100", "clicked_at": at, **alert,
    }  # fmt: skip


def _pools(*pairs) -> str:
    return orjson.dumps([{"dex": d, "pool": p} for d, p in pairs]).decode()


ALICE = click(
    A1,
    "U1",
    "acknowledged",
    t(30),
    "alice",
    chain_id=1,
    scope="pool",
    revision=0,
    kind="liquidity-drain",
    pools=_pools((V3, P1)),
    window_start=t(0),
    window_end=t(5),
)
BOB = click(
    A1,
    "U2",
    "confirmed",
    t(40),
    "bob",
    chain_id=1,
    scope="pool",
    revision=1,
    kind="rug-pull",
    pools=_pools((V3, P1)),
    window_start=t(0),
    window_end=t(10),
)
CAROL = click(A3, "U3", "not-incident", D2 + 60 * MIN)  # the message carried no metadata
DAVE = click(MARKET, "U4", "not-incident", D2 + 120 * MIN, "dave", chain_id=1, scope="market",
             revision=0, kind="market-move", pools=_pools((V3, P1), (SUSHI, P2)),
             window_start=D2 - 60 * MIN, window_end=D2)  # fmt: skip
ERIN = click(A_POLY, "U5", "acknowledged", t(45), "erin", chain_id=POLYGON, scope="pool",
             revision=1, kind="rug-pull", pools=_pools((V3, P1)), window_start=t(0),
             window_end=t(15))  # fmt: skip


def letter(stage, reason, data, message_id, at, **attributes) -> dict:
    return {**dead_letter_row(stage, reason, data, {"event_time": "1", **attributes},
                              message_id), "received_at": at}  # fmt: skip


L1 = letter("parse", "not JSON", b"{oops", "m-1", t(1))
LETTERS_EARLY = [L1]
LETTERS = [
    {**L1, "received_at": t(50)},  # redelivered: the same letter_id
    letter("parse", "missing field pool", b'{"a": 1}', "m-2", t(10)),
    letter("score", "not finite: price_change", b"{}", None, D2 + 30 * MIN),
    letter("parse", "missing field dex", b'{"b": 2}', "m-3", t(12), chain_id=str(POLYGON)),
]

# (table, batches in write order): what the pipeline and the Slack consumer write.
WRITES: list[tuple[Table, list[list[dict]]]] = [
    (POOL_SCORES, [SCORES_EARLY, SCORES]),
    (ANOMALIES, [ANOMALIES_EARLY, ANOMALY_ROWS]),
    (ALERT_FEEDBACK, [[ALICE, BOB, CAROL], [BOB, DAVE, ERIN]]),  # BOB's insert retried
    (DEAD_LETTERS, [LETTERS_EARLY, LETTERS]),
]
