"""The Slack consumer's core: an alert message in, exactly one Slack message per revision out.

Transport-free: the pull subscriber (``dexwatch.app.slack.pull``) and the push endpoint
(``dexwatch.app.slack.server``) hand it each Pub/Sub message with a ``done`` callback, and
ack (2xx) or nack (5xx) on the outcome. Per channel, one sender thread posts in order,
spaced by ``slack.channel_interval_s`` (Slack's one message a second): when it finds
``slack.burst_threshold`` new alerts or more waiting, it posts one summary and each alert as
a reply in the summary's thread. A revision after the first is a reply in its alert's
thread, and the thread's first message is updated to the latest revision.

Outcomes: ``posted``; ``duplicate`` (the ledger or the channel already holds it);
``skipped`` (a v1 copy, or no channel for it); ``dead-lettered`` (bad payload or a permanent
Slack error: the message and the reason are on the dead-letter topic); ``retry`` (Slack
kept failing transiently: the message is nacked and Pub/Sub delivers it again).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import ValidationError

from dexwatch.app.slack.delivery import (
    PermanentSlackError,
    Posted,
    SlackApi,
    TransientSlackError,
)
from dexwatch.app.slack.ledger import Post, PostLedger
from dexwatch.app.slack.messages import (
    Links,
    Message,
    PoolInfo,
    alert_message,
    alert_metadata,
    burst_message,
    revision_message,
)
from dexwatch.core.chain_settings import ChainSettings, describe_chain
from dexwatch.core.schemas.alert import V1_COPY_ATTRIBUTE, Alert, parse_alert
from dexwatch.core.slack_settings import SlackSettings

log = logging.getLogger("dexwatch.slack")

Outcome = Literal["posted", "duplicate", "skipped", "dead-lettered", "retry"]
# A post not in the ledger is looked up this long before the attempt that may have made it.
_LOOKUP_SLACK_S = 120.0


class DeadLetters(Protocol):
    def send(self, data: bytes, attributes: Mapping[str, str], reason: str) -> None:
        """Publish the message to the dead-letter topic with ``reason``; raise if it fails."""


class PoolNames(Protocol):
    def lookup(self, pools: list[str]) -> dict[str, PoolInfo]:
        """Pair and fee tier of the pools the directory knows."""


@dataclass
class Job:
    alert: Alert
    channel: str
    done: Callable[[Outcome], None]
    data: bytes = b""
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Note:
    """A reply that is not an alert (an operator's feedback), and the root to refresh."""

    alert_id: str
    message: Message


@dataclass
class Counts:
    """Outcomes so far (``bursts``: summaries posted); counted from several threads."""

    posted: int = 0
    duplicate: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    retry: int = 0
    bursts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, outcome: Outcome | Literal["bursts"]) -> None:
        name = outcome.replace("-", "_")
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if not f.name.startswith("_")}  # fmt: skip


class SlackConsumer:
    """Args:
    settings: the slack section.
    api: the Web API client.
    ledger: the durable record of posts.
    dead_letters: where what cannot be delivered goes.
    pool_names: pair and fee tier of pools, for headers.
    chains: the configured chains (their names and explorers).
    """

    def __init__(
        self,
        settings: SlackSettings,
        api: SlackApi,
        ledger: PostLedger,
        dead_letters: DeadLetters,
        pool_names: PoolNames,
        chains: Sequence[ChainSettings] = (),
    ) -> None:
        self.settings = settings
        self.chains = tuple(chains)
        self.api = api
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.pool_names = pool_names
        self.counts = Counts()
        self._senders: dict[str, _ChannelSender] = {}
        self._lock = threading.Lock()

    def submit(
        self,
        data: bytes,
        attributes: Mapping[str, str],
        done: Callable[[Outcome], None],
    ) -> None:
        """Take one message of the alerts topic; ``done`` is called once with its outcome
        (from a sender thread when it is posted)."""
        if V1_COPY_ATTRIBUTE in attributes:  # the v2 original is posted
            self._finish(done, "skipped")
            return
        try:
            alert = parse_alert(data)
        except ValueError as err:
            reason = f"unreadable alert: {_why(err)}"
            self._dead_letter(data, attributes, reason, done)
            return
        root = self.ledger.root(alert.alert_id) if alert.revision else None
        # A thread stays where it started, even when a revision's severity routes elsewhere.
        channel = root.channel if root else self.settings.channel_for(alert.attributes())
        if channel is None:
            self._finish(done, "skipped")
            return
        self._sender(channel).put(Job(alert, channel, done, data, attributes))

    def note(self, channel: str, note: Note) -> None:
        """Queue a reply in an alert's thread (feedback), paced with the channel's posts."""
        self._sender(channel).put(note)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the senders after the jobs they hold."""
        with self._lock:
            senders = list(self._senders.values())
        for sender in senders:
            sender.put(None)
        for sender in senders:
            sender.join(timeout_s)

    def deliver(self, job: Job) -> Outcome:
        """Post one alert revision (or find it already posted); returns the outcome."""
        alert = job.alert
        record = self.ledger.get(alert.alert_id, alert.revision)
        if record is not None and record.state == "posted":
            return "duplicate"
        root = self._root(alert, job.channel) if alert.revision else None
        thread = root.thread if root else None
        if record is not None and record.state == "pending":
            thread = record.thread_ts or thread
        since = self._lookup_since(alert, record)
        if since is not None:
            found = self.api.find(job.channel, alert_metadata(alert), since, thread)
            if found is not None:
                self.ledger.posted(alert, job.channel, found.ts, found.thread_ts)
                return "duplicate"
        message = self.render(alert) if root is None else revision_message(alert, root.alert)
        self.ledger.pending(alert, job.channel, thread)
        posted = self.api.post(job.channel, message, thread, find_since=time.time() - 60)
        self.ledger.posted(alert, job.channel, posted.ts, thread)
        if root is not None:
            self._refresh_root(alert.alert_id)
        return "posted"

    def deliver_burst(self, jobs: list[Job]) -> Posted:
        """Many new alerts on one channel: one summary, each alert a reply in its thread."""
        channel = jobs[0].channel
        alerts = [j.alert for j in jobs]
        names = {a.chain_id: describe_chain(a.chain_id, self.chains).name for a in alerts}
        summary = burst_message(alerts, self._pools(alerts), names)
        for job in jobs:
            self.ledger.pending(job.alert, channel, None)
        posted = self.api.post(channel, summary, find_since=time.time() - 60)
        self.counts.add("bursts")
        log.info("slack: %d alerts on %s grouped under one summary", len(jobs), channel)
        for job in jobs:
            self.ledger.pending(job.alert, channel, posted.ts)
        return posted

    def post_reply(self, job: Job, thread: str) -> Outcome:
        """Post a grouped alert in its summary's thread (unless it is on record already)."""
        record = self.ledger.get(job.alert.alert_id, job.alert.revision)
        if record is not None and record.state == "posted":
            return "duplicate"
        message = self.render(job.alert)
        answer = self.api.post(job.channel, message, thread, find_since=time.time() - 60)
        self.ledger.posted(job.alert, job.channel, answer.ts, thread)
        return "posted"

    def post_note(self, channel: str, note: Note) -> None:
        root = self.ledger.root(note.alert_id)
        if root is None or root.ts is None:
            log.warning("slack: feedback on %s, whose post is not on record", note.alert_id)
            return
        self.api.post(channel, note.message, root.thread, find_since=time.time())
        self._refresh_root(note.alert_id)

    def finish(self, job: Job, outcome: Outcome) -> None:
        self._finish(job.done, outcome)

    def fail(self, job: Job, err: Exception) -> None:
        """A job's delivery failed: dead-letter a permanent error, leave a transient one for
        redelivery."""
        if isinstance(err, PermanentSlackError):
            log.error("slack: %s; alert %s to the dead-letter topic", err, job.alert.alert_id)
            self._dead_letter(job.data, job.attributes, f"slack: {err}", job.done)
        else:
            log.warning("slack: %s; alert %s left for redelivery", err, job.alert.alert_id)
            self._finish(job.done, "retry")

    def _root(self, alert: Alert, channel: str) -> Post | None:
        root = self.ledger.root(alert.alert_id)
        if root is not None or not self._may_be_posted_before(alert):
            return root
        first = alert.model_copy(update={"revision": 0})
        since = time.time() - self.settings.lookup_horizon_s
        found = self.api.find(channel, alert_metadata(first), since)
        if found is None:
            return None
        self.ledger.posted(first, channel, found.ts, found.thread_ts)
        return self.ledger.root(alert.alert_id)

    def _lookup_since(self, alert: Alert, record: Post | None) -> float | None:
        """When the post may exist without a record of it: from when to look it up."""
        if record is not None:  # pending: the process died around the post
            return record.recorded_at - _LOOKUP_SLACK_S
        if self._may_be_posted_before(alert):
            return time.time() - self.settings.lookup_horizon_s
        return None

    def _may_be_posted_before(self, alert: Alert) -> bool:
        """A fresh ledger (an ephemeral disk) knows nothing of posts before it opened."""
        return self.ledger.fresh and alert.detected_at.timestamp() < self.ledger.opened_at - 1

    def _refresh_root(self, alert_id: str) -> None:
        root, latest = self.ledger.root(alert_id), self.ledger.latest(alert_id)
        if root is None or latest is None or root.ts is None:
            return
        try:
            channel_id = self.api.channel_id(root.channel)
            shown = self.render(latest.alert, first=root.alert)
            # The root keeps its own identity (metadata): it is the first revision's post.
            shown = dataclasses.replace(shown, metadata=alert_metadata(root.alert))
            self.api.update(channel_id, root.ts, shown)
        except (PermanentSlackError, TransientSlackError) as err:
            # The reply holds the revision; a stale root is not worth a redelivery.
            log.warning("slack: the root of %s was not updated: %s", alert_id, err)

    def render(self, alert: Alert, first: Alert | None = None) -> Message:
        """The message of a thread's root at ``alert``'s revision (spanning from ``first``)."""
        shown = alert
        if first is not None and first.window_start < alert.window_start:
            shown = alert.model_copy(update={"window_start": first.window_start})
        chain = describe_chain(alert.chain_id, self.chains)
        explorer = self.settings.explorer(alert.chain_id, self.chains)
        links = Links(explorer, self.settings.dashboard_url, chain.name)
        feedback = self.ledger.feedback(alert.alert_id)
        return alert_message(shown, links, self._pools([alert]), feedback)

    def _pools(self, alerts: list[Alert]) -> dict[str, PoolInfo]:
        try:
            return self.pool_names.lookup([p.pool for a in alerts for p in a.pools])
        except Exception as err:  # noqa: BLE001 - names are a nicety: post without them
            log.warning("slack: pool names unavailable: %s", err)
            return {}

    def _dead_letter(
        self, data: bytes, attributes: Mapping[str, str], reason: str, done: Callable
    ) -> None:
        try:
            self.dead_letters.send(data, attributes, reason)
        except Exception as err:  # noqa: BLE001 - not dead-lettered: keep it on the topic
            log.warning("slack: dead-letter publish failed (%s): left for redelivery", err)
            self._finish(done, "retry")
            return
        self._finish(done, "dead-lettered")

    def _finish(self, done: Callable[[Outcome], None], outcome: Outcome) -> None:
        self.counts.add(outcome)
        done(outcome)

    def _sender(self, channel: str) -> _ChannelSender:
        with self._lock:
            if channel not in self._senders:
                self._senders[channel] = _ChannelSender(self, channel)
                self._senders[channel].start()
            return self._senders[channel]


def _why(err: ValueError) -> str:
    """One line: the fields a payload got wrong, or the parser's own words."""
    if isinstance(err, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'alert'}: {e['msg']}"
            for e in err.errors()[:3]
        )
    return str(err).splitlines()[0]


class _ChannelSender(threading.Thread):
    """Posts one channel's jobs in order (the API spaces the posts)."""

    def __init__(self, consumer: SlackConsumer, channel: str) -> None:
        super().__init__(name=f"slack-{channel}", daemon=True)
        self.consumer = consumer
        self.channel = channel
        self._queue: queue.Queue[Job | Note | None] = queue.Queue()

    def put(self, item: Job | Note | None) -> None:
        self._queue.put(item)

    def run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            # Wait for the channel's turn before looking at the queue: what arrived
            # meanwhile is seen at once, and a burst is told from a trickle.
            time.sleep(self.consumer.api.wait_before_post(self.channel))
            batch: list[Job | Note | None] = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = None in batch
            items = [i for i in batch if i is not None]
            fresh = self._fresh(items)
            if len(fresh) >= self.consumer.settings.burst_threshold:
                self._burst(fresh)
                grouped = {id(job) for job in fresh}
                # Copies of a grouped alert (a redelivery in the same batch) come after it
                # and are found posted.
                items = [i for i in items if id(i) not in grouped]
            for item in items:
                self._one(item)
            if stop:
                return

    def _fresh(self, items: list[Job | Note]) -> list[Job]:
        """The new alerts among ``items``: revision 0, not on record, each alert once."""
        fresh: dict[str, Job] = {}
        for item in items:
            if not isinstance(item, Job) or item.alert.revision or item.alert.alert_id in fresh:
                continue
            if self.consumer.ledger.get(item.alert.alert_id, 0) is None:
                fresh[item.alert.alert_id] = item
        return list(fresh.values())

    def _one(self, item: Job | Note) -> None:
        consumer = self.consumer
        try:
            if isinstance(item, Note):
                consumer.post_note(self.channel, item)
            else:
                consumer.finish(item, consumer.deliver(item))
        except (PermanentSlackError, TransientSlackError) as err:
            if isinstance(item, Note):
                log.warning("slack: feedback reply on %s not posted: %s", item.alert_id, err)
            else:
                consumer.fail(item, err)
        except Exception as err:  # noqa: BLE001 - a bug must not stop the channel
            log.exception("slack: delivering on %s failed", self.channel)
            if isinstance(item, Job):
                consumer.fail(item, TransientSlackError(str(err)))

    def _burst(self, jobs: list[Job]) -> None:
        consumer = self.consumer
        try:
            summary: Posted = consumer.deliver_burst(jobs)
        except (PermanentSlackError, TransientSlackError) as err:
            for job in jobs:
                consumer.fail(job, err)
            return
        for job in jobs:
            try:
                consumer.finish(job, consumer.post_reply(job, summary.ts))
            except (PermanentSlackError, TransientSlackError) as err:
                consumer.fail(job, err)
