"""The journal of the local read: every pulled message appended and fsynced before it is
acknowledged, in one file per minute, deleted only when no restart could need it; pool
announcements in a file of their own that never expires."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Timestamp

from dexwatch.core.features.hourly import HISTORY_HOURS
from dexwatch.core.schemas.pool_event import ANNOUNCEMENTS
from dexwatch.core.schemas.pool_hour import HOUR_S
from dexwatch.core.settings import PipelineSettings

log = logging.getLogger("dexwatch.pipeline.local_read")

# Messages may overtake each other by this much event time before they count as late (the
# publisher sends a pool's events in block order; lateness settings cover the rest).
WATERMARK_LAG_S = 5
_SEGMENT_S = 60  # a journal file per minute, deleted whole once older than the retention


_ANNOUNCEMENTS_FILE = "announcements.jsonl"


_ANNOUNCEMENT_NAMES = frozenset(ANNOUNCEMENTS.values())


def journal_keep_s(settings: PipelineSettings) -> int:
    """How much event time the journal keeps: what a resume replays, and a slice more."""
    return WATERMARK_LAG_S + settings.allowed_lateness_s + span_s(settings) + settings.slice_s


def span_s(settings: PipelineSettings) -> int:
    return (settings.current_slices + settings.baseline_slices) * settings.slice_s


def effective_time_us(record: dict) -> int:
    """A record's event time, but never later than the wall clock when it was journaled:
    what the watermark and the journal's expiry rely on. A real event was mined before it
    was read; a message claiming a later time (refused by the parse step if it is more than
    ``pipeline.max_event_ahead_s`` ahead) moves neither."""
    journaled_ms = record.get("w")
    if journaled_ms is None:
        return record["t"]
    return min(record["t"], journaled_ms * 1000)


class Journal:
    """Append-only files of journaled messages, one per minute of wall time, and a file of
    pool announcements that never expires.

    Each line is a JSON record: event time (µs), journaling wall time (ms), message id,
    attributes, and data (text, or base64 when the bytes are not UTF-8). A line cut short
    by a crash is skipped on reading.

    Args:
        directory: where the files are.
        keep_s: event time kept behind the watermark.
        restart_needs: the event time (unix s) from which a restart would replay now, or
            None when it cannot be told (then nothing is deleted).
    """

    def __init__(
        self,
        directory: Path,
        keep_s: int,
        restart_needs: Callable[[], int | None] | None = None,
    ) -> None:
        self.directory = directory
        self.keep_s = keep_s
        self._restart_needs = restart_needs
        directory.mkdir(parents=True, exist_ok=True)
        self._file = None
        self._file_started = 0.0
        self._newest_us = 0
        # Each segment's newest effective time, read once (a minute at 2,000 events/s is
        # 120,000 records: parsing them all again at every rotation held up the reads).
        self._segment_newest_us: dict[Path, int] = {}

    # --- reading back ---------------------------------------------------------------

    def _segments(self) -> list[Path]:
        return sorted(
            (p for p in self.directory.glob("*.jsonl") if p.stem.isdigit()),
            key=lambda p: int(p.stem),
        )

    def records(self) -> list[dict]:
        """Every complete record, in the order they were journaled."""
        return [r for segment in self._segments() for r in _read_records(segment)]

    def announcements(self) -> list[dict]:
        """Every pool announcement ever journaled, in order."""
        return _read_records(self.directory / _ANNOUNCEMENTS_FILE)

    # --- writing ------------------------------------------------------------------

    def append(self, records: list[dict]) -> None:
        """Journals the records durably (written and fsynced) before returning."""
        now = time.time()
        if self._file is None or now - self._file_started >= _SEGMENT_S:
            self._rotate(now)
        assert self._file is not None
        self._file.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())
        announcements = [r for r in records if r["a"].get("event") in _ANNOUNCEMENT_NAMES]
        if announcements:
            with (self.directory / _ANNOUNCEMENTS_FILE).open("ab") as out:
                out.write(b"".join(orjson.dumps(r) + b"\n" for r in announcements))
                out.flush()
                os.fsync(out.fileno())
        newest_us = max(effective_time_us(r) for r in records)
        self._newest_us = max(self._newest_us, newest_us)
        segment = Path(self._file.name)
        self._segment_newest_us[segment] = max(self._segment_newest_us.get(segment, 0), newest_us)

    def _rotate(self, now: float) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self.directory / f"{int(now * 1000)}.jsonl", "ab")  # noqa: SIM115
        self._file_started = now
        self._drop_expired()

    def _drop_expired(self) -> None:
        """Deletes whole segments whose every record is older than keep_s behind the newest
        record and older than what a restart would replay now."""
        horizon_us = self._newest_us - self.keep_s * 1_000_000
        if self._restart_needs is not None:
            try:
                needed = self._restart_needs()
            except Exception as err:  # noqa: BLE001 - unknown: keep everything this time
                log.warning("journal expiry skipped: %s", err)
                return
            if needed is None:
                return
            horizon_us = min(horizon_us, needed * 1_000_000)
        for segment in self._segments()[:-1]:
            newest_us = self._segment_newest_us.get(segment)
            if newest_us is None:  # a previous run's
                times = [effective_time_us(r) for r in _read_records(segment)]
                newest_us = self._segment_newest_us[segment] = max(times, default=0)
            if newest_us and newest_us < horizon_us:
                segment.unlink()
                del self._segment_newest_us[segment]


def _read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.warning("skipping a journal line cut short in %s", path.name)
    return records


def journal_record(message, timestamp_attribute: str | None) -> dict:
    """A pulled google.cloud.pubsub message → a journal record (event time in µs, the wall
    time of journaling in ms, the message id)."""
    attributes = dict(message.attributes)
    event_us = _event_time_us(attributes.get(timestamp_attribute or ""), message.publish_time)
    record: dict = {"t": event_us, "w": int(time.time() * 1000), "a": attributes}
    if message.message_id:
        record["m"] = message.message_id
    try:
        record["d"] = message.data.decode("utf-8")
    except UnicodeDecodeError:
        record["b"] = base64.b64encode(message.data).decode()
    return record


def _event_time_us(value: str | None, publish_time) -> int:
    # Like Beam's read: milliseconds since the epoch or RFC 3339; without a usable value,
    # the publish time (the pipeline then judges the payload itself).
    if value:
        try:
            return _bounded_us(int(value) * 1000)
        except ValueError:
            try:
                return _bounded_us(Timestamp.from_rfc3339(value).micros)
            except (ValueError, OverflowError):
                pass
    return Timestamp.from_utc_datetime(publish_time).micros


def _bounded_us(micros: int) -> int:
    # A Beam timestamp holds about ±290,000 years; anything outside is unusable as one.
    if not MIN_TIMESTAMP.micros < micros < MAX_TIMESTAMP.micros:
        raise ValueError("event time out of range")
    return micros


def hourly_journal_keep_s(settings: PipelineSettings) -> int:
    """The hourly journal keeps what rebuilds the per-pool state of hours: the history of
    the oldest hour that may still be replaced, and an hour more."""
    return (HISTORY_HOURS + settings.hourly_allowed_lateness_h + 1) * HOUR_S
