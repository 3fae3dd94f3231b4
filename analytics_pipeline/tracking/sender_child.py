"""The sender child's own code (see sender_process.py): it imports the PostHog SDK and nothing
of the pipeline beyond the message format, so it starts fast even on a busy machine.

Before its first batch it writes {"ready": true}: the parent starts counting a batch's budget
only then, so the child's start-up (imports, SDK clients) never eats a delivery's time.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from analytics_pipeline.tracking.message import Message
from analytics_pipeline.tracking.posthog_sink import PostHogSink

CONFIG_ENV = "ANALYTICS_TRACKING_SENDER"
READY = {"ready": True}


def _answer(reply: dict) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def main() -> int:
    """Deliver each batch read from stdin, answer on stdout, exit on EOF."""
    settings = json.loads(os.environ.pop(CONFIG_ENV))
    # Failures are reported by the parent, with the batch's fate; the SDK's own error lines
    # would only repeat them on stderr. (Not setLevel: the SDK's client resets the level.)
    sdk_log = logging.getLogger("posthog")
    sdk_log.addHandler(logging.NullHandler())
    sdk_log.propagate = False
    sink = PostHogSink(**settings)
    _answer(READY)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        batch = [Message(**m) for m in request["batch"]]
        # A little under the parent's budget, so the answer is back before it gives up.
        result = sink.deliver(batch, max(0.1, request["budget"] - 0.25))
        _answer(
            {
                "id": request["id"],
                "accepted": result.accepted,
                "failed": [m.uuid for m in result.failed],
                "rejected": [m.uuid for m in result.rejected],
                "error": result.error,
            }
        )
    sink.close(1.0)
    return 0
