import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from dexwatch.core.schemas.labels import IncidentLabel
from dexwatch.core.schemas.tables import INCIDENT_LABELS
from dexwatch.core.warehouse.duckdb import DuckDBWarehouse


def _label(first_block: int, details: str = "removed 60% of liquidity") -> dict:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return IncidentLabel(
        label_id=IncidentLabel.make_id(31337, "0xpool", "liquidity-drain", first_block),
        chain_id=31337,
        dex="sushiswap",
        pool="0xpool",
        kind="liquidity-drain",
        first_block=first_block,
        last_block=first_block + 2,
        first_timestamp=now,
        last_timestamp=now,
        injected_at=now,
        details=details,
    ).model_dump()


def test_upsert_is_idempotent_on_the_natural_key(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    warehouse.upsert(INCIDENT_LABELS, [_label(10), _label(20)])
    warehouse.upsert(INCIDENT_LABELS, [_label(10, "replayed"), _label(20)])
    rows = warehouse.query("select first_block, details from incident_labels order by 1").rows
    assert rows == [(10, "replayed"), (20, "removed 60% of liquidity")]


def test_query_before_any_write_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing has been written"):
        DuckDBWarehouse(tmp_path / "w.duckdb").query("select 1")


def _writer(path: str, start: int) -> None:
    warehouse = DuckDBWarehouse(Path(path))
    for block in range(start, start + 20):
        warehouse.upsert(INCIDENT_LABELS, [_label(block)])


def test_writers_and_readers_in_other_processes_take_turns(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(path), s)) for s in (0, 1000)]
    for writer in writers:
        writer.start()
    reader = DuckDBWarehouse(path)
    seen, deadline = 0, time.monotonic() + 120
    while (any(w.is_alive() for w in writers) or seen < 40) and time.monotonic() < deadline:
        try:
            seen = reader.query("select count(*) from incident_labels").rows[0][0]
        except (FileNotFoundError, duckdb.CatalogException):
            pass  # the first writer has not created the table yet
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert seen == 40


def test_feedback_rows_are_sent_to_bigquery_as_its_streaming_api_takes_them() -> None:
    from dexwatch.core.schemas.tables import ALERT_FEEDBACK
    from dexwatch.core.warehouse import WarehouseTarget, open_warehouse
    from dexwatch.core.warehouse.bigquery import BigQueryWarehouse, insert_rows

    target = WarehouseTarget("bigquery", Path("unused"), "my-project", "dexwatch")
    assert isinstance(open_warehouse(target), BigQueryWarehouse)
    clicked = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    row = {
        "feedback_id": "a:U1:1.2", "alert_id": "a", "verdict": "confirmed", "user_id": "U1",
        "user_name": None, "pools": [{"dex": "uniswap_v3", "pool": "0x1"}],
        "clicked_at": clicked, "not_a_column": 1,
    }  # fmt: skip
    assert insert_rows(ALERT_FEEDBACK, [row]) == [
        {
            "feedback_id": "a:U1:1.2", "alert_id": "a", "verdict": "confirmed",
            "user_id": "U1", "pools": '[{"dex":"uniswap_v3","pool":"0x1"}]',
            "clicked_at": "2026-12-05T09:00:00+00:00",
        }
    ]  # fmt: skip
