"""The whole detector in batch on a real chain: a first model bootstrapped from normal
traffic, then a stretch of history with injected incidents, recorded by the real publisher
and replayed through the real pipeline into the warehouse."""

from __future__ import annotations

import pytest

from beam_pipelines.options import batch_options
from beam_pipelines.pipeline import build_replay_pipeline
from beam_pipelines.transforms.threads import DRAINS
from dexwatch.app.workflows.bootstrap import bootstrap_model
from dexwatch.core.features.blocks import round_trips_in, sandwiches_in
from dexwatch.core.schemas.tables import INCIDENT_LABELS
from dexwatch.core.warehouse import open_warehouse
from infra.local import processes, stack
from infra.local.deploy import deploy_local_contracts
from infra.local.incidents import inject
from infra.local.market import MarketSimulator
from publishers.chain import run as publish_chain
from tests.conftest import make_settings

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# Incidents that leave a pool as it was come first: a drained or rugged pool is thin, and
# whatever followed would be judged in that aftermath (a rugged pair's remains keep moving
# its price) rather than on its own.
# A fresh-pool rug drains a pool of its own.
KINDS = (
    "wash-trading", "price-manipulation", "sandwich", "round-trips", "fresh-pool-rug",
    "slow-drain",
    "quiet-pool-drain", "liquidity-drain", "rug-pull",
)  # fmt: skip
POOLS = ("uniswap_v3:WETH/USDC:500", "sushiswap:LINK/WETH")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("detection")
    port = processes.free_port()
    settings = make_settings(
        work / "state",
        local={"anvil_port": port},
        chain={
            "rpc_urls": [f"http://127.0.0.1:{port}"],
            "confirmations": 0,
            "checkpoint_path": str(work / "checkpoint.json"),
            "batch_blocks": 2000,
        },
        # Injections mine one block per step without waiting: history runs ahead anyway.
        simulator={"block_interval_s": 0.01, "seed": 11},
    )
    # Bootstrapped as a mainnet user would (chain.chain_id 1): from the simulator's own chain.
    bootstrap_model(settings.with_sections(chain={"chain_id": 1}), hours=1.0)
    processes.start(stack.anvil_spec(settings), settings.state_dir)
    try:
        deployment = deploy_local_contracts(settings)
        deployment.save(settings.deployment_path)
        simulator = MarketSimulator(settings, deployment)
        simulator.generate_history(0.6)
        labels = []
        for kind in KINDS:
            for pool in POOLS:
                # Normal trading between a slow incident's blocks, and around a quiet pool.
                labels.append(
                    inject(settings, deployment, kind, pool, history=True, between=simulator.fill)
                )
                simulator.generate_history(0.2)
        publish_chain(settings.with_deployment(), once=True, record_to=work / "recording")
    finally:
        processes.stop(settings.state_dir, stack.ANVIL)
    warehouse = open_warehouse(settings)
    warehouse.upsert(INCIDENT_LABELS, [label.model_dump() for label in labels])
    events = work / "recording" / "pool-events.jsonl"
    build_replay_pipeline(settings, batch_options(), events).run().wait_until_finish()
    return settings, warehouse, labels


def _anomalies(warehouse, label, columns: str) -> list[tuple]:
    """Anomalies of the label's pool in windows that overlap the incident (or its minute after)."""
    return warehouse.query(
        f"select {columns} from anomalies where pool = '{label.pool}' "
        f"and window_end > '{label.first_timestamp}' "
        f"and window_start <= timestamp '{label.last_timestamp}' + interval 60 second"
    ).rows


def _detected(warehouse, label) -> bool:
    return _anomalies(warehouse, label, "count(*)")[0][0] > 0


def test_every_window_is_scored_once_with_the_model(replayed):
    _, warehouse, _ = replayed
    total, distinct, versions = warehouse.query(
        "select count(*), count(distinct window_id), count(distinct model_version) from pool_scores"
    ).rows[0]
    assert total == distinct > 1000 and versions == 1


def test_every_injected_incident_is_detected_on_v3_and_sushiswap(replayed):
    _, warehouse, labels = replayed
    missed = [(label.kind, label.dex) for label in labels if not _detected(warehouse, label)]
    assert missed == []


def test_wash_trading_is_told_apart_as_wash_trading(replayed):
    _, warehouse, labels = replayed
    for label in labels:
        if label.kind == "wash-trading":
            deviations = {row[0] for row in _anomalies(warehouse, label, "kind")}
            assert "wash-trading" in deviations, (label.dex, deviations)


def test_a_sandwich_is_told_apart_with_its_attacker(replayed):
    _, warehouse, labels = replayed
    for label in labels:
        if label.kind == "sandwich":
            adversary = label.details.split()[0].lower()  # "0x... sandwiched ..."
            rows = _anomalies(warehouse, label, "kind, patterns")
            assert "sandwich" in {kind for kind, _ in rows}, label.dex
            attackers = {s.attacker for _, patterns in rows for s in sandwiches_in(patterns)}
            assert attackers == {adversary}, label.dex


def test_anomalies_name_what_deviated_and_form_threads(replayed):
    _, warehouse, labels = replayed
    drain = next(label for label in labels if label.kind == "liquidity-drain")
    rows = _anomalies(warehouse, drain, "kind, severity, alert_id, top_features")
    assert rows
    # A drain, or a rug pull: this pool's earlier incidents of the hour (a slow drain of half
    # of it among them) add up with the drain's 70 % past the rug's 80 % lost within the hour.
    assert any(kind in DRAINS for kind, *_ in rows), rows
    assert len({alert_id for _, _, alert_id, _ in rows}) == 1  # one thread per incident
    assert all(severity in ("low", "medium", "high") for _, severity, _, _ in rows)


def test_a_slow_drain_is_caught_long_before_it_is_done(replayed):
    """Half of the team's liquidity in 120 parts over 30 minutes: no one window removes much,
    the hour adds it up (liquidity_lost_1h)."""
    _, warehouse, labels = replayed
    for label in labels:
        if label.kind != "slow-drain":
            continue
        rows = _anomalies(warehouse, label, "window_end, kind, top_features")
        assert rows, label.dex
        first_end, kind, top = min(rows)
        minutes = (first_end - label.first_timestamp).total_seconds() / 60
        assert minutes < 15, (label.dex, minutes)
        assert kind == "liquidity-drain", (label.dex, kind, top)


def test_repeated_round_trips_are_told_apart_with_their_trader(replayed):
    _, warehouse, labels = replayed
    for label in labels:
        if label.kind == "round-trips":
            trader = label.details.split()[0].lower()  # "0x... moved the price ..."
            rows = _anomalies(warehouse, label, "kind, patterns")
            assert "round-trips" in {kind for kind, _ in rows}, label.dex
            traders = {t.trader for _, patterns in rows for t in round_trips_in(patterns)}
            assert traders == {trader}, label.dex
