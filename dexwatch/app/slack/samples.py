"""A sample alert, for `dexwatch slack test` and the README's rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dexwatch.core.schemas.alert import Alert, PoolRef, TopFeature


def sample_alert(chain_id: int = 1, now: datetime | None = None) -> Alert:
    """A rug pull on a USDC/WETH pool, as the pipeline would publish it."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    return Alert(
        alert_id=f"{chain_id}:0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640:{int(now.timestamp())}",
        window_id=f"{chain_id}:0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640:{int(now.timestamp())}",
        chain_id=chain_id,
        pools=[PoolRef(dex="uniswap_v3", pool="0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640")],
        source="chain",
        kind="rug-pull",
        confidence=0.92,
        severity="high",
        score=-0.182,
        window_start=now - timedelta(minutes=1),
        window_end=now,
        top_features=[
            TopFeature(name="liquidity_removed_share", value=0.97, deviation=41.3),
            TopFeature(name="price_change", value=-0.31, deviation=-12.8),
            TopFeature(name="max_swap_price_impact", value=0.22, deviation=9.4),
        ],
        evidence=[
            "97 % of the pool's liquidity removed in one block by "
            "0x1f9840a85d5af5bf1d1762f925bdaddc4201f984",
            "the price fell 31 % in the same minute",
        ],
        model_version="chain-window-20261201-0300",
        detected_at=now,
    )
