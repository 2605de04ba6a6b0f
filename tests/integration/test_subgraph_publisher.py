"""The subgraph publisher against the local stand-in for The Graph (built from given rows)
and the real Pub/Sub emulator: what really arrives on pool-hourly."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.cloud import pubsub_v1

from dexwatch.core.schemas.pool_hour import PoolHour
from dexwatch.core.schemas.topics import HOURLY_MONITOR_SUBSCRIPTION, subscription_path
from dexwatch.core.settings import Settings
from infra.local.subgraph.rows import (
    H0,
    HOUR,
    default_sources,
    pool_address,
    v2_pair,
    v2_row,
    v3_pool,
    v3_row,
)
from infra.local.subgraph.schema import StandInSubgraph
from infra.local.subgraph.server import SubgraphStandIn
from publishers.subgraph import (
    SubgraphQueryError,
    SubgraphSchemaError,
    SubgraphUnavailable,
    run,
)
from publishers.subgraph.checkpoint import FileHourCheckpointStore
from publishers.subgraph.publisher import next_run
from tests.conftest import dexwatch_cli, make_settings

pytestmark = [
    pytest.mark.stack,
    pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning"),
]

CHAIN_ID = 31337
V3_SOURCE, V2_SOURCE = default_sources()
POOL_A, POOL_C = pool_address(0xA), pool_address(0xC)
PAIR_B = pool_address(0xB)
# Retries in tests: quick, but as many as in production.
FAST = {"retry": {"backoff_base_s": 0.001, "backoff_max_s": 0.01}, "catch_up_wait_s": 0}


def _standin(
    v3_rows: list[dict], v2_rows: list[dict], indexed_until: int, **kwargs: Any
) -> SubgraphStandIn:
    """A stand-in serving both subgraphs, indexed up to a block stamped ``indexed_until``."""
    v3_pools = sorted({row["pool"]["id"] for row in v3_rows} | {POOL_A})
    v2_pairs = sorted({row["pair"]["id"] for row in v2_rows} | {PAIR_B})
    return SubgraphStandIn(
        {
            V3_SOURCE.path: StandInSubgraph(
                "v3", v3_rows, [v3_pool(p) for p in v3_pools], block=(1000, indexed_until)
            ),
            V2_SOURCE.path: StandInSubgraph(
                "v2", v2_rows, [v2_pair(p) for p in v2_pairs], block=(1000, indexed_until)
            ),
        },
        **kwargs,
    )


def _settings(
    tmp_path: Path,
    project: str,
    emulator: str,
    standin: SubgraphStandIn,
    retry: dict[str, Any] | None = None,
    **subgraph: Any,
) -> Settings:
    values = {"endpoint_url": standin.url, "first_run_hours": 4, **FAST, **subgraph}
    values["retry"] = {**FAST["retry"], **(retry or {})}
    return make_settings(
        tmp_path, subgraph=values, pubsub={"project": project, "emulator_host": emulator}
    )


def _received(project: str) -> list:
    """Everything on the test project's pool-hourly monitor subscription, acked."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscription_path(project, HOURLY_MONITOR_SUBSCRIPTION)
    received: list = []
    empty_since = None
    try:
        while empty_since is None or time.monotonic() - empty_since < 0.3:
            request = {"subscription": path, "max_messages": 1000, "return_immediately": True}
            response = subscriber.pull(request=request, timeout=5)
            if not response.received_messages:
                empty_since = empty_since or time.monotonic()
                time.sleep(0.02)
                continue
            empty_since = None
            received += [m.message for m in response.received_messages]
            ack_ids = [m.ack_id for m in response.received_messages]
            subscriber.acknowledge(request={"subscription": path, "ack_ids": ack_ids})
    finally:
        subscriber.close()
    return received


def _records(messages: list) -> dict[tuple[str, int], PoolHour]:
    """Records by (pool, hour); fails on a repeated hour_id."""
    records: dict[tuple[str, int], PoolHour] = {}
    for message in messages:
        record = PoolHour.from_json(message.data)
        assert (record.pool, record.hour_start) not in records, f"{record.hour_id} twice"
        records[(record.pool, record.hour_start)] = record
    return records


def _row_requests(standin: SubgraphStandIn, collection: str) -> list:
    return [r for r in standin.requests if f"rows: {collection}" in r.query]


# --- normalisation and gap filling --------------------------------------------------------


def test_both_protocols_normalised_and_quiet_hours_filled(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    v3_rows = [
        v3_row(POOL_A, H0, volume=100.0),
        v3_row(POOL_A, H0 + HOUR, volume=200.0, tvlUSD="1600000", token1Price="2100"),
        v3_row(POOL_A, H0 + 3 * HOUR, volume=300.0),
        # Pool C's last row is before the window: every hour of it is filled from that row.
        v3_row(POOL_C, H0 - 2 * HOUR, tvlUSD="77", liquidity="123", token0Price="4"),
    ]
    v2_rows = [v2_row(PAIR_B, H0, volume=1000.0), v2_row(PAIR_B, H0 + 2 * HOUR)]
    with _standin(v3_rows, v2_rows, indexed_until=H0 + 4 * HOUR) as standin:
        settings = _settings(tmp_path, pubsub_project, pubsub_emulator, standin)
        stats = run(settings, once=True)

    records = _records(_received(pubsub_project))
    hours = [H0 + i * HOUR for i in range(4)]
    assert set(records) == {(pool, h) for pool in (POOL_A, POOL_C, PAIR_B) for h in hours}
    assert (stats.hours, stats.records, stats.last_hour) == (4, 12, H0 + 3 * HOUR)
    filled = {key for key, record in records.items() if record.filled}
    assert filled == {
        (POOL_A, H0 + 2 * HOUR),
        (PAIR_B, H0 + HOUR),
        (PAIR_B, H0 + 3 * HOUR),
        *((POOL_C, h) for h in hours),
    }
    assert stats.filled == len(filled)

    a0 = records[(POOL_A, H0)]
    assert a0.model_dump() == {
        "schema_version": 1,
        "chain_id": CHAIN_ID,
        "dex": "uniswap_v3",
        "pool": POOL_A,
        "hour_start": H0,
        "volume_usd": 100.0,
        "tvl_usd": 1500000.25,
        "liquidity": 5e18,
        "fees_usd": 0.05,
        "tx_count": 7,
        "token0_price": 2000.0,  # V3 token1Price: token1 per token0
        "token1_price": 0.0005,
        "filled": False,
        "indexed_block": 1000,
    }
    # A quiet hour carries the previous hour's state with no activity.
    a2, a1 = records[(POOL_A, H0 + 2 * HOUR)], records[(POOL_A, H0 + HOUR)]
    assert (a2.tvl_usd, a2.token0_price, a2.liquidity) == (1600000.0, 2100.0, a1.liquidity)
    assert (a2.volume_usd, a2.fees_usd, a2.tx_count) == (0.0, 0.0, 0)
    c = records[(POOL_C, H0 + 3 * HOUR)]
    assert (c.tvl_usd, c.liquidity, c.token1_price, c.volume_usd) == (77.0, 123.0, 4.0, 0.0)

    b0 = records[(PAIR_B, H0)]
    assert (b0.dex, b0.volume_usd, b0.tvl_usd, b0.liquidity, b0.tx_count) == (
        "sushiswap",
        1000.0,
        2400000.0,
        21000.5,
        3,
    )
    assert b0.fees_usd == pytest.approx(3.0)  # 0.3 % of the volume
    assert b0.token0_price == pytest.approx(3000.0)  # reserve1 / reserve0
    assert b0.token1_price == pytest.approx(1 / 3000)


def test_messages_carry_the_natural_id_and_event_time(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    with _standin([v3_row(POOL_A, H0)], [], indexed_until=H0 + HOUR) as standin:
        run(_settings(tmp_path, pubsub_project, pubsub_emulator, standin, first_run_hours=1), True)
    (message,) = _received(pubsub_project)
    assert dict(message.attributes) == {
        "schema_version": "1",
        "chain_id": str(CHAIN_ID),
        "dex": "uniswap_v3",
        "pool": POOL_A,
        "hour_id": f"{CHAIN_ID}:{POOL_A}:{H0}",
        "event_time": "2026-01-01T01:00:00Z",
    }


# --- paging ------------------------------------------------------------------------------------


def test_pages_over_1000_rows_by_cursor_and_never_by_skip(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    pools = [pool_address(0x100 + i) for i in range(25)]
    hours = [H0 + i * HOUR for i in range(100)]
    rows = [v3_row(pool, hour) for pool in pools for hour in hours]  # 2,500 rows
    with _standin(rows, [], indexed_until=hours[-1] + HOUR) as standin:
        settings = _settings(
            tmp_path,
            pubsub_project,
            pubsub_emulator,
            standin,
            first_run_hours=100,
            hours_per_batch=100,
            top_n=50,
        )
        stats = run(settings, once=True)

    pages = _row_requests(standin, "poolHourDatas")
    assert len(pages) == 3  # 1000 + 1000 + 500
    assert all("skip" not in page.query for page in pages)
    assert [page.variables["first"] for page in pages] == [1000] * 3
    cursors = [page.variables["after"] for page in pages]
    assert cursors[0] == "" and cursors[0] < cursors[1] < cursors[2]
    records = _records(_received(pubsub_project))
    # Every row once; POOL_A has no row at all, so nothing to carry forward for it.
    assert stats.records == len(records) == 2500
    assert set(records) == {(p, h) for p in pools for h in hours}
    assert not any(record.filled for record in records.values())


def test_page_size_above_1000_is_refused_by_the_standin_like_the_graph() -> None:
    subgraph = StandInSubgraph("v3", [v3_row(POOL_A, H0)])
    answer = subgraph.execute("{ poolHourDatas(first: 1001) { id } }")
    assert answer["data"] is None
    assert answer["errors"][0]["message"] == (
        "The `first` argument must be between 0 and 1000, but is 1001"
    )


# --- indexing lag -----------------------------------------------------------------------------


def test_an_hour_is_published_only_once_every_subgraph_indexed_past_its_end(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    hours = [H0 + i * HOUR for i in range(4)]
    v3_rows = [v3_row(POOL_A, h) for h in hours]
    v2_rows = [v2_row(PAIR_B, h) for h in hours]
    # Both subgraphs are inside hour 2; the SushiSwap one is still inside hour 1.
    with _standin(v3_rows, v2_rows, indexed_until=H0 + 2 * HOUR + 1800) as standin:
        standin.subgraphs[V2_SOURCE.path].set_indexed(900, H0 + HOUR + 1800)
        settings = _settings(tmp_path, pubsub_project, pubsub_emulator, standin)
        first = run(settings, once=True)
        assert first.last_hour == H0
        after_first = _records(_received(pubsub_project))
        assert set(after_first) == {(POOL_A, H0), (PAIR_B, H0)}, "all pools of an hour or none"

        # Indexed exactly up to hour 2's end: a block stamped at the end belongs to hour 3.
        for subgraph in standin.subgraphs.values():
            subgraph.set_indexed(1100, H0 + 3 * HOUR)
        second = run(settings, once=True)
        assert second.last_hour == H0 + 2 * HOUR
        after_second = _records(_received(pubsub_project))
        assert set(after_second) == {
            (pool, h) for pool in (POOL_A, PAIR_B) for h in (H0 + HOUR, H0 + 2 * HOUR)
        }
        assert {r.indexed_block for r in after_second.values()} == {1100}


def test_running_on_its_own_polls_a_lagging_subgraph_until_the_hour_is_indexed(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    now_hour = int(time.time()) // HOUR * HOUR
    ended = now_hour - HOUR  # the hour that ended last on the wall clock
    with _standin([v3_row(POOL_A, ended)], [], indexed_until=ended + 1800) as standin:
        settings = _settings(
            tmp_path, pubsub_project, pubsub_emulator, standin, first_run_hours=1, lag_poll_s=0.2
        )
        stop = threading.Event()
        results: list = []
        thread = threading.Thread(target=lambda: results.append(run(settings, stop=stop)))
        thread.start()
        try:
            time.sleep(1.0)
            assert _received(pubsub_project) == [], "published before the hour was indexed"
            for subgraph in standin.subgraphs.values():
                subgraph.set_indexed(1001, now_hour + 5)
            deadline = time.monotonic() + 10
            messages: list = []
            while not messages and time.monotonic() < deadline:
                messages = _received(pubsub_project)
        finally:
            stop.set()
            thread.join(timeout=10)
    assert not thread.is_alive()
    assert [(r.pool, r.hour_start) for r in _records(messages).values()] == [(POOL_A, ended)]
    assert results[0].last_hour == ended


def test_running_on_its_own_passes_at_the_scheduled_time(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    from publishers.pubsub import PubSubSink
    from publishers.subgraph.gateway import GraphQLClient
    from publishers.subgraph.publisher import SubgraphPublisher

    top = H0 + 10 * HOUR  # the publisher starts 1.5 s before this top of the hour

    def clock() -> float:
        return top - 1.5 + (time.monotonic() - started)

    with _standin([v3_row(POOL_A, top - HOUR)], [], indexed_until=top - 1800) as standin:
        settings = _settings(tmp_path, pubsub_project, pubsub_emulator, standin)
        stop = threading.Event()
        with (
            GraphQLClient.from_settings(settings.subgraph) as client,
            PubSubSink(pubsub_project) as sink,
        ):
            publisher = SubgraphPublisher(
                client,
                sink,
                FileHourCheckpointStore(settings.subgraph_checkpoint_path),
                settings.subgraph,
                CHAIN_ID,
                clock=clock,
            )
            thread = threading.Thread(target=publisher.run, kwargs={"stop": stop})
            started = time.monotonic()
            thread.start()
            try:
                time.sleep(0.2)
                # Indexed past the hour before it ended: published at the next scheduled time.
                for subgraph in standin.subgraphs.values():
                    subgraph.set_indexed(2000, top + 1)
                assert _received(pubsub_project) == []
                deadline = time.monotonic() + 10
                messages: list = []
                while not messages and time.monotonic() < deadline:
                    messages = _received(pubsub_project)
                published_at = clock()
            finally:
                stop.set()
                thread.join(timeout=10)
    assert [PoolHour.from_json(m.data).hour_start for m in messages] == [top - HOUR]
    assert published_at >= top


def test_schedule_is_a_cron_expression_in_utc() -> None:
    assert next_run("0 * * * *", H0 + 10) == H0 + HOUR
    assert next_run("0 * * * *", H0) == H0 + HOUR
    assert next_run("30 6 * * *", H0) == H0 + 6 * HOUR + 1800


# --- errors -------------------------------------------------------------------------------------


def test_graphql_errors_in_a_200_answer_are_retried(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    with _standin([v3_row(POOL_A, H0)], [v2_row(PAIR_B, H0)], H0 + HOUR) as standin:
        standin.inject("graphql_error", "graphql_error", when="pairHourDatas")
        stats = run(
            _settings(tmp_path, pubsub_project, pubsub_emulator, standin, first_run_hours=1), True
        )
    assert standin.faults_served == ["graphql_error", "graphql_error"]
    assert stats.records == 2
    assert set(_records(_received(pubsub_project))) == {(POOL_A, H0), (PAIR_B, H0)}


def test_persistent_graphql_errors_fail_clearly_and_publish_nothing_of_the_hour(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    with _standin([v3_row(POOL_A, H0)], [v2_row(PAIR_B, H0)], H0 + HOUR) as standin:
        settings = _settings(
            tmp_path,
            pubsub_project,
            pubsub_emulator,
            standin,
            first_run_hours=1,
            retry={"max_retries": 2},
        )
        standin.inject(*["graphql_error"] * 3, when="pairHourDatas")
        with pytest.raises(SubgraphUnavailable, match=r"pairHourDatas.*3 attempts.*bad indexers"):
            run(settings, once=True)
        assert standin.pending() == 0
        # The Uniswap V3 rows of the hour were fetched, but nothing of it went out.
        assert _received(pubsub_project) == []
        assert not settings.subgraph_checkpoint_path.exists()

        run(settings, once=True)
    assert set(_records(_received(pubsub_project))) == {(POOL_A, H0), (PAIR_B, H0)}


@pytest.mark.parametrize("fault", ["http_429", "http_500", "http_503", "timeout"])
def test_rate_limits_server_errors_and_timeouts_are_retried(
    tmp_path, pubsub_emulator, pubsub_project, fault: str
) -> None:
    with _standin([v3_row(POOL_A, H0)], [], H0 + HOUR, hang_s=0.6) as standin:
        standin.inject(fault, when="_meta")
        standin.inject(fault, fault, when="poolHourDatas")
        settings = _settings(
            tmp_path,
            pubsub_project,
            pubsub_emulator,
            standin,
            first_run_hours=1,
            retry={"timeout_s": 0.3},
        )
        stats = run(settings, once=True)
    assert standin.faults_served == [fault] * 3
    assert stats.records == 1
    assert set(_records(_received(pubsub_project))) == {(POOL_A, H0)}


def test_a_schema_without_a_queried_field_is_a_clear_error_without_retries(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    with _standin([v3_row(POOL_A, H0)], [v2_row(PAIR_B, H0)], H0 + HOUR) as standin:
        standin.subgraphs[V3_SOURCE.path].set_missing_fields(["feesUSD"])
        settings = _settings(tmp_path, pubsub_project, pubsub_emulator, standin, first_run_hours=1)
        with pytest.raises(SubgraphSchemaError) as raised:
            run(settings, once=True)
    message = str(raised.value)
    assert "'feesUSD'" in message and "PoolHourData" in message and V3_SOURCE.path in message
    assert len(_row_requests(standin, "poolHourDatas")) == 1, "a schema error is not retried"
    assert _received(pubsub_project) == []


def test_the_api_key_never_appears_in_logs_or_errors(
    tmp_path, pubsub_emulator, pubsub_project, caplog
) -> None:
    key = "SECRETKEY0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    with _standin([v3_row(POOL_A, H0)], [], H0 + HOUR, api_key=key) as standin:
        gateway = {"endpoint_url": None, "gateway_url": f"{standin.url}/api", "api_key": key}
        settings = _settings(
            tmp_path, pubsub_project, pubsub_emulator, standin, first_run_hours=1, **gateway
        )
        standin.inject("http_500", "graphql_error", when="poolHourDatas")
        stats = run(settings, once=True)
        assert stats.records == 1
        assert all(f"/api/{key}/" in r.path for r in standin.requests), "the key was sent"

        standin.inject("http_503", "http_503", when="_meta")
        with pytest.raises(SubgraphUnavailable) as unavailable:
            run(
                _settings(
                    tmp_path,
                    pubsub_project,
                    pubsub_emulator,
                    standin,
                    retry={"max_retries": 1},
                    **gateway,
                ),
                once=True,
            )
        standin.api_key = "ANOTHERKEY0123456789"  # the gateway no longer accepts ours
        with pytest.raises(SubgraphQueryError, match="refused the API key") as refused:
            run(settings, once=True)

    assert "/api/***/" in str(unavailable.value)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/api/***/" in logged, "the retries were logged"
    for text in (logged, str(unavailable.value), str(refused.value), repr(settings)):
        assert key not in text


# --- restarts -------------------------------------------------------------------------------------


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after the point where it is raised runs."""


def test_a_restart_from_the_checkpoint_neither_skips_nor_repeats_an_hour(
    tmp_path, pubsub_emulator, pubsub_project, monkeypatch
) -> None:
    hours = [H0 + i * HOUR for i in range(6)]
    with _standin([v3_row(POOL_A, h) for h in hours], [], H0 + 2 * HOUR) as standin:
        settings = _settings(tmp_path, pubsub_project, pubsub_emulator, standin, first_run_hours=2)
        run(settings, once=True)
        first = _records(_received(pubsub_project))
        assert set(first) == {(POOL_A, H0), (POOL_A, H0 + HOUR)}
        checkpoint = FileHourCheckpointStore(settings.subgraph_checkpoint_path).load()
        assert checkpoint is not None and checkpoint.next_hour == H0 + 2 * HOUR

        # Killed after Pub/Sub acknowledged hours 2-3 but before the checkpoint was saved.
        for subgraph in standin.subgraphs.values():
            subgraph.set_indexed(1200, H0 + 4 * HOUR)
        monkeypatch.setattr(
            FileHourCheckpointStore, "save", lambda self, checkpoint: (_ for _ in ()).throw(_Killed)
        )
        with pytest.raises(_Killed):
            run(settings, once=True)
        monkeypatch.undo()
        killed = _received(pubsub_project)
        assert {PoolHour.from_json(m.data).hour_start for m in killed} == set(hours[2:4])

        for subgraph in standin.subgraphs.values():
            subgraph.set_indexed(1300, H0 + 6 * HOUR)
        run(settings, once=True)
        again = _received(pubsub_project)

    republished = {m.attributes["hour_id"]: m.data for m in again}
    by_hour = {PoolHour.from_json(m.data).hour_start for m in again}
    assert by_hour == set(hours[2:]), "resumed at the first hour not checkpointed"
    for message in killed:  # the same hour again is the same record (bar the indexed block)
        data = orjson.loads(republished[message.attributes["hour_id"]])
        assert {**orjson.loads(message.data), "indexed_block": 0} == {**data, "indexed_block": 0}
    assert FileHourCheckpointStore(settings.subgraph_checkpoint_path).load().next_hour == (
        H0 + 6 * HOUR
    )


# --- the command line ---------------------------------------------------------------------------


def test_cli_publishes_once_and_reports_errors_in_one_line(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    import yaml

    with _standin([v3_row(POOL_A, H0)], [v2_row(PAIR_B, H0)], H0 + HOUR) as standin:
        config = tmp_path / "dexwatch.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(tmp_path / ".dexwatch"),
                    "pubsub": {"project": pubsub_project, "emulator_host": pubsub_emulator},
                    "subgraph": {"endpoint_url": standin.url, "first_run_hours": 1, **FAST},
                    "logging": {"format": "json"},
                }
            )
        )
        published = dexwatch_cli(config, "publish", "subgraph", "--once", timeout=60)
        assert published.returncode == 0, published.stderr[-2000:]
        assert set(_records(_received(pubsub_project))) == {(POOL_A, H0), (PAIR_B, H0)}

        standin.subgraphs[V2_SOURCE.path].set_missing_fields(["hourlyTxns"])
        for subgraph in standin.subgraphs.values():
            subgraph.set_indexed(1001, H0 + 2 * HOUR)
        failed = dexwatch_cli(config, "publish", "subgraph", "--once", timeout=60)
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'hourlyTxns'" in errors[0], failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_subgraph_that_has_indexed_nothing_yet_publishes_nothing(
    tmp_path, pubsub_emulator, pubsub_project
) -> None:
    with _standin([v3_row(POOL_A, H0)], [], indexed_until=0) as standin:
        settings = _settings(tmp_path, pubsub_project, pubsub_emulator, standin)
        stats = run(settings, once=True)
    assert (stats.records, stats.last_hour) == (0, None)
    assert not settings.subgraph_checkpoint_path.exists()
    assert _received(pubsub_project) == []


def test_the_api_key_can_come_from_secret_manager(monkeypatch) -> None:
    from google.cloud import secretmanager

    from publishers.subgraph.gateway import resolve_api_key

    asked: list[str] = []

    class FakeSecretManager:
        def access_secret_version(self, name: str):  # type: ignore[no-untyped-def]
            asked.append(name)
            payload = type("Payload", (), {"data": b"KEYFROMSECRETMANAGER\n"})
            return type("Response", (), {"payload": payload})

    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", FakeSecretManager)
    secret = "projects/p/secrets/thegraph/versions/3"
    settings = make_settings(Path("."), subgraph={"endpoint_url": None, "api_key_secret": secret})
    assert resolve_api_key(settings.subgraph) == "KEYFROMSECRETMANAGER"
    assert asked == [secret]
    # A keyless endpoint (the local stand-in) needs none.
    assert resolve_api_key(make_settings(Path(".")).subgraph) is None
