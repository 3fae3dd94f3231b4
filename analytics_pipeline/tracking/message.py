"""One event on its way out: what the facade queues, stores and hands to the vendor."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["capture", "set"]


@dataclass(slots=True)
class Message:
    """An already validated and redacted event.

    `uuid` is chosen when the event is tracked and travels with it through retries and the
    outbox, so the vendor can drop a duplicate of a batch whose answer was lost.
    `timestamp` is when it was tracked (epoch seconds), not when it was sent.
    """

    uuid: str
    kind: Kind
    event: str
    distinct_id: str
    properties: dict[str, object]
    groups: dict[str, str] | None
    timestamp: float

    @property
    def sent_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp, dt.UTC)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Message:
        return cls(**json.loads(text))
