"""Alerts as Slack messages (dexwatch.app.slack.messages) and the slack settings' routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from dexwatch.app.slack.messages import (
    ALERT_EVENT,
    VERDICTS,
    Links,
    PoolInfo,
    alert_message,
    as_text,
    burst_message,
    revision_message,
)
from dexwatch.app.slack.samples import sample_alert
from dexwatch.core.schemas.alert import PoolRef, TopFeature
from dexwatch.core.slack_settings import SlackRoute, SlackSettings

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
POOL = "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640"
TX = "0x" + "ab" * 32


def test_a_pool_alert_has_header_fields_features_buttons_links_and_its_id() -> None:
    alert = sample_alert(1, NOW).model_copy(
        update={"evidence": [f"front {TX} by 0x1f9840a85d5af5bf1d1762f925bdaddc4201f984"]}
    )
    message = alert_message(
        alert, Links("https://etherscan.io", "http://127.0.0.1:8050"),
        {POOL: PoolInfo("USDC/WETH", 500)},
    )  # fmt: skip
    blocks = {b["type"]: b for b in message.blocks if b["type"] != "section" or "fields" in b}
    assert blocks["header"]["text"]["text"] == "Rug pull · USDC/WETH 0.05% on uniswap_v3 · chain 1"
    fields = " ".join(f["text"] for f in blocks["section"]["fields"])
    assert "-0.182" in fields and "high" in fields and "2026-12-05 11:59:00" in fields
    text = as_text(message)
    assert "share of liquidity removed: 0.97 (41.3 sd above usual)" in text
    assert "price change: -0.31 (12.8 sd below usual)" in text
    # Transactions and addresses in the evidence link to the explorer.
    assert f"<https://etherscan.io/tx/{TX}|" in text
    assert "<https://etherscan.io/address/0x1f9840a85d5af5bf1d1762f925bdaddc4201f984|" in text
    buttons = blocks["actions"]["elements"]
    assert [b["action_id"] for b in buttons[:3]] == list(VERDICTS)
    assert {b["value"] for b in buttons[:3]} == {f"{alert.alert_id}|0"}
    urls = {b["text"]["text"]: b["url"] for b in buttons[3:]}
    assert urls == {
        "Pool on explorer": f"https://etherscan.io/address/{POOL}",
        "Dashboard": f"http://127.0.0.1:8050/pool?pool={POOL}&chain=1",
    }
    assert f"alert_id `{alert.alert_id}`" in blocks["context"]["elements"][0]["text"]
    assert message.metadata["event_type"] == ALERT_EVENT
    assert message.metadata["event_payload"]["alert_id"] == alert.alert_id
    # The plain-text fallback says what and where on its own.
    assert message.text.startswith("HIGH Rug pull · USDC/WETH 0.05% on uniswap_v3")


def test_without_explorer_or_names_the_message_still_says_where() -> None:
    message = alert_message(sample_alert(31337, NOW), Links())
    assert "0x88e6…5640 on uniswap_v3 · chain 31337" in message.blocks[0]["text"]["text"]
    (actions,) = [b for b in message.blocks if b["type"] == "actions"]
    assert not [b for b in actions["elements"] if "url" in b]


def test_multi_pool_and_drift_alerts_have_their_own_layouts() -> None:
    pools = [PoolRef(dex="uniswap_v3", pool=f"0x{i:040x}") for i in range(1, 13)]
    market = sample_alert(1, NOW).model_copy(
        update={"scope": "market", "pools": pools, "kind": "market-move", "source": "market"}
    )
    text = as_text(alert_message(market, Links("https://etherscan.io")))
    assert "Market move · 12 pools · chain 1" in text
    assert "Pools (12)" in text and "… and 2 more" in text
    assert "https://etherscan.io/address/0x0000000000000000000000000000000000000001" in text
    depeg = market.model_copy(update={"scope": "asset:0x" + "cd" * 20, "kind": "depeg"})
    assert "Depeg · asset 0xcdcd…cdcd, 12 pools" in as_text(alert_message(depeg, Links()))
    drift = sample_alert(1, NOW).model_copy(
        update={
            "alert_id": "1:feature-drift:chain-window:v7:2026-12-05", "scope": "model",
            "pools": [PoolRef(dex="*", pool="*")], "kind": "feature-drift",
            "top_features": [TopFeature(name="volume_ratio", value=0.61, deviation=0.61)],
            "model_version": "v7",
        }
    )  # fmt: skip
    text = as_text(alert_message(drift, Links("https://etherscan.io")))
    assert "Feature drift · model chain-window v7" in text
    assert "• volume against the last minutes (`volume_ratio`): PSI 0.610" in text
    assert "address/*" not in text


def test_a_revision_says_what_changed_and_a_burst_lists_its_alerts() -> None:
    first = sample_alert(1, NOW).model_copy(
        update={"kind": "liquidity-drain", "severity": "medium"}
    )
    second = first.model_copy(update={"revision": 1, "kind": "rug-pull", "severity": "high"})
    line = revision_message(second, first).text
    assert line.startswith(":red_circle: Update 1: kind rug-pull, severity high")
    same_kind = second.model_copy(update={"revision": 2, "score": -0.3})
    assert "kind" not in revision_message(same_kind, second).text.split(":", 2)[2]
    alerts = [
        sample_alert(1, NOW + timedelta(seconds=i)).model_copy(update={"alert_id": f"a{i}"})
        for i in range(15)
    ]
    burst = burst_message(alerts)
    assert burst.text.startswith("15 alerts at once on chain 1: 15 rug-pull")
    assert burst.metadata["event_payload"]["alert_ids"] == [f"a{i}" for i in range(15)]
    assert "… and 5 more" in as_text(burst)


def test_routes_match_attributes_and_write_the_same_rule_as_a_pubsub_filter() -> None:
    route = SlackRoute(channel="#pager", severities=["high"], chain_ids=[1, 137])
    assert route.matches({"severity": "high", "chain_id": "137", "kind": "depeg"})
    assert not route.matches({"severity": "medium", "chain_id": "1"})
    assert not route.matches({"severity": "high", "chain_id": "10"})
    assert route.pubsub_filter() == (
        'attributes.severity = "high" AND '
        '(attributes.chain_id = "1" OR attributes.chain_id = "137")'
    )
    settings = SlackSettings(routes=[route], default_channel="#all")
    assert settings.channel_for({"severity": "high", "chain_id": "1"}) == "#pager"
    assert settings.channel_for({"severity": "low", "chain_id": "1"}) == "#all"
    assert settings.channels() == ["#pager", "#all"]
    quiet = SlackSettings(routes=[route], default_channel=None)
    assert quiet.channel_for({"severity": "low", "chain_id": "1"}) is None


def test_enabled_slack_needs_a_token_unless_the_standin_is_used() -> None:
    with pytest.raises(ValidationError, match="DEXWATCH_SLACK__BOT_TOKEN"):
        SlackSettings(enabled=True)
    with pytest.raises(ValidationError, match="severities"):
        SlackRoute(channel="#x", severities=["urgent"])
    with pytest.raises(ValidationError, match="projects/P/secrets"):
        SlackSettings(bot_token_secret="my-token")
    assert SlackSettings(enabled=True, local_standin=True).enabled
    assert SlackSettings(enabled=True, bot_token="xoxb-1").api_url == "https://slack.com/api/"


def test_alerts_name_their_chain_and_link_to_its_explorer() -> None:
    from dexwatch.core.chain_settings import ChainSettings, describe_chain

    chains = [ChainSettings(chain_id=137), ChainSettings(chain_id=8453, name="base-main")]
    polygon = describe_chain(137, chains)
    assert (polygon.name, polygon.explorer_url) == ("polygon", "https://polygonscan.com")
    assert describe_chain(8453, chains).name == "base-main"
    assert describe_chain(99, chains).name == "chain-99"
    alert = sample_alert(137, NOW)
    message = alert_message(alert, Links(polygon.explorer_url, None, polygon.name))
    assert message.blocks[0]["text"]["text"].endswith(" · polygon")
    assert "https://polygonscan.com/address/" in as_text(message)
    both = [alert, sample_alert(8453, NOW).model_copy(update={"alert_id": "b"})]
    burst = burst_message(both, chains={137: "polygon", 8453: "base-main"})
    assert burst.text.startswith("2 alerts at once on base-main, polygon")
