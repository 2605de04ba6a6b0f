"""A sink that records what a publisher would publish, as JSON lines, one file per topic.

The same interface as PubSubSink: a publisher records a stretch of chain history to files
(``dexwatch publish chain --once --record DIR``) that the pipeline then replays in batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from publishers.pubsub import Message


class RecordingSink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, topic: str) -> Path:
        return self.directory / f"{topic}.jsonl"

    def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Append the messages' data, one per line; durable when this returns (like an ack)."""
        if not messages:
            return
        with self.path(topic).open("ab") as out:
            out.write(b"".join(message.data + b"\n" for message in messages))
            out.flush()
            os.fsync(out.fileno())

    def close(self) -> None:
        pass

    def __enter__(self) -> RecordingSink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
