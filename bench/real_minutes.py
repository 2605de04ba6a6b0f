"""Five weeks of a real pool's minute bars: the false alerts of dexwatch's slow views.

``../shared/data/real-minutes/`` holds 35 days (2022-07-19 to 2022-08-22) of minute bars of
the USDC/WETH 0.05 % Uniswap V3 pool on Polygon: normal traffic, no known incident, so every
alert is false. Minute bars have no events, so each view gets what it needs from them, and
what that approximates is said here:

- **The hour horizon** (``liquidity_lost_1h``) is not scored here: it counts Burns net of
  Mints in range, and bars do not hold them. Their ``currentLiquidity`` (the in-range
  liquidity at a minute's last swap) is no stand-in: it includes just-in-time liquidity and
  moves with every tick crossed and every range rebalanced. Even between minutes at the same
  price (same 10-tick bucket, an hour apart, against the least level of that bucket in the
  hour before), it fell by 38 % or more in 1 % of the minutes of these weeks. The hour
  horizon is measured on the recorded days of events instead (``bench/real_traffic.py``).
- **The day horizon** (``liquidity_lost_24h``): not scored here, for the hour's reasons.
- **The price horizon** (``price_drift_1h``): bars carry the price, a close a minute. Each
  minute's close is set against the pool's price habits folded from every minute before it
  (``dexwatch.core.features.rates``), as the pipeline sets a window's last price against the
  habits folded up to the window: one price a minute where the pipeline has one a slice (the
  usual gap is a mean over prices, so its sampling matters little; the anchor is the same).
  A minute alerts when its drift passes the first chain model's own limit for the feature
  (``dexwatch model bootstrap`` on ``--market``): what the feature flags alone, not what the
  forest makes of the whole window.
- **The hour's volume** (``volume_1h_vs_usual``): bars carry the volume, so each minute's is
  folded as a slice (in USD, USDC plus WETH at the minute's close; the pipeline counts token1
  units, and only ratios reach the feature), and each minute set against the pool's usual hour
  as a window of that minute is. Its limit is its floor (ten times the usual hour), chosen on
  weeks 1-2 (their largest: 4.3 times); ``volume_hour_max_weeks_3_5`` is the largest over the
  weeks no choice read.
- **The hourly path**: each hour a ``PoolHour`` as the subgraph publisher would send it.
  ``volume_usd`` from the bars' inflows (USDC, and WETH at the minute's close price);
  ``tvl_usd`` from the in-range liquidity's virtual reserves (L / sqrt P and L * sqrt P, L
  the hour's median minute's, P its close: proportional to the pool's depth, not its real
  TVL), ``liquidity`` that L; ``tx_count`` the
  minutes with a swap (a lower bound). Scored by the hourly model: ``default``, the first
  model ``dexwatch model bootstrap-hourly`` trains on the simulator (``--market``), over all
  five weeks; ``trained``, one trained on the first week, over the four after it.
  That TVL is no measurement of the pool's TVL: the in-range liquidity moves with every
  range rebalanced, so it halves and doubles from one day to the next where the pool's
  deposits do not (the default model's only false alerts on these weeks are such days,
  ``tvl_rate_24h`` of -50 % to +140 %). The figures that count every view hold the TVL at
  its median over the five weeks (not measured here: the hours are judged by their volume
  and activity); ``hourly_false_alerts_per_pool_week_tvl_proxy`` keeps the proxy.

Alerts are threaded as the pipeline threads them (``AlertThreads``, both sources together).
Figures: ``real_false_alerts_per_pool_week``, every view a first deployment has (the default
hourly model, the price horizon and the hour's volume) threaded together over the five weeks,
and ``real_false_alerts_per_pool_week_weeks_2_5`` over the four weeks after the first (the
hour's volume limit was chosen on weeks 1-2; nothing else was chosen on these weeks);
``hourly_false_alerts_per_pool_week`` (the default hourly model alone, five weeks; and
``_tvl_proxy`` with the proxy's TVL),
``trained_hourly_false_alerts_per_pool_week`` (four weeks),
``price_drift_false_alerts_per_pool_week`` (five weeks) with ``price_drift_max`` and
``price_drift_p999`` (in usual gaps) beside ``price_drift_limit``,
``volume_hour_false_alerts_per_pool_week`` (five weeks) with ``volume_hour_max_weeks_1_2``,
``volume_hour_max_weeks_3_5`` and ``volume_hour_limit`` (as multiples of the usual hour); each
thread explained under ``details``.

    python bench/real_minutes.py [--market FILE]
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
from _private_chain import GENESIS, bootstrap_settings
from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from beam_pipelines.transforms.threads import AlertThreads  # noqa: E402
from dexwatch.app.workflows.bootstrap import (  # noqa: E402
    bootstrap_hourly_model,
    bootstrap_model,
)
from dexwatch.core.detector import Detector  # noqa: E402
from dexwatch.core.features.chain import FEATURE_NAMES  # noqa: E402
from dexwatch.core.features.hourly import hourly_vector, series_features  # noqa: E402
from dexwatch.core.features.rates import fold_rates  # noqa: E402
from dexwatch.core.features.slices import SliceSummary  # noqa: E402
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour  # noqa: E402
from dexwatch.core.settings import PipelineSettings  # noqa: E402
from model.hourly import train_hourly_detector  # noqa: E402

MINUTES = ROOT.parent / "shared" / "data" / "real-minutes"
WORK = ROOT / "bench" / "work" / "real-minutes"
POOL = "0x45dda9cb7c25131df268515131f647d726f50608"
CHAIN_ID = 137
BOOTSTRAP_SEED = 21
WEEK_S = 7 * 86400
_DECIMALS0, _DECIMALS1 = 6, 18  # USDC, WETH


def read_bars() -> list[dict]:
    """Every minute bar of the five weeks, in time order."""
    bars = []
    for path in sorted(MINUTES.glob("*.minute.csv")):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                stamp = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=UTC)
                bars.append(
                    {
                        "t": int(stamp.timestamp()),
                        "tick": int(row["closeTick"]),
                        "in0": int(row["inAmount0"]),
                        "in1": int(row["inAmount1"]),
                        "liquidity": int(row["currentLiquidity"]),
                    }
                )
    bars.sort(key=lambda bar: bar["t"])
    return bars


def _usd_per_weth(tick: int) -> float:
    """WETH in USD at ``tick`` (the pool prices USDC in WETH: 1.0001^tick, raw units)."""
    return 1 / (1.0001**tick * 10 ** (_DECIMALS0 - _DECIMALS1))


def pool_hours(bars: list[dict], tvl_proxy: bool = True) -> list[PoolHour]:
    """The PoolHour of every whole hour of the bars (approximations: module docstring);
    without ``tvl_proxy``, the TVL held at the proxy's median over the bars."""
    by_hour: dict[int, list[dict]] = {}
    for bar in bars:
        by_hour.setdefault(bar["t"] // HOUR_S * HOUR_S, []).append(bar)
    hours = []
    for start, group in sorted(by_hour.items()):
        last = group[-1]
        weth = _usd_per_weth(last["tick"])
        volume = sum(
            b["in0"] / 10**_DECIMALS0 + b["in1"] / 10**_DECIMALS1 * _usd_per_weth(b["tick"])
            for b in group
        )
        # The median minute's: just-in-time liquidity swells a few minutes' level only.
        level = float(np.median([b["liquidity"] for b in group]))
        sqrt_price = math.sqrt(1.0001 ** last["tick"])
        reserve0, reserve1 = level / sqrt_price, level * sqrt_price
        tvl = reserve0 / 10**_DECIMALS0 + reserve1 / 10**_DECIMALS1 * weth
        price0 = 1.0001 ** last["tick"] * 10 ** (_DECIMALS0 - _DECIMALS1)
        hours.append(
            PoolHour(
                chain_id=CHAIN_ID,
                dex="uniswap_v3",
                pool=POOL,
                hour_start=start,
                volume_usd=volume,
                tvl_usd=tvl,
                liquidity=level,
                fees_usd=volume * 0.0005,
                tx_count=sum(b["in0"] + b["in1"] > 0 for b in group),
                token0_price=price0,
                token1_price=1 / price0,
                indexed_block=0,
            )  # fmt: skip
        )
    if not tvl_proxy:
        held = float(np.median([hour.tvl_usd for hour in hours]))
        hours = [hour.model_copy(update={"tvl_usd": held}) for hour in hours]
    return hours


def _row(source: str, start: int, end: int, score: float, top: list[dict], **features) -> dict:
    return {
        "window_id": f"{CHAIN_ID}:{POOL}:{end}" + (":hour" if source == "subgraph" else ""),
        "chain_id": CHAIN_ID, "dex": "uniswap_v3", "pool": POOL, "source": source,
        "window_start": datetime.fromtimestamp(start, UTC),
        "window_end": datetime.fromtimestamp(end, UTC), "events": 1, "score": score,
        "is_anomaly": True, "model_version": "bench", "top_features": orjson.dumps(top).decode(),
        **features,
    }  # fmt: skip


def hourly_rows(hours: list[PoolHour], model: Detector, since: int = 0) -> list[dict]:
    """The anomalous hours (from ``since``) as the pipeline's hourly branch writes them."""
    scored = [(hour, f) for hour, f in series_features(hours) if hour.hour_start >= since]
    if not scored:
        return []
    result = model.score(np.array([hourly_vector(f) for _, f in scored]))
    rows = []
    for (hour, _), score, flagged, top in zip(
        scored, result.score, result.is_anomaly, result.top_features, strict=True
    ):
        if flagged:
            top_json = [t.model_dump() for t in top]
            rows.append(_row("subgraph", hour.hour_start, hour.hour_end, float(score), top_json))
    return rows


def habits_of_minutes(bars: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """(minute, value) of ``price_drift_1h`` and ``volume_1h_vs_usual`` for every bar: its
    close and its volume against the pool's habits folded from the bars before it
    (approximations: module docstring)."""
    found: dict[str, list[tuple[int, float]]] = {"price_drift_1h": [], "volume_1h_vs_usual": []}
    rates = None
    for bar in bars:
        price = 1.0001 ** bar["tick"]
        volume = bar["in0"] / 10**_DECIMALS0 + bar["in1"] / 10**_DECIMALS1 * _usd_per_weth(
            bar["tick"]
        )
        if rates is not None:
            found["price_drift_1h"].append((bar["t"], rates.drift(bar["t"], price)))
            found["volume_1h_vs_usual"].append(
                (bar["t"], rates.hour_vs_usual(bar["t"], volume, 60))
            )
        swaps = int(volume > 0)
        minute = SliceSummary(
            pool=POOL, start=bar["t"], events=1, swaps=swaps, volume=volume, last_price=price
        )
        rates = fold_rates(rates, [minute], 60)
    return found


def feature_rows(
    values: list[tuple[int, float]], name: str, model: Detector
) -> tuple[list[dict], float]:
    """The minutes whose value of feature ``name`` passes ``model``'s own limit for it, as
    anomalous windows, and that limit."""
    j = FEATURE_NAMES.index(name)
    limit = float(model.median[j] + model.limits[j] * model.scale[j])
    rows = []
    for minute, value in values:
        if value > limit:
            deviation = float((value - model.median[j]) / model.scale[j])
            top = [{"name": name, "value": value, "deviation": deviation}]
            # The other features are not measured here: they read as usual (0).
            features = {**dict.fromkeys(FEATURE_NAMES, 0.0), name: value}
            rows.append(_row("chain", minute, minute + 60, -0.01, top, **features))
    return rows, limit


def threads(rows: list[dict]) -> list[str]:
    """The alert threads the pipeline would open on ``rows``, each in words."""
    ordered = sorted(rows, key=lambda r: (r["window_end"], r["window_start"], r["source"]))
    threading = AlertThreads(PipelineSettings().alert_cooldown_s)
    opened: dict[str, list[dict]] = {}
    for row in ordered:
        anomaly, _ = threading.add(row)
        opened.setdefault(anomaly["alert_id"], []).append(anomaly)
    words = []
    for anomalies in opened.values():
        first, last = anomalies[0], anomalies[-1]
        top = orjson.loads(first["top_features"])[0]
        words.append(
            f"{first['window_start']:%Y-%m-%d %H:%M} to {last['window_end']:%H:%M} UTC, "
            f"{len(anomalies)} {first['source']} row(s), {first['kind']} ({first['severity']}): "
            f"{top['name']} = {top['value']:.4g} ({top['deviation']:+.1f} robust sd)"
        )
    return words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--market", type=Path, help="simulator settings for the bootstrap")
    args = parser.parse_args()
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    hourly_model = WORK / "hourly.joblib"
    settings = bootstrap_settings(
        WORK / "bootstrap", BOOTSTRAP_SEED, args.market, model={"hourly_path": str(hourly_model)}
    )
    hours_mined = settings.model.hourly_bootstrap_hours
    print(f"bootstrapping the hourly model ({hours_mined} simulated h)", flush=True)
    bootstrap_hourly_model(settings, hours_mined, genesis_timestamp=GENESIS)
    chain_model = WORK / "chain.joblib"
    chain_settings = bootstrap_settings(
        WORK / "bootstrap-chain", BOOTSTRAP_SEED, args.market, model={"path": str(chain_model)}
    )
    chain_hours = chain_settings.model.bootstrap_hours
    print(f"bootstrapping the chain model ({chain_hours:g} simulated h)", flush=True)
    bootstrap_model(chain_settings, hours=chain_hours, genesis_timestamp=GENESIS)

    print("reading five weeks of minute bars", flush=True)
    bars = read_bars()
    hours = pool_hours(bars)
    pool_weeks = (bars[-1]["t"] + 60 - bars[0]["t"]) / WEEK_S
    first_week_end = hours[0].hour_start + WEEK_S
    trained = train_hourly_detector([h for h in hours if h.hour_start < first_week_end])
    habits = habits_of_minutes(bars)
    chain_detector = Detector.load(chain_model)
    flagged, limit = feature_rows(habits["price_drift_1h"], "price_drift_1h", chain_detector)
    busy, volume_limit = feature_rows(
        habits["volume_1h_vs_usual"], "volume_1h_vs_usual", chain_detector
    )
    hourly_detector = Detector.load(hourly_model)
    proxy = hourly_rows(hours, hourly_detector)
    hourly = hourly_rows(pool_hours(bars, tvl_proxy=False), hourly_detector)
    every_view = [*hourly, *flagged, *busy]
    details = {
        "real_false_alerts_per_pool_week": threads(every_view),
        "real_false_alerts_per_pool_week_weeks_2_5": threads(
            [r for r in every_view if r["window_start"].timestamp() >= first_week_end]
        ),
        "hourly_false_alerts_per_pool_week": threads(hourly),
        "hourly_false_alerts_per_pool_week_tvl_proxy": threads(proxy),
        "trained_hourly_false_alerts_per_pool_week": threads(
            hourly_rows(hours, trained, since=first_week_end)
        ),
        "price_drift_false_alerts_per_pool_week": threads(flagged),
        "volume_hour_false_alerts_per_pool_week": threads(busy),
    }
    weeks = {
        "real_false_alerts_per_pool_week": pool_weeks,
        "real_false_alerts_per_pool_week_weeks_2_5": (bars[-1]["t"] + 60 - first_week_end) / WEEK_S,
        "hourly_false_alerts_per_pool_week": pool_weeks,
        "hourly_false_alerts_per_pool_week_tvl_proxy": pool_weeks,
        "trained_hourly_false_alerts_per_pool_week": (bars[-1]["t"] + 60 - first_week_end) / WEEK_S,
        "price_drift_false_alerts_per_pool_week": pool_weeks,
        "volume_hour_false_alerts_per_pool_week": pool_weeks,
    }
    figures = {
        name: {
            "value": round(len(found) / weeks[name], 3),
            "unit": f"alert threads per pool-week ({len(found)} in {weeks[name]:.2f} pool-weeks)",
        }
        for name, found in details.items()
    }
    values = np.array([drift for _, drift in habits["price_drift_1h"]])
    gaps = "in the pool's usual gaps"
    figures["price_drift_max"] = {"value": round(float(values.max()), 2), "unit": gaps}
    figures["price_drift_p999"] = {
        "value": round(float(np.quantile(values, 0.999)), 2),
        "unit": f"{gaps}, of the minutes",
    }
    figures["price_drift_limit"] = {
        "value": round(limit, 2),
        "unit": f"{gaps}: the first chain model's limit for it",
    }
    times = "times the pool's usual hour"
    tuning_end = bars[0]["t"] + 2 * WEEK_S
    for name, weeks_of in (
        ("weeks_1_2", lambda t: t < tuning_end),
        ("weeks_3_5", lambda t: t >= tuning_end),
    ):
        largest = max(v for t, v in habits["volume_1h_vs_usual"] if weeks_of(t))
        figures[f"volume_hour_max_{name}"] = {"value": round(math.exp(largest), 2), "unit": times}
    figures["volume_hour_limit"] = {
        "value": round(math.exp(volume_limit), 2),
        "unit": f"{times}: the first chain model's limit for it (its floor)",
    }
    for name, found in details.items():
        print(f"{name}: {figures[name]['value']} ({len(found)} threads)")
        for line in found:
            print(f"  {line}")
    path = write_results(
        "real_minutes",
        figures,
        note=f"{MINUTES.name}/: {len(bars)} minute bars, {len(hours)} hours; the hourly model "
        f"bootstrapped ({hours_mined} simulated h), and one trained on the first week; the "
        f"chain model bootstrapped ({chain_hours:g} simulated h) for the limits of the price "
        f"drift and the hour's volume"
        + (f"; market: {args.market.name}" if args.market else "")
        + f"; {time.monotonic() - started:.0f} s",
        details=details,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
