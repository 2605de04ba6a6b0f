"""Slack delivery: alerts on the Pub/Sub emulator → `dexwatch slack serve` → the local Slack
stand-in, in three phases, each with its own Pub/Sub project, state dir and stand-in.

The consumer runs as a real subprocess (``python -m dexwatch --config <file> slack serve``,
the working tree's code); the stand-in of the Slack Web API (infra.local.slack_standin)
runs in this process and enforces one message per second per channel (429 + Retry-After
otherwise). Ten channels ``#bench-0`` ... ``#bench-9``, one alert kind routed to each.

1. latency: ``--latency-alerts`` (200) new alerts over the ten channels (in turn), 2 a
   second in all (under the limit); each publish time is taken just before the publish.
2. burst: ``--burst-alerts`` (50) new alerts on one channel published within one second.
3. faults: 80 alerts, 30 of them with a revision 1 and 10 with a revision 2 (120
   deliverable revisions, 2 a second over the ten channels; eight of the alerts come as a
   burst on one channel within half a second, two of those published twice at once), while
   the stand-in answers 429s, 5xx (twice a run of four on one channel, past the consumer's
   3 retries: nacked and redelivered) and slow answers past the consumer's 2 s timeout
   (3, 4, 5 and 6 s; the post is made when the answer comes); every tenth revision is
   published twice at once, the consumer is killed (kill -9) mid-stream while a slow post
   is in flight and restarted 3 s later, and 20 revisions are published again after the
   restart. Beside them, 10 alerts routed to a channel the stand-in does not have
   (channel_not_found: permanent) and 10 bad payloads (not JSON, unknown schema_version,
   missing or wrong fields). The phase waits until every revision and dead letter is in
   (``--settle-s``, 600 s at most: after a kill -9 the emulator hands some messages to the
   dead consumer's stream, and they come back one ack deadline (20 s) later or more).

Figures (bench/results/slack.json):
- ``delivered_share``: deliverable revisions of the faults phase found in exactly one Slack
  message / deliverable revisions published (target 1.0).
- ``dead_lettered_share``: undeliverable alerts and bad payloads found on ``alerts-dlq``
  (read on ``alerts-dlq-inspect``) with a non-empty reason and stage "slack" / those sent
  (target 1.0).
- ``duplicate_posts``: Slack messages beyond the first carrying one (alert id, revision),
  in all three phases (target 0).
- ``post_latency_p95_s`` (target ≤ 1.5 s) and ``post_latency_p50_s``: publish → the
  message at the stand-in (its received_at), latency phase; ``latency_phase_429s``: the
  stand-in's rate-limit answers in that phase (expected 0).
- ``burst_drain_s``: the burst's first publish → the last of its alerts in Slack (target
  ≤ 60 s); ``burst_summaries``: the summary messages it became.

Work dir: bench/work/slack (emptied first; the consumer's logs and configs stay there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml
from _results import write_results
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from dexwatch.app.slack.messages import ALERT_EVENT, BURST_EVENT
from dexwatch.app.slack.samples import sample_alert
from dexwatch.core.schemas.alert import Alert, PoolRef
from dexwatch.core.schemas.topics import (
    ALERTS,
    ALERTS_DLQ_SUBSCRIPTION,
    subscription_path,
    topic_path,
)
from infra.local import processes, stack
from infra.local.settings import load_local_settings
from infra.local.slack_standin import SlackStandin

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "slack"
# One kind per channel: the routes send kind i to #bench-i.
KINDS = (
    "liquidity-drain", "rug-pull", "price-dislocation", "volume-spike", "volume-drop",
    "activity-spike", "activity-drop", "wash-trading", "sandwich", "liquidity-inflow",
)  # fmt: skip
CHANNELS = [f"#bench-{i}" for i in range(len(KINDS))]
# Routed to a channel the stand-in does not have: channel_not_found, for good.
GONE_KIND, GONE_CHANNEL = "depeg", "#bench-archived"
RETRY = {"timeout_s": 2.0, "max_retries": 3, "backoff_base_s": 0.2, "backoff_max_s": 1.0}
CHAIN_ID = 31337
# The faults phase's burst: alerts 40-47 on #bench-3 within half a second; 41 and 44 are
# published twice at once.
BURST_IN_FAULTS = range(40, 48)
BURST_COPIED = (41, 44)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# Alerts.


def make_alert(tag: str, n: int, kind: str, severity: str = "medium") -> Alert:
    """A new alert (revision 0), detected now, of its own pool and id."""
    now = datetime.now(UTC)
    pool = f"0x{random.Random(f'{tag}-{n}').getrandbits(160):040x}"
    stamp = int(now.timestamp())
    return sample_alert(CHAIN_ID, now).model_copy(
        update={
            "alert_id": f"{CHAIN_ID}:{pool}:{stamp}:{tag}-{n}",
            "window_id": f"{CHAIN_ID}:{pool}:{stamp}",
            "pools": [PoolRef(dex="uniswap_v3", pool=pool)],
            "kind": kind,
            "severity": severity,
            "score": round(-0.05 - 0.001 * n, 4),
            "detected_at": now,
        }
    )


def revision_of(alert: Alert, revision: int) -> Alert:
    """Revision ``revision`` of ``alert``: a later window, a worse score, severity up."""
    now = datetime.now(UTC)
    severity = ("medium", "high", "high")[min(revision, 2)]
    return alert.model_copy(
        update={
            "revision": revision,
            "window_id": f"{alert.window_id}:{revision}",
            "window_end": alert.window_end + timedelta(seconds=15 * revision),
            "score": round(alert.score - 0.02 * revision, 4),
            "severity": severity,
            "detected_at": now,
        }
    )


def bad_payloads() -> list[tuple[str, bytes]]:
    """(what, data) of ten messages no reader can take as an alert."""
    good = json.loads(make_alert("bad", 0, KINDS[0]).to_json())
    cases: list[tuple[str, dict | bytes]] = [
        ("not JSON", b"{not json"),
        ("truncated JSON", make_alert("bad", 1, KINDS[0]).to_json()[:57]),
        ("binary", bytes(range(256))[::7]),
        ("a JSON array", b'[{"schema_version": 2}]'),
        ("unknown schema_version", {**good, "schema_version": 9}),
        ("no schema_version", {k: v for k, v in good.items() if k != "schema_version"}),
        ("missing alert_id", {k: v for k, v in good.items() if k != "alert_id"}),
        ("missing severity and pools", {
            k: v for k, v in good.items() if k not in ("severity", "pools")
        }),
        ("unknown severity", {**good, "severity": "critical"}),
        ("no pools", {**good, "pools": []}),
    ]  # fmt: skip
    out = []
    for n, (what, value) in enumerate(cases):
        if isinstance(value, dict):
            # Unique per case: the alert id (where there is one) names the case.
            if "alert_id" in value:
                value = {**value, "alert_id": f"{value['alert_id']}:bad-{n}"}
            data = json.dumps(value).encode()
        else:
            data = value
        out.append((what, data))
    return out


# The stack: the emulator, the consumer, the dead-letter reader.


class Emulator:
    """The Pub/Sub emulator on a free port, for the whole run."""

    def __init__(self, work: Path) -> None:
        self.state_dir = work / "emulator"
        self.settings = load_local_settings(
            state_dir=str(self.state_dir),
            local={
                "emulator_port": processes.free_port(),
                "node_modules": str(ROOT / "node_modules"),
            },
        )
        self.host = self.settings.local.emulator_host

    def start(self) -> None:
        processes.start(stack.emulator_spec(self.settings), self.state_dir, ready_timeout_s=90)
        os.environ["PUBSUB_EMULATOR_HOST"] = self.host

    def stop(self) -> None:
        processes.stop(self.state_dir, stack.EMULATOR)

    def project(self, name: str) -> str:
        stack.ensure_pubsub_resources(name)
        return name


class Consumer:
    """`dexwatch slack serve` as a subprocess, with its config, state dir and log under
    ``work``."""

    def __init__(self, work: Path, project: str, emulator_host: str, standin_port: int) -> None:
        work.mkdir(parents=True, exist_ok=True)
        routes = [{"channel": c, "kinds": [k]} for c, k in zip(CHANNELS, KINDS, strict=True)]
        routes.append({"channel": GONE_CHANNEL, "kinds": [GONE_KIND]})
        config = {
            "state_dir": str(work / "state"),
            "pubsub": {"project": project, "emulator_host": emulator_host},
            "slack": {
                "enabled": True,
                "local_standin": True,
                "standin_port": standin_port,
                "port": processes.free_port(),
                "routes": routes,
                "default_channel": None,
                "retry": RETRY,
            },
            "logging": {"format": "json"},
        }
        self.config = work / "dexwatch.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = work / "consumer.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> float:
        """Start it; returns when it says it is posting (the time it took)."""
        began = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEXWATCH_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dexwatch", "--config", str(self.config), "slack", "serve"],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        while time.monotonic() - began < timeout_s:
            with self.log.open("rb") as f:
                f.seek(offset)
                if b"slack: posting as" in f.read():
                    return time.monotonic() - began
            if self.proc.poll() is not None:
                raise RuntimeError(f"the consumer exited: {self.tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"the consumer did not start in {timeout_s:g} s: {self.tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a clean stop), SIGKILL if it does not end within 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def events(self) -> list[dict]:
        """The JSON log lines it wrote."""
        found = []
        if self.log.exists():
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        found.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
        return found

    def log_counts(self) -> Counter:
        """What its log says happened, counted."""
        counts: Counter = Counter()
        for event in self.events():
            text = str(event.get("event", ""))
            if "rate limited" in text:
                counts["429 retried"] += 1
            elif " failed (HTTP 5" in text:
                counts["5xx retried"] += 1
            elif " failed (" in text and "dead-letter" not in text:
                counts[f"retried after {text.split(' failed (')[1].split(')')[0]}"] += 1
            if "left for redelivery" in text:
                counts["nacked for redelivery"] += 1
            if "to the dead-letter topic" in text:
                counts["dead-lettered (Slack refused)"] += 1
            if "grouped under one summary" in text:
                counts["bursts"] += 1
            if event.get("level") in ("error", "critical") or "Traceback" in text:
                counts["errors logged"] += 1
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("slack: ") and " posted, " in line:
                counts["clean stops"] += 1
        return counts


class DeadLetterReader(threading.Thread):
    """Pulls and acks ``alerts-dlq-inspect`` until stopped; ``letters``: (data, attributes)."""

    def __init__(self, project: str) -> None:
        super().__init__(name="dlq-reader", daemon=True)
        self.path = subscription_path(project, ALERTS_DLQ_SUBSCRIPTION)
        self.letters: list[tuple[bytes, dict[str, str]]] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        subscriber = pubsub_v1.SubscriberClient()
        try:
            while not self.stop.is_set():
                try:
                    response = subscriber.pull(
                        request={"subscription": self.path, "max_messages": 100}, timeout=5
                    )
                except (gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.RetryError):
                    continue
                received = response.received_messages
                if not received:
                    self.stop.wait(0.5)
                    continue
                with self._lock:
                    self.letters += [(m.message.data, dict(m.message.attributes)) for m in received]
                subscriber.acknowledge(
                    request={"subscription": self.path, "ack_ids": [m.ack_id for m in received]}
                )
        finally:
            subscriber.close()

    def snapshot(self) -> list[tuple[bytes, dict[str, str]]]:
        with self._lock:
            return list(self.letters)

    def close(self) -> None:
        self.stop.set()
        self.join(15)


class Publisher:
    """Publishes to the alerts topic; remembers every future, to check at the end."""

    def __init__(self, project: str) -> None:
        self.client = pubsub_v1.PublisherClient()
        self.topic = topic_path(project, ALERTS)
        self.futures: list = []
        self.count = 0

    def alert(self, alert: Alert) -> float:
        """Publish ``alert``; returns the time just before the publish."""
        return self.raw(alert.to_json(), alert.attributes())

    def raw(self, data: bytes, attributes: dict[str, str]) -> float:
        at = time.time()
        self.futures.append(self.client.publish(self.topic, data, **attributes))
        self.count += 1
        return at

    def settle(self) -> None:
        for future in self.futures:
            future.result(timeout=60)
        self.futures.clear()


# What reached Slack.


def alert_posts(messages: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """(alert id, revision) → the messages carrying it."""
    found: dict[tuple[str, int], list[dict]] = {}
    for message in messages:
        meta = message.get("metadata") or {}
        if meta.get("event_type") == ALERT_EVENT:
            payload = meta.get("event_payload") or {}
            found.setdefault((payload["alert_id"], payload["revision"]), []).append(message)
    return found


def summaries(messages: list[dict]) -> list[dict]:
    return [m for m in messages if (m.get("metadata") or {}).get("event_type") == BURST_EVENT]


def duplicates(posts: dict[tuple[str, int], list[dict]]) -> int:
    return sum(len(found) - 1 for found in posts.values() if len(found) > 1)


def paced(count: int, spacing_s: float) -> Iterator[int]:
    """0 .. count-1, the n-th yielded n * spacing_s after the first (on the wall clock)."""
    started = time.time()
    for n in range(count):
        time.sleep(max(0.0, started + n * spacing_s - time.time()))
        yield n


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


def post_statuses(standin: SlackStandin) -> Counter:
    """chat.postMessage answers by status, injected faults apart ("429 fault")."""
    counts: Counter = Counter()
    for request in standin.requests():
        if request["method"] == "chat.postMessage":
            fault = " fault" if request.get("fault") else ""
            counts[f"{request['status']}{fault}"] += 1
    return counts


def settle_quietly(standin: SlackStandin, quiet_s: float, limit_s: float) -> None:
    """Wait until no message has arrived for ``quiet_s`` (late duplicates would show)."""
    started = time.monotonic()
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() - started < limit_s:
        count = len(standin.messages())
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change >= quiet_s:
            return
        time.sleep(0.5)


@dataclass
class Phase:
    """What a phase measured: figures, details (figure → lines), duplicates found."""

    figures: dict[str, dict] = field(default_factory=dict)
    details: dict[str, list[str]] = field(default_factory=dict)
    duplicates: int = 0
    duplicate_lines: list[str] = field(default_factory=list)


# Phase 1: latency.


def phase_latency(emulator: Emulator, alerts: int, rate: float) -> Phase:
    log(f"latency: {alerts} alerts over {len(CHANNELS)} channels at {rate:g}/s")
    project = emulator.project("bench-slack-latency")
    with SlackStandin(channels=CHANNELS, interval_s=1.0) as standin:
        consumer = Consumer(WORK / "latency", project, emulator.host, standin.port)
        publisher = Publisher(project)
        sent: dict[str, float] = {}
        try:
            consumer.start()
            for n in paced(alerts, 1 / rate):
                alert = make_alert("latency", n, KINDS[n % len(KINDS)])
                sent[alert.alert_id] = publisher.alert(alert)
                if (n + 1) % 50 == 0:
                    posted = len(alert_posts(standin.messages()))
                    log(f"  latency: {n + 1} published, {posted} in Slack")
            publisher.settle()
            done = wait_until(lambda: len(alert_posts(standin.messages())) >= alerts, 120)
            settle_quietly(standin, 5, 30)
            log(f"  latency: all in Slack: {done}")
        finally:
            consumer.stop()
        messages, statuses = standin.messages(), post_statuses(standin)
    posts = alert_posts(messages)
    latencies = [
        min(m["received_at"] for m in posts[(aid, 0)]) - at
        for aid, at in sent.items()
        if (aid, 0) in posts
    ]
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95))
    rate_limited = statuses.get("429", 0)
    missing = alerts - len(latencies)
    phase = Phase()
    phase.figures = {
        "post_latency_p95_s": {"value": round(p95, 3), "unit": "s"},
        "post_latency_p50_s": {"value": round(p50, 3), "unit": "s"},
        "latency_phase_429s": {"value": rate_limited, "unit": "answers"},
    }
    phase.details["post_latency_p95_s"] = [
        f"{alerts} new alerts, kind i to #bench-i in turn (each channel every "
        f"{len(CHANNELS) / rate:g} s), {rate:g}/s in all; latency = the stand-in's received_at "
        "of the alert's message − time.time() just before the publish",
        f"{len(latencies)} measured, {missing} never posted; p50 {p50:.3f} s, p95 {p95:.3f} s, "
        f"max {max(latencies):.3f} s, min {min(latencies):.3f} s",
        f"chat.postMessage answers at the stand-in: {dict(statuses)}",
        f"consumer log: {dict(consumer.log_counts())}",
    ]
    phase.duplicates = duplicates(posts)
    phase.duplicate_lines = [f"latency phase: {phase.duplicates}"]
    log(f"latency: p50 {p50:.3f} s, p95 {p95:.3f} s, 429s {rate_limited}, missing {missing}")
    return phase


# Phase 2: burst.


def phase_burst(emulator: Emulator, alerts: int) -> Phase:
    log(f"burst: {alerts} alerts on {CHANNELS[0]} within a second")
    project = emulator.project("bench-slack-burst")
    with SlackStandin(channels=CHANNELS, interval_s=1.0) as standin:
        consumer = Consumer(WORK / "burst", project, emulator.host, standin.port)
        publisher = Publisher(project)
        sent: dict[str, float] = {}
        try:
            consumer.start()
            for n in paced(alerts, 0.9 / alerts):
                alert = make_alert("burst", n, KINDS[0])
                sent[alert.alert_id] = publisher.alert(alert)
            publisher.settle()
            log(f"  burst: published in {max(sent.values()) - min(sent.values()):.2f} s")
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                posted = len(alert_posts(standin.messages()))
                if posted >= alerts:
                    break
                log(f"  burst: {posted} of {alerts} in Slack")
                time.sleep(5)
            settle_quietly(standin, 5, 30)
        finally:
            consumer.stop()
        messages, statuses = standin.messages(), post_statuses(standin)
    posts = alert_posts(messages)
    ours = {key: found for key, found in posts.items() if key[0] in sent}
    first = min(sent.values())
    last = max((min(m["received_at"] for m in found) for found in ours.values()), default=first)
    drain = last - first
    found_summaries = summaries(messages)
    threads = {s["ts"] for s in found_summaries}
    in_threads = sum(1 for found in ours.values() if found[0].get("thread_ts") in threads)
    top_level = sum(1 for found in ours.values() if not found[0].get("thread_ts"))
    missing = alerts - len(ours)
    phase = Phase()
    phase.figures = {
        "burst_drain_s": {"value": round(drain, 2), "unit": "s"},
        "burst_summaries": {"value": len(found_summaries), "unit": "messages"},
    }
    sizes = [
        len((s["metadata"]["event_payload"] or {}).get("alert_ids", [])) for s in found_summaries
    ]
    phase.details["burst_drain_s"] = [
        f"{alerts} new alerts on {CHANNELS[0]} published in "
        f"{max(sent.values()) - first:.2f} s; drain = the last alert's message received − "
        "the first publish",
        f"{len(ours)} alerts in Slack ({missing} missing): {in_threads} as replies in a "
        f"summary's thread, {top_level} on their own; {len(found_summaries)} summaries "
        f"(alerts listed: {sizes}); {len(messages)} messages in all",
        f"chat.postMessage answers at the stand-in: {dict(statuses)}",
        f"consumer log: {dict(consumer.log_counts())}",
    ]
    phase.duplicates = duplicates(ours)
    phase.duplicate_lines = [f"burst phase: {phase.duplicates}"]
    log(f"burst: drained in {drain:.2f} s, {len(found_summaries)} summaries, missing {missing}")
    return phase


# Phase 3: faults.


@dataclass
class Planned:
    """One revision to publish: the alert is made when it is first published."""

    at: float
    key: tuple[str, int]
    make: Callable[[], Alert]
    data: bytes = b""
    attributes: dict[str, str] = field(default_factory=dict)


def phase_faults(emulator: Emulator, seed: int, settle_s: float) -> Phase:
    rng = random.Random(seed)
    project = emulator.project("bench-slack-faults")
    roots: dict[int, Alert] = {}
    plan: list[Planned] = []

    def root(n: int) -> Alert:
        if n not in roots:
            kind = KINDS[3] if n in BURST_IN_FAULTS else KINDS[n % len(KINDS)]
            roots[n] = make_alert("faults", n, kind)
        return roots[n]

    # 80 alerts at 2/s, kind n % 10, except alerts 40-47: a burst of eight new alerts on
    # #bench-3 within half a second (two of them published twice at once). n % 8 in (0, 3,
    # 5): a revision 1 eight seconds later; n % 8 == 0: a revision 2 sixteen seconds later:
    # 80 + 30 + 10 = 120 deliverable revisions.
    for n in range(80):
        t0 = 20 + 0.06 * (n - 40) if n in BURST_IN_FAULTS else 0.5 * n
        aid = f"faults-{n}"
        plan.append(Planned(t0, (aid, 0), lambda n=n: root(n)))
        if n % 8 in (0, 3, 5):
            plan.append(Planned(t0 + 8, (aid, 1), lambda n=n: revision_of(root(n), 1)))
        if n % 8 == 0:
            plan.append(Planned(t0 + 16, (aid, 2), lambda n=n: revision_of(root(n), 2)))
    plan.sort(key=lambda p: p.at)
    deliverable = len(plan)
    gone = [Planned(2 + 4 * j, (f"gone-{j}", 0), lambda j=j: make_alert("gone", j, GONE_KIND))
            for j in range(10)]  # fmt: skip
    bad = bad_payloads()

    events: list[tuple[float, str, Callable[[], None]]] = []
    published: dict[tuple[str, int], Planned] = {}
    real_ids: dict[tuple[str, int], str] = {}  # planned key → the alert id
    sent_at: dict[tuple[str, int], list[float]] = {}  # planned key → its publish times
    copies = {"at once": 0, "after the restart": 0}

    with SlackStandin(channels=CHANNELS, interval_s=1.0) as standin:
        consumer = Consumer(WORK / "faults", project, emulator.host, standin.port)
        publisher = Publisher(project)
        letters = DeadLetterReader(project)
        injected: Counter = Counter()
        timeline: dict[str, float] = {}
        posts_at: dict[str, int] = {}

        def gone_ids() -> set[str]:
            return {real_ids[p.key] for p in gone if p.key in real_ids}

        def publish(planned: Planned) -> None:
            if not planned.data:
                alert = planned.make()
                planned.data, planned.attributes = alert.to_json(), alert.attributes()
                real_ids[planned.key] = alert.alert_id
            sent_at.setdefault(planned.key, []).append(
                publisher.raw(planned.data, planned.attributes)
            )
            published[planned.key] = planned

        def again(planned: Planned, why: str) -> Callable[[], None]:
            def run() -> None:
                sent_at[planned.key].append(publisher.raw(planned.data, planned.attributes))
                copies[why] += 1

            return run

        def fault(what: str, method: str, count: int = 1, **kwargs) -> Callable[[], None]:
            def run() -> None:
                standin.inject(method, count=count, **kwargs)
                injected[what] += count

            return run

        def kill() -> None:
            timeline["kill"] = time.time() - started
            posts_at["kill"] = len(alert_posts(standin.messages()))
            consumer.kill()
            log(f"  faults: consumer killed (kill -9) with {posts_at['kill']} alert posts made")

        def restart() -> None:
            took = consumer.start()
            timeline["restart"] = time.time() - started
            posts_at["restart"] = len(alert_posts(standin.messages()))
            log(f"  faults: consumer restarted ({took:.1f} s to start)")

        for i, planned in enumerate(plan):
            events.append((planned.at, "publish", lambda p=planned: publish(p)))
            # Published twice at once (an at-least-once publisher): every tenth revision, and
            # two alerts of the burst.
            n = int(planned.key[0].split("-")[1])
            burst_copy = planned.key[1] == 0 and n in BURST_COPIED
            if burst_copy or (i % 10 == 5 and not (planned.key[1] == 0 and n in BURST_IN_FAULTS)):
                delay = 0.03 if burst_copy else 0.2
                events.append((planned.at + delay, "copy", lambda p=planned: again(p, "at once")()))
        for planned in gone:
            events.append((planned.at, "gone", lambda p=planned: publish(p)))
        for j, (what, data) in enumerate(bad):
            attributes = {"kind": KINDS[j % len(KINDS)], "bench_bad": what}
            events.append((1 + 4 * j, "bad", lambda d=data, a=attributes: publisher.raw(d, a)))
        post = "chat.postMessage"
        schedule = [
            (3, fault("429 on chat.postMessage", post, 2, status=429, retry_after=1)),
            (6, fault("503 on chat.postMessage", post, 2, status=503)),
            (9, fault("3 s answer on chat.postMessage", post, delay_s=3.0)),
            # max_retries 3: the 4th failure in a row gives up, the message is nacked and
            # redelivered (one channel's, so that one post meets all four: alert 24 at 12 s).
            (11.9, fault("500 ×4 on #bench-4's next post (past the retries)", post, 4,
                         status=500, channel="#bench-4")),
            (15, fault("429 on chat.postMessage", post, 3, status=429, retry_after=2)),
            (18, fault("5 s answer on chat.postMessage", post, delay_s=5.0)),
            (21, fault("502 on any method", "*", 2, status=502)),
            (24, fault("3 s answer on chat.update", "chat.update", delay_s=3.0)),
            (27, fault("504 on chat.postMessage", post, 2, status=504)),
            (30, fault("6 s answer on chat.postMessage (3x the timeout)", post, delay_s=6.0)),
            # A post in flight (slow) when the consumer is killed.
            (33.5, fault("4 s answer on chat.postMessage (at the kill)", post, delay_s=4.0)),
            (34.5, kill),
            (37.5, restart),
            (41, fault("429 on chat.postMessage", post, 2, status=429, retry_after=1)),
            (44, fault("503 on any method", "*", 2, status=503)),
            (47, fault("3 s answer on chat.postMessage", post, delay_s=3.0)),
            (50, fault("500 ×4 on #bench-2's next post (past the retries)", post, 4,
                       status=500, channel="#bench-2")),
        ]  # fmt: skip
        for at, action in schedule:
            events.append((at, "fault", action))

        def republish() -> None:
            chosen = rng.sample(sorted(k for k in published if k[0].startswith("faults")), 20)
            for key in chosen:
                again(published[key], "after the restart")()
            log("  faults: 20 revisions published again")

        events.append((62, "republish", republish))
        events.sort(key=lambda e: e[0])
        log(
            f"faults: {deliverable} deliverable revisions, {len(gone)} undeliverable alerts, "
            f"{len(bad)} bad payloads; {len(schedule) - 2} faults injected, a kill -9 at 34.5 s"
        )
        try:
            consumer.start()
            letters.start()
            started = time.time()
            next_report = 10.0
            for at, _, action in events:
                time.sleep(max(0.0, started + at - time.time()))
                action()
                if at >= next_report:
                    next_report += 10
                    posts = alert_posts(standin.messages())
                    log(
                        f"  faults: t={at:.0f} s, {len(published)} revisions published, "
                        f"{len(posts)} in Slack, {len(letters.snapshot())} dead letters"
                    )
            publisher.settle()
            timeline["last publish"] = time.time() - started
            wanted_ids = {real_ids[key]: key for key in real_ids if key[0].startswith("faults")}

            def settled() -> bool:
                posts = alert_posts(standin.messages())
                delivered = sum(1 for aid, rev in posts if aid in wanted_ids)
                lettered = _letters_matched(letters.snapshot(), gone_ids(), bad)
                return delivered >= deliverable and len(lettered) >= len(gone) + len(bad)

            deadline = time.monotonic() + settle_s
            next_line = 0.0
            while not settled() and time.monotonic() < deadline:
                if time.monotonic() >= next_line:
                    next_line = time.monotonic() + 15
                    posts = alert_posts(standin.messages())
                    log(
                        f"  faults: settling (t={time.time() - started:.0f} s): {len(posts)} "
                        f"revisions in Slack, {len(letters.snapshot())} dead letters"
                    )
                time.sleep(1)
            timeline["settled"] = time.time() - started
            settle_quietly(standin, 15, 90)
        finally:
            consumer.stop()
            letters.close()
        messages, statuses = standin.messages(), post_statuses(standin)
        requests = standin.requests()
        remaining_faults = len(standin.api._faults)  # not answered: none expected
    _trace(WORK / "faults" / "trace.json", started, real_ids, sent_at, messages, requests)

    posts = alert_posts(messages)
    by_id = {real_ids[key]: key for key in real_ids}
    deliverable_keys = {(real_ids[key], key[1]) for key in real_ids if key[0].startswith("faults")}
    once = sum(1 for key in deliverable_keys if len(posts.get(key, [])) == 1)
    never = sorted(by_id[k[0]] for k in deliverable_keys if k not in posts)
    doubled = {key: len(found) for key, found in posts.items() if len(found) > 1}

    # Dead letters: the undeliverable alerts by alert id, the bad payloads by their bytes.
    letter_list = letters.snapshot()
    gone_set = {real_ids[p.key] for p in gone}
    matched = _letters_matched(letter_list, gone_set, bad)
    gone_ok = sum(1 for key in matched if key.startswith("gone "))
    bad_ok = sum(1 for key in matched if key.startswith("bad "))
    deliverable_ids = {a for a, _ in deliverable_keys}
    false_letters = sum(1 for data, _ in letter_list if _alert_id(data) in deliverable_ids)
    reasons = Counter(a.get("reason", "") for _, a in letter_list)
    gone_posted = sum(1 for aid, _ in posts if aid in gone_set)
    late = sorted(
        round(min(m["received_at"] for m in posts[(real_ids[k], k[1])]) - sent_at[k][0], 1)
        for k in real_ids
        if k[0].startswith("faults") and (real_ids[k], k[1]) in posts
    )
    late = [x for x in late if x > 30]
    burst_summaries = summaries(messages)
    summary_ids = [m["metadata"]["event_payload"].get("alert_ids", []) for m in burst_summaries]

    phase = Phase()
    delivered_share = once / deliverable
    dead_share = (gone_ok + bad_ok) / (len(gone) + len(bad))
    phase.figures = {
        "delivered_share": {"value": round(delivered_share, 4), "unit": "share"},
        "dead_lettered_share": {"value": round(dead_share, 4), "unit": "share"},
        "faults_deliverable_revisions": {"value": deliverable, "unit": "revisions"},
    }
    fault_answers = Counter(f"{r['method']} {r['status']}" for r in requests if r.get("fault"))
    real_429 = sum(1 for r in requests if r["status"] == 429 and not r.get("fault"))
    before_kill = posts_at.get("kill", 0)
    after_restart = len({k for k in posts if k[0] in wanted_ids}) - posts_at.get("restart", 0)
    phase.details["delivered_share"] = [
        f"{deliverable} deliverable revisions (80 alerts, 30 revisions 1, 10 revisions 2) "
        f"over {len(CHANNELS)} channels at 2/s; {once} in exactly one message, "
        f"{len(never)} in none ({never[:10]}), {len(doubled)} in more than one",
        f"copies published: {copies['at once']} revisions twice at once, "
        f"{copies['after the restart']} again after the restart (t=62 s); "
        f"{publisher.count} messages published in all",
        "faults injected (calls): "
        + ", ".join(f"{what} ×{n}" for what, n in injected.items())
        + f"; left unanswered at the end: {remaining_faults}",
        f"injected faults answered, by method and status: {dict(fault_answers)}; "
        f"the stand-in's own 429s (rate limit): {real_429}",
        f"chat.postMessage answers at the stand-in: {dict(statuses)}",
        f"kill -9 at t={timeline.get('kill', 0):.1f} s (a 4 s answer in flight) with "
        f"{before_kill} alert revisions posted; restarted at t={timeline.get('restart', 0):.1f} "
        f"s; {after_restart} posted after the restart; last publish "
        f"t={timeline.get('last publish', 0):.1f} s; "
        + (
            f"everything in at t={timeline.get('settled', 0):.1f} s"
            if not never and gone_ok + bad_ok == len(gone) + len(bad)
            else f"not everything in {settle_s:g} s after it (t={timeline.get('settled', 0):.1f} s)"
        ),
        f"{len(late)} revisions first posted more than 30 s after their first publish "
        f"(seconds: {late}). After the kill -9 the Pub/Sub emulator keeps handing part of "
        "the messages, even ones published after the restart, to the killed consumer's "
        "dead stream; they come back only after the ack deadline (the subscription's, 20 s), "
        "maybe to it again (seen with a plain google-cloud-pubsub subscriber too); Pub/Sub "
        "itself would redeliver only the killed consumer's outstanding messages, once",
        f"burst inside the phase: alerts 40-47 on #bench-3 within 0.5 s, 41 and 44 published "
        f"twice at once: {len(burst_summaries)} summaries listing "
        f"{[[by_id[a][0] if a in by_id else a for a in ids] for ids in summary_ids]}",
        f"consumer log (both runs): {dict(consumer.log_counts())}",
        "consumer retry settings: " + json.dumps(RETRY),
    ]
    phase.details["dead_lettered_share"] = [
        f"{len(gone)} alerts routed to {GONE_CHANNEL} (no such channel): {gone_ok} on the "
        f"dead-letter topic with a reason; {gone_posted} posted",
        f"{len(bad)} bad payloads ({', '.join(w for w, _ in bad)}): {bad_ok} on the "
        "dead-letter topic with a reason",
        f"{len(letter_list)} dead letters read in all; {false_letters} of deliverable "
        f"revisions; reasons: {dict(reasons)}",
    ]
    phase.duplicates = sum(n - 1 for n in doubled.values())
    summary_ts = {m["ts"] for m in burst_summaries}
    phase.duplicate_lines = [f"faults phase: {phase.duplicates}"] + [
        f"  {by_id[key[0]][0]} revision {key[1]}: {n} messages, "
        + ", ".join(
            "in a burst summary's thread" if m.get("thread_ts") in summary_ts
            else f"in its thread (ts {m['thread_ts']})" if m.get("thread_ts")
            else "top level"
            for m in posts[key]
        )
        + f", posted at t={[round(m['received_at'] - started, 2) for m in posts[key]]} s"
        for key, n in doubled.items()
    ]  # fmt: skip
    log(
        f"faults: delivered {once}/{deliverable}, duplicates {phase.duplicates}, dead letters "
        f"{gone_ok + bad_ok}/{len(gone) + len(bad)}"
    )
    return phase


def _alert_id(data: bytes) -> str | None:
    try:
        found = json.loads(data).get("alert_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _letters_matched(
    letters: list[tuple[bytes, dict[str, str]]], gone_ids: set[str], bad: list[tuple[str, bytes]]
) -> dict[str, list[dict[str, str]]]:
    """What was sent to be dead-lettered and is on the dead-letter topic with a reason and
    stage "slack": "gone <alert id>" / "bad <n>" → the attributes of its letters."""
    bad_index = {data: n for n, (_, data) in enumerate(bad)}
    found: dict[str, list[dict[str, str]]] = {}
    for data, attributes in letters:
        if not (attributes.get("reason") and attributes.get("stage") == "slack"):
            continue
        if data in bad_index:
            found.setdefault(f"bad {bad_index[data]}", []).append(attributes)
        elif (aid := _alert_id(data)) in gone_ids:
            found.setdefault(f"gone {aid}", []).append(attributes)
    return found


def _trace(
    path: Path,
    started: float,
    real_ids: dict[tuple[str, int], str],
    sent_at: dict[tuple[str, int], list[float]],
    messages: list[dict],
    requests: list[dict],
) -> None:
    """For a post-mortem: each revision's publish times and posts (seconds from the phase's
    start), and the stand-in's calls."""
    posts = alert_posts(messages)
    revisions = []
    for key, aid in sorted(real_ids.items(), key=lambda kv: sent_at[kv[0]][0]):
        found = posts.get((aid, key[1]), [])
        revisions.append(
            {
                "key": f"{key[0]} r{key[1]}",
                "alert_id": aid,
                "published": [round(t - started, 2) for t in sent_at[key]],
                "posted": [round(m["received_at"] - started, 2) for m in found],
                "thread_ts": [m.get("thread_ts") for m in found],
                "channel": [m["channel_name"] for m in found],
            }
        )
    calls = [
        {**{k: v for k, v in r.items() if k != "at"}, "t": round(r["at"] - started, 2)}
        for r in requests
    ]
    path.write_text(json.dumps({"revisions": revisions, "calls": calls}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--phases",
        default="latency,burst,faults",
        help="comma-separated; results are written only when all three run",
    )
    parser.add_argument("--latency-alerts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2.0, help="alerts a second (latency)")
    parser.add_argument("--burst-alerts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--settle-s", type=float, default=600.0,
        help="faults: how long to wait after the last publish for every revision and letter",
    )  # fmt: skip
    args = parser.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - {"latency", "burst", "faults"}
    if unknown:
        parser.error(f"unknown phases: {sorted(unknown)}")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    began = time.time()
    emulator = Emulator(WORK)
    results: dict[str, Phase] = {}
    try:
        log(f"starting the Pub/Sub emulator on {emulator.host}")
        emulator.start()
        if "latency" in phases:
            results["latency"] = phase_latency(emulator, args.latency_alerts, args.rate)
        if "burst" in phases:
            results["burst"] = phase_burst(emulator, args.burst_alerts)
        if "faults" in phases:
            results["faults"] = phase_faults(emulator, args.seed, args.settle_s)
    finally:
        emulator.stop()
    took = time.time() - began
    figures: dict[str, dict] = {}
    details: dict[str, list[str]] = {}
    for phase in results.values():
        figures.update(phase.figures)
        details.update(phase.details)
    dupes = sum(p.duplicates for p in results.values())
    figures["duplicate_posts"] = {"value": dupes, "unit": "posts"}
    details["duplicate_posts"] = [
        "messages beyond the first carrying the same (alert id, revision) in their metadata",
        *[line for p in results.values() for line in p.duplicate_lines],
    ]
    order = [
        "delivered_share", "dead_lettered_share", "duplicate_posts", "post_latency_p95_s",
        "post_latency_p50_s", "latency_phase_429s", "burst_drain_s", "burst_summaries",
        "faults_deliverable_revisions",
    ]  # fmt: skip
    figures = {k: figures[k] for k in order if k in figures}
    log(f"done in {took:.0f} s")
    for name, figure in figures.items():
        print(f"  {name}: {figure['value']} {figure['unit']}")
    for name, lines in details.items():
        print(f"  {name}:")
        for line in lines:
            print(f"    {line}")
    if set(results) == {"latency", "burst", "faults"}:
        note = (
            f"consumer `dexwatch slack serve` as a subprocess, Pub/Sub emulator, local Slack "
            f"stand-in at 1 post/s/channel; run took {took:.0f} s"
        )
        path = write_results("slack", figures, note=note, details=details)
        print(f"written {path}")
    else:
        print("not all phases ran: no results written")


if __name__ == "__main__":
    main()
