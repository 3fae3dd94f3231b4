"""The sender child's loop (see sender_process.py), for any `Sink`: read a batch, answer.

The vendor module gives the child its entry point (posthog_sink.main calls `serve`); this module
imports nothing of the pipeline beyond the message format and the sink interface, so the child
starts fast even on a busy machine.

Before its first batch it writes {"ready": true}: the parent starts counting a batch's budget
only then, so the child's start-up (imports, SDK clients) never eats a delivery's time.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from analytics_pipeline.tracking.message import Message
from analytics_pipeline.tracking.sink import Sink

CONFIG_ENV = "ANALYTICS_TRACKING_SENDER"
READY: dict[str, object] = {"ready": True}
# How much sooner than the parent's budget the child answers, so the answer is back (through
# the pipe) before the parent gives up on it.
ANSWER_MARGIN_SECONDS = 0.25


def _answer(reply: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def serve(make_sink: Callable[[dict[str, Any]], Sink]) -> int:
    """Build the sink from the settings the parent put in CONFIG_ENV, say ready, then deliver
    each batch read from stdin and answer on stdout; exit on EOF (the parent is gone)."""
    settings = json.loads(os.environ.pop(CONFIG_ENV))
    sink = make_sink(settings)
    _answer(READY)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        batch = [Message(**m) for m in request["batch"]]
        result = sink.deliver(batch, max(0.1, request["budget"] - ANSWER_MARGIN_SECONDS))
        _answer(
            {
                "id": request["id"],
                "accepted": result.accepted,
                "retry": [m.uuid for m in result.retry],
                "rejected": [m.uuid for m in result.rejected],
                "reason": result.reason,
            }
        )
    sink.close(1.0)
    return 0
