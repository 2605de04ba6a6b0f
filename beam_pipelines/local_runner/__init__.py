"""Pub/Sub read for the local streaming runner: journaled, acknowledged only once journaled,
with an event-time watermark. Production keeps Dataflow's own Pub/Sub read.

Beam's local read pulls 10 messages per call, acknowledges them before the pipeline has
seen them, and sets the watermark to the wall clock. This one pulls in a background thread
(up to 1,000 messages per call, with a bound on what waits in memory), appends each batch to
a journal on disk and fsyncs it, and only then acknowledges it: a message is either in the
journal or still in the subscription, whenever the process dies.

The local runner keeps no state across a restart, so a restart replays the journal from
the span before the oldest window the previous run may not have finished (from its newest
rows in the warehouse, less the allowed lateness): those windows are recomputed whole, and
the ones before them, final and written, are not emitted again (``ResumePoint``).
A message both journaled and redelivered (killed between fsync and acknowledgement) comes
twice; the pipeline drops duplicates by event id. Each subscription read (pool-events, and
pool-hourly for the hourly branch) has its own journal directory and replay plan.

The watermark follows the data: the newest event time read, less a few seconds for
messages that overtake each other, each message counting at most the wall-clock time at
which it was read (a real event was mined before it was read): one message stamped a day
ahead must not move the watermark a day, making every real event after it late. It does
not advance while nothing arrives, so a publisher that was down publishes its backlog on
time rather than late. For the subscription's ack deadline after start it stays put:
messages the previous run pulled but had not journaled come back only then, and must not
count as late.

Journal segments are deleted only when no restart could need them: when every record in
them is older than both the journal's own horizon (the watermark less what a resume
replays) and the replay start a restart would compute now from the rows the pipeline has
written (``restart_needs``). Pool announcements are also kept in a file of their own that
never expires, and a restart replays them first: the pipeline scores announced pools only,
and a pool announced long ago is still a pool."""

from __future__ import annotations

from beam_pipelines.local_runner.journal import (
    WATERMARK_LAG_S,
    Journal,
    effective_time_us,
    hourly_journal_keep_s,
    journal_keep_s,
    journal_record,
)
from beam_pipelines.local_runner.read import JournaledPubSubRead, JournalPlan
from beam_pipelines.local_runner.resume import ResumePoint, resume_point
from beam_pipelines.local_runner.streaming import build_local_streaming_pipeline

__all__ = [
    "Journal",
    "JournalPlan",
    "JournaledPubSubRead",
    "ResumePoint",
    "WATERMARK_LAG_S",
    "build_local_streaming_pipeline",
    "effective_time_us",
    "hourly_journal_keep_s",
    "journal_keep_s",
    "journal_record",
    "resume_point",
]
