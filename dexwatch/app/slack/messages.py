"""Alerts as Slack messages: Block Kit for people, a plain-text fallback for notifications,
and metadata that lets the consumer find its own posts again after a crash.

One layout per scope: a pool's alert (header with the kind, the pool with its dex and fee
tier, the chain), a multi-pool alert (market move, depeg: the pools listed), a model's
feature drift (the drifted features' PSI); a revision's reply is a short line of what
changed, and a burst of alerts on one channel is one summary with each alert in its thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from dexwatch.core.schemas.alert import Alert

ALERT_EVENT = "dexwatch_alert"
BURST_EVENT = "dexwatch_burst"
# The buttons: action_id → the verdict written to alert_feedback.
VERDICTS = {
    "dexwatch_acknowledge": ("Acknowledge", "acknowledged", None),
    "dexwatch_not_incident": ("Not an incident", "not-incident", "danger"),
    "dexwatch_confirmed": ("Confirmed incident", "confirmed", "primary"),
}
VERDICT_WORDS = {
    "acknowledged": "acknowledged",
    "not-incident": "marked not an incident",
    "confirmed": "confirmed an incident",
}
SEVERITY_MARK = {"high": ":red_circle:", "medium": ":large_orange_circle:", "low": ":white_circle:"}
# The model's features in a few words (definitions in dexwatch.core.features).
FEATURE_WORDS = {
    "volume_ratio": "volume against the last minutes",
    "swap_count_ratio": "swaps against the last minutes",
    "liquidity_removed_share": "share of liquidity removed",
    "net_liquidity_change": "net liquidity change",
    "price_change": "price change",
    "price_range": "price range within the window",
    "max_swap_price_impact": "largest price impact of one swap",
    "top_trader_share": "share of volume of the top trader",
    "pair_two_way_excess": "one trader buying and selling",
    "liquidity_lost_1h": "liquidity lost over the hour",
    "price_drift_1h": "price drift over the hour",
    "liquidity_lost_24h": "liquidity lost over the day",
    "volume_1h_vs_usual": "hour's volume against the usual",
    "sandwiches": "sandwiches",
    "crossed_swaps": "two traders swapping the same amount back and forth",
    "volume_usd": "hour's volume (USD)",
    "tvl_usd": "value locked (USD)",
    "liquidity": "liquidity",
    "tx_count": "transactions in the hour",
    "vol_rate_24h": "volume against the day's rate",
    "tvl_rate_24h": "value locked against the day's",
    "vol_tvl_ratio": "volume over value locked",
    "volume_zscore": "volume z-score",
}
MAX_POOLS_LISTED = 10
_HEX = re.compile(r"\b0x(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40})\b")


@dataclass(frozen=True)
class PoolInfo:
    """What a header says of a pool: its pair and fee tier, when known."""

    pair: str = ""
    fee: int | None = None

    def label(self, dex: str, pool: str) -> str:
        fee = f" {self.fee / 10_000:g}%" if self.fee is not None else ""
        name = self.pair or short(pool)
        return f"{name}{fee} on {dex}"


@dataclass(frozen=True)
class Links:
    """Where a message links to: the chain's block explorer and the dashboard."""

    explorer: str | None = None
    dashboard: str | None = None
    # The chain's name (its id where none is known).
    chain: str | None = None

    def pool(self, pool: str) -> str | None:
        return f"{self.explorer}/address/{pool}" if self.explorer and pool != "*" else None

    def linked(self, text: str) -> str:
        """``text`` with its transaction hashes and addresses as explorer links."""
        if not self.explorer:
            return text

        def link(match: re.Match[str]) -> str:
            found = match.group(0)
            path = "tx" if len(found) == 66 else "address"
            return f"<{self.explorer}/{path}/{found}|{short(found)}>"

        return _HEX.sub(link, text)

    def pool_page(self, pool: str, chain_id: int | None = None) -> str | None:
        """The dashboard's page of a pool (a pool is its chain and address)."""
        if not self.dashboard:
            return None
        chain = f"&chain={chain_id}" if chain_id is not None else ""
        return f"{self.dashboard.rstrip('/')}/pool?pool={quote(pool)}{chain}"


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)


def short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address


def title(alert: Alert, pools: dict[str, PoolInfo] | None = None, chain: str | None = None) -> str:
    """The header line: kind, where, chain (``chain``: its name)."""
    kind = alert.kind.replace("-", " ").capitalize()
    if alert.scope == "model":
        parts = alert.alert_id.split(":")  # chain:feature-drift:model:version:day
        where = f"model {parts[2] if len(parts) > 2 else ''} {alert.model_version}".strip()
    elif alert.scope == "pool":
        where = (pools or {}).get(alert.pool, PoolInfo()).label(alert.dex, alert.pool)
    elif alert.scope.startswith("asset:"):
        where = f"asset {short(alert.scope.removeprefix('asset:'))}, {len(alert.pools)} pools"
    else:
        where = f"{len(alert.pools)} pools"
    return f"{kind} · {where} · {chain or f'chain {alert.chain_id}'}"


def alert_metadata(alert: Alert) -> dict[str, Any]:
    """The message's metadata: the thread and revision (to find the post again), and what the
    feedback table records of the alert (a click may reach a consumer that never saw it)."""
    return {
        "event_type": ALERT_EVENT,
        "event_payload": {
            "alert_id": alert.alert_id,
            "revision": alert.revision,
            "chain_id": alert.chain_id,
            "scope": alert.scope,
            "kind": alert.kind,
            "window_start": alert.window_start.isoformat(),
            "window_end": alert.window_end.isoformat(),
            "pools": [f"{p.dex}:{p.pool}" for p in alert.pools],
        },
    }


def alert_message(
    alert: Alert,
    links: Links,
    pools: dict[str, PoolInfo] | None = None,
    feedback: list[str] | None = None,
) -> Message:
    """The thread's root: the alert at its latest revision, with the operators' feedback."""
    head = title(alert, pools, links.chain)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(head[:150])},
        {"type": "section", "fields": _fields(alert)},
    ]
    if alert.scope == "model":
        blocks.append(_section("*Drifted features* (PSI)\n" + _drift_lines(alert)))
    else:
        if alert.scope != "pool":
            blocks.append(_section(_pool_lines(alert, links, pools)))
        if alert.top_features:
            blocks.append(_section("*What deviates*\n" + _feature_lines(alert)))
    if alert.evidence:
        evidence = "\n".join(f"• {links.linked(e)}" for e in alert.evidence[:4])
        blocks.append(_section("*Evidence*\n" + evidence))
    blocks.append(
        {"type": "actions", "block_id": "dexwatch_feedback", "elements": _buttons(alert, links)}
    )
    context = [f"alert_id `{alert.alert_id}`", f"revision {alert.revision}",
               f"model {alert.model_version}", f"detected {_time(alert.detected_at)}"]  # fmt: skip
    if feedback:
        blocks.append({"type": "context", "elements": [_mrkdwn(" · ".join(feedback))]})
    blocks.append({"type": "context", "elements": [_mrkdwn(" · ".join(context))]})
    text = (
        f"{alert.severity.upper()} {head}: score {alert.score:.3f}, window "
        f"{_time(alert.window_start)}-{_time(alert.window_end)} (alert {alert.alert_id})"
    )
    return Message(text, blocks, alert_metadata(alert))


def revision_message(alert: Alert, before: Alert | None) -> Message:
    """A revision's reply in the thread: what changed since the revision before."""
    changes = []
    if before is None or before.kind != alert.kind:
        changes.append(f"kind *{alert.kind}*")
    if before is None or before.severity != alert.severity:
        changes.append(f"severity *{alert.severity}*")
    changes.append(f"score {alert.score:.3f}")
    line = (
        f"{SEVERITY_MARK[alert.severity]} Update {alert.revision}: " + ", ".join(changes)
        + f"; window {_time(alert.window_start)}-{_time(alert.window_end)}"
    )  # fmt: skip
    blocks: list[dict[str, Any]] = [_section(line)]
    if alert.top_features:
        blocks.append(_section(_feature_lines(alert)))
    blocks.append({"type": "context", "elements": [_mrkdwn(f"alert_id `{alert.alert_id}`")]})
    return Message(line.replace("*", ""), blocks, alert_metadata(alert))


def burst_message(
    alerts: list[Alert],
    pools: dict[str, PoolInfo] | None = None,
    chains: Mapping[int, str] | None = None,
) -> Message:
    """One summary for many new alerts on a channel at once; each follows in its thread
    (``chains``: the chains' names by id)."""
    chains = chains or {}
    by_kind: dict[str, int] = {}
    for alert in alerts:
        by_kind[alert.kind] = by_kind.get(alert.kind, 0) + 1
    worst = max(alerts, key=lambda a: ("low", "medium", "high").index(a.severity))
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(by_kind.items(), key=lambda x: -x[1]))
    on = sorted({chains.get(a.chain_id, f"chain {a.chain_id}") for a in alerts})
    head = f"{len(alerts)} alerts at once on {', '.join(on)}"
    lines = [
        f"{SEVERITY_MARK[a.severity]} {title(a, pools, chains.get(a.chain_id))}"
        for a in alerts[:MAX_POOLS_LISTED]
    ]
    if len(alerts) > MAX_POOLS_LISTED:
        lines.append(f"… and {len(alerts) - MAX_POOLS_LISTED} more")
    blocks = [
        {"type": "header", "text": _plain(head)},
        _section(f"*{kinds}*; worst: {worst.severity}. Each alert is a reply in this thread."),
        _section("\n".join(lines)),
    ]
    metadata = {
        "event_type": BURST_EVENT,
        "event_payload": {"alert_ids": [a.alert_id for a in alerts]},
    }
    return Message(f"{head}: {kinds}", blocks, metadata)


def feedback_message(verdict: str, user: str, alert_id: str) -> Message:
    line = f"<@{user}> {VERDICT_WORDS.get(verdict, verdict)}"
    return Message(f"{user} {VERDICT_WORDS.get(verdict, verdict)} ({alert_id})", [_section(line)])


def as_text(message: Message) -> str:
    """A message's blocks as plain text, roughly as Slack shows them (README, `slack show`)."""
    out: list[str] = []
    for block in message.blocks:
        kind = block["type"]
        if kind == "header":
            out.append(f"┃ {block['text']['text']}")
        elif kind == "section":
            if "text" in block:
                out.extend(f"┃ {line}" for line in block["text"]["text"].splitlines())
            if "fields" in block:
                out.append("┃ " + "   ".join(f["text"].replace("\n", " ") for f in block["fields"]))
        elif kind == "actions":
            out.append("┃ " + " ".join(f"[{e['text']['text']}]" for e in block["elements"]))
        elif kind == "context":
            out.append("┃ " + " ".join(e["text"] for e in block["elements"]))
    return "\n".join(out)


def _fields(alert: Alert) -> list[dict[str, Any]]:
    source = {"chain": "chain events", "subgraph": "subgraph hours", "market": "market view"}
    return [
        _mrkdwn(f"*Severity*\n{SEVERITY_MARK[alert.severity]} {alert.severity}"),
        _mrkdwn(f"*Score*\n{alert.score:.3f} (below 0 is anomalous)"),
        _mrkdwn(f"*Window*\n{_time(alert.window_start)} – {_time(alert.window_end)} UTC"),
        _mrkdwn(f"*Kind*\n{alert.kind} ({alert.confidence:.0%} sure), from {source[alert.source]}"),
    ]


def _feature_lines(alert: Alert) -> str:
    lines = []
    for f in alert.top_features[:5]:
        words = FEATURE_WORDS.get(f.name, f.name.replace("_", " "))
        side = "above" if f.deviation >= 0 else "below"
        lines.append(f"• {words}: {f.value:.4g} ({abs(f.deviation):.1f} sd {side} usual)")
    return "\n".join(lines)


def _drift_lines(alert: Alert) -> str:
    return "\n".join(
        f"• {FEATURE_WORDS.get(f.name, f.name)} (`{f.name}`): PSI {f.value:.3f}"
        for f in alert.top_features
    )


def _pool_lines(alert: Alert, links: Links, pools: dict[str, PoolInfo] | None) -> str:
    lines = []
    for ref in alert.pools[:MAX_POOLS_LISTED]:
        label = (pools or {}).get(ref.pool, PoolInfo()).label(ref.dex, ref.pool)
        url = links.pool(ref.pool)
        lines.append(f"• <{url}|{label}>" if url else f"• {label}")
    if len(alert.pools) > MAX_POOLS_LISTED:
        lines.append(f"… and {len(alert.pools) - MAX_POOLS_LISTED} more")
    return f"*Pools ({len(alert.pools)})*\n" + "\n".join(lines)


def _buttons(alert: Alert, links: Links) -> list[dict[str, Any]]:
    value = f"{alert.alert_id}|{alert.revision}"
    buttons: list[dict[str, Any]] = []
    for action_id, (label, _, style) in VERDICTS.items():
        button = {"type": "button", "action_id": action_id, "text": _plain(label), "value": value}
        if style:
            button["style"] = style
        buttons.append(button)
    if alert.scope == "pool" and (url := links.pool(alert.pool)):
        buttons.append(
            {
                "type": "button",
                "action_id": "dexwatch_explorer",
                "text": _plain("Pool on explorer"),
                "url": url,
            }
        )
    if alert.scope == "pool" and (url := links.pool_page(alert.pool, alert.chain_id)):
        buttons.append(
            {
                "type": "button",
                "action_id": "dexwatch_dashboard",
                "text": _plain("Dashboard"),
                "url": url,
            }
        )
    return buttons


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text[:3000])}
