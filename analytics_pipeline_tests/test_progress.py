"""Progress lines of long commands when their output is not a terminal.

Why: CI logs and pipes get plain lines, one per tenth of the work, not a line per item (a
backfill of thousands of partitions would flood the log) and not a terminal bar's escape codes.
"""

from __future__ import annotations

import io

from analytics_pipeline.progress import Reporter


def test_plain_lines_at_each_tenth_with_the_totals():
    out = io.StringIO()
    reporter = Reporter("OLTP load", 20, "tenants", stream=out)
    for _ in range(20):
        reporter.advance(1, rows=3)
    reporter.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert [line.split(",")[0] for line in lines] == [
        f"OLTP load: {n}/20 tenants" for n in range(2, 21, 2)
    ]
    assert lines[-1].startswith("OLTP load: 20/20 tenants, 60 rows, ")
    assert "\x1b" not in out.getvalue()


def test_no_more_than_the_total_and_nothing_for_an_empty_task():
    out = io.StringIO()
    reporter = Reporter("backfill", 3, "asset partitions", stream=out)
    reporter.advance(5)
    assert out.getvalue().splitlines() == [reporter.line()]
    assert reporter.done == 3
    empty = io.StringIO()
    Reporter("nothing", 0, "runs", stream=empty).close()
    assert empty.getvalue() == ""
