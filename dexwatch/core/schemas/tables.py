"""Warehouse table schemas, declared once for every backend (DuckDB here, BigQuery in production).

Column types are BigQuery's standard SQL names; each backend maps them. Every table has a
natural key: writes are upserts on it, so replays and restarts never duplicate a row.
"""

from __future__ import annotations

from dataclasses import dataclass

COLUMN_TYPES = ("STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "JSON")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str = ""
    required: bool = True

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type}")


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...]
    partition_by: str | None = None  # a TIMESTAMP column; BigQuery partitions by day
    # BigQuery clustering: chain first, then the pool (or scope) a query names.
    cluster_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = {c.name for c in self.columns}
        missing = [k for k in (*self.natural_key, *self.cluster_by) if k not in names]
        if missing:
            raise ValueError(f"table {self.name}: unknown key columns {missing}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def bigquery_schema(self) -> dict:
        """The table schema as BigQuery's JSON (what WriteToBigQuery and Terraform take)."""
        return {
            "fields": [
                {
                    "name": c.name,
                    "type": c.type,
                    "mode": "REQUIRED" if c.required else "NULLABLE",
                    "description": c.description,
                }
                for c in self.columns
            ]
        }


INCIDENT_LABELS = Table(
    name="incident_labels",
    description="Ground truth of incidents injected into the local market (simulate inject).",
    columns=(
        Column("label_id", "STRING", "chain_id:pool:kind:first_block"),
        Column("chain_id", "INT64"),
        Column("dex", "STRING"),
        Column("pool", "STRING", "Pool or pair address, lower-case hex"),
        Column(
            "kind",
            "STRING",
            "liquidity-drain | slow-drain | rug-pull | price-manipulation | wash-trading",
        ),
        Column("first_block", "INT64"),
        Column("last_block", "INT64"),
        Column("first_timestamp", "TIMESTAMP"),
        Column("last_timestamp", "TIMESTAMP"),
        Column("injected_at", "TIMESTAMP"),
        Column("details", "STRING", "What the injector did"),
    ),
    natural_key=("label_id",),
    partition_by="first_timestamp",
    cluster_by=("chain_id", "pool"),
)


def _window_columns() -> tuple[Column, ...]:
    from dexwatch.core.features.chain import FEATURE_DEFINITIONS
    from dexwatch.core.features.hourly import HOURLY_FEATURE_DEFINITIONS

    # Both paths share the scored tables: each fills its own feature columns and leaves the
    # other path's empty (nullable; adding nullable columns is a compatible schema change
    # in BigQuery and DuckDB alike).
    return (
        Column(
            "window_id",
            "STRING",
            "chain: chain_id:pool:window_end (unix seconds); subgraph: chain_id:pool:"
            "hour_start:hour (the PoolHour's hour_id, marked so it never meets a chain window)",
        ),
        Column("chain_id", "INT64"),
        Column("dex", "STRING"),
        Column("pool", "STRING", "Pool or pair address, lower-case hex"),
        Column("source", "STRING", "chain (event windows) or subgraph (hourly rows)"),
        Column("window_start", "TIMESTAMP", "Start of the window or hour under test (event time)"),
        Column("window_end", "TIMESTAMP", "End of the window or hour under test (event time)"),
        *(
            Column(name, "FLOAT64", f"chain: {definition}", required=False)
            for name, definition in FEATURE_DEFINITIONS
        ),
        *(
            Column(name, "FLOAT64", f"subgraph: {definition}", required=False)
            for name, definition in HOURLY_FEATURE_DEFINITIONS
        ),
        Column(
            "events",
            "INT64",
            "chain: pool events in the window under test; subgraph: transactions in the hour",
        ),
        Column(
            "patterns",
            "JSON",
            "chain: same-block patterns in the window under test (sandwiches: block, attacker, "
            "front and back transactions, victims' transactions, value taken in token1 units; "
            "round trips: block, trader, first and second transactions, token0 moved, cost in "
            "token1 units)",
            required=False,
        ),
        Column("score", "FLOAT64", "Isolation Forest decision function: below 0 is anomalous"),
        Column("is_anomaly", "BOOL"),
        Column("top_features", "JSON", "The features that deviate most, with their values"),
        Column("model_version", "STRING"),
        Column("scored_at", "TIMESTAMP", "Processing time of the pane that wrote this row"),
    )


POOL_SCORES = Table(
    name="pool_scores",
    description=(
        "Every scored chain window and subgraph hour of every pool; early panes and "
        "recomputed hours are replaced by later ones."
    ),
    columns=_window_columns(),
    natural_key=("window_id",),
    partition_by="window_end",
    cluster_by=("chain_id", "pool"),
)

ANOMALIES = Table(
    name="anomalies",
    description=(
        "Scored windows and hours judged anomalous, with the alert thread they belong to "
        "(shared by both sources)."
    ),
    columns=(
        *_window_columns(),
        Column("severity", "STRING", "low | medium | high, from the score's distance below 0"),
        Column(
            "kind",
            "STRING",
            "What the window is: rug-pull, liquidity-drain, wash-trading, price-dislocation, ...",
        ),
        Column("confidence", "FLOAT64", "How sure the kind is, 0 to 1"),
        Column(
            "alert_id",
            "STRING",
            "The alert thread, shared by both sources: chain_id:pool:window_end of the row "
            "that opened it, or chain_id:scope:window_end of the market event whose thread "
            "took it (market, asset:<address>)",
        ),
    ),
    natural_key=("window_id",),
    partition_by="window_end",
    cluster_by=("chain_id", "pool"),
)

MARKET_EVENTS = Table(
    name="market_events",
    description=(
        "What the market view saw across a chain's pools at a slice end: a market-wide move "
        "or an asset off its peg (dexwatch.core.features.market), with its alert thread."
    ),
    columns=(
        Column("event_id", "STRING", "chain_id:scope:window_end"),
        Column("chain_id", "INT64"),
        Column("scope", "STRING", "market, or asset:<address> for a depeg"),
        Column("kind", "STRING", "market-move or depeg"),
        Column("window_start", "TIMESTAMP", "Start of the span measured (event time)"),
        Column("window_end", "TIMESTAMP", "The slice end it was seen at (event time)"),
        Column("pools", "JSON", "The pools it names: [{dex, pool}]"),
        Column("size", "FLOAT64", "Log move of the market factor, or the asset's deviation"),
        Column("severity", "STRING", "low | medium | high, from the size"),
        Column("evidence", "JSON", "What was seen, in words"),
        Column("alert_id", "STRING", "The alert thread: chain_id:scope:window_end of its first"),
    ),
    natural_key=("event_id",),
    partition_by="window_end",
    cluster_by=("chain_id", "scope"),
)

DEAD_LETTERS = Table(
    name="dead_letters",
    description="Messages the pipeline could not read, with the reason; nothing is dropped.",
    columns=(
        Column("letter_id", "STRING", "Pub/Sub message id, or a hash of the payload"),
        Column(
            "stage",
            "STRING",
            "Where it was rejected: parse, parse-hourly, admit, features, features-hourly, score",
        ),
        Column("reason", "STRING"),
        Column("payload", "STRING", "The message data as received (UTF-8, replaced errors)"),
        Column("attributes", "JSON"),
        Column("received_at", "TIMESTAMP"),
    ),
    natural_key=("letter_id",),
    partition_by="received_at",
)

POOLS = Table(
    name="pools",
    description=(
        "Every pool the chain publisher announced (its factory's creation log): the pools "
        "the pipeline scores."
    ),
    columns=(
        Column("pool_id", "STRING", "chain_id:pool"),
        Column("chain_id", "INT64"),
        Column("dex", "STRING"),
        Column("pool", "STRING", "Pool or pair address, lower-case hex"),
        Column("token0", "STRING"),
        Column("token1", "STRING"),
        Column("fee", "INT64", "V3 fee tier in hundredths of a basis point", required=False),
        Column("created_block", "INT64"),
        Column("created_at", "TIMESTAMP"),
        Column("announcement_id", "STRING", "event_id of the creation log"),
    ),
    natural_key=("pool_id",),
    cluster_by=("chain_id",),
)

ALERT_FEEDBACK = Table(
    name="alert_feedback",
    description=(
        "What operators said of an alert thread with its Slack buttons, one row per click; "
        "an alert's verdict is its latest row. Training reads it: confirmed windows become "
        "labelled incidents, not-incident windows false alerts. The alert's columns are "
        "empty when the clicked message carried no metadata."
    ),
    columns=(
        Column("feedback_id", "STRING", "alert_id:user:action_ts (one click)"),
        Column("alert_id", "STRING", "The alert thread (the anomalies table's alert_id)"),
        Column("verdict", "STRING", "acknowledged | not-incident | confirmed"),
        Column("user_id", "STRING", "The Slack user who clicked"),
        Column("user_name", "STRING", required=False),
        Column("chain_id", "INT64", required=False),
        Column("scope", "STRING", "pool, market or asset:<address>", required=False),
        Column("pools", "JSON", "The alert's pools: [{dex, pool}]", required=False),
        Column("kind", "STRING", "The alert's kind at its latest revision", required=False),
        Column("revision", "INT64", "The revision the clicked message showed", required=False),
        Column(
            "window_start",
            "TIMESTAMP",
            "The thread's first window start (event time)",
            required=False,
        ),
        Column("window_end", "TIMESTAMP", "The revision's window end (event time)", required=False),
        Column("channel", "STRING"),
        Column("message_ts", "STRING", "The Slack message clicked"),
        Column("clicked_at", "TIMESTAMP"),
    ),
    natural_key=("feedback_id",),
    partition_by="clicked_at",
    cluster_by=("alert_id",),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        INCIDENT_LABELS, POOL_SCORES, ANOMALIES, MARKET_EVENTS, DEAD_LETTERS, POOLS,
        ALERT_FEEDBACK,
    )
}  # fmt: skip
