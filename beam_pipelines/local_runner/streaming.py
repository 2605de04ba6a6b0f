"""The streaming pipeline on the local runner: the production pipeline with its Pub/Sub
reads replaced by the journaled read, resuming where the previous run stopped."""

from __future__ import annotations

import logging

import apache_beam as beam

from beam_pipelines.local_runner.journal import hourly_journal_keep_s, journal_keep_s
from beam_pipelines.local_runner.read import JournaledReadOverride, JournalPlan
from beam_pipelines.local_runner.resume import RestartNeeds, newest_written, resume_point
from dexwatch.core.schemas.pool_event import rfc3339
from dexwatch.core.schemas.topics import PIPELINE_SUBSCRIPTION, POOL_HOURLY_SUBSCRIPTION
from dexwatch.core.settings import Settings

log = logging.getLogger("dexwatch.pipeline.local_read")


def build_local_streaming_pipeline(
    settings: Settings, handler=None, hourly_handler=None
) -> beam.Pipeline:
    """The streaming pipeline for the local runner, reading through the journal and
    resuming where a previous run stopped. The hourly branch (pipeline.hourly) replays its
    whole journal into its state, and emits again only the rows of hours that end after the
    newest hour the previous run wrote of their pool."""
    from beam_pipelines.local_runner import state_fix
    from beam_pipelines.options import local_streaming_options
    from beam_pipelines.pipeline import build_streaming_pipeline

    state_fix.install()

    journal_root = settings.state_dir / "journal" / settings.pubsub.project
    written_chain, written_hours = newest_written(settings.warehouse_path)
    resume = resume_point(settings.pipeline, written_chain)
    if resume.final_before is not None:
        log.info(
            "resuming: replaying journaled events from %s; windows up to %s were final",
            rfc3339(resume.replay_from),
            rfc3339(max(resume.final_before.values())),
        )
    pipeline = build_streaming_pipeline(
        settings,
        local_streaming_options(),
        handler=handler,
        final_before=resume.final_before,
        hourly_handler=hourly_handler,
        hours_final_before=written_hours,
    )
    # Every chain's events, on the shared topic or one of its own, journaled alike.
    plans = {
        subscription: JournalPlan(
            journal_keep_s(settings.pipeline),
            resume.replay_from,
            RestartNeeds(settings.warehouse_path, settings.pipeline),
        )
        for subscription in settings.event_subscriptions(PIPELINE_SUBSCRIPTION)
    }
    if settings.pipeline.hourly:
        plans[POOL_HOURLY_SUBSCRIPTION] = JournalPlan(
            hourly_journal_keep_s(settings.pipeline), replay_from=0
        )
    pipeline.replace_all([JournaledReadOverride(journal_root, plans)])
    return pipeline
