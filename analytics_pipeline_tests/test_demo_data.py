"""The synthetic dataset: deterministic, and realistic where the pipeline cares.

Why: tests and benchmarks compare figures across runs, so the same seed must give the same rows;
and the late-data and edge-case behaviour of the rollups is only exercised if the data has late
events, queued emails, one-off emails and sends at midnight.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from analytics_pipeline.demo.generator import DemoSize, generate_tenant
from analytics_pipeline.errors import DemoDataError

SIZE = DemoSize(tenants=2, days=30, emails_per_day=200, seed=3, end_date=dt.date(2026, 3, 31))


def test_same_seed_same_rows_and_tenants_independent_of_count():
    a = generate_tenant(SIZE, 1, "tenant-002").tables
    b = generate_tenant(
        DemoSize(tenants=9, days=30, emails_per_day=200, seed=3, end_date=dt.date(2026, 3, 31)),
        1,
        "tenant-002",
    ).tables
    c = generate_tenant(
        DemoSize(tenants=2, days=30, emails_per_day=200, seed=4, end_date=dt.date(2026, 3, 31)),
        1,
        "tenant-002",
    ).tables
    for name in a:
        assert a[name].equals(b[name]), name
    assert not a["emails"].equals(c["emails"])


def test_emails_have_late_events_queued_rows_and_edges():
    e = generate_tenant(SIZE, 0, "tenant-001").tables["emails"]
    sent = e["sent_at"].to_numpy()
    opened = e["opened"].to_numpy()
    as_of = SIZE.as_of
    has_open = ~np.isnat(opened)
    late = (opened[has_open] - sent[has_open]) > np.timedelta64(2, "D")
    assert late.sum() > 0, "some opens arrive days after the send"
    for col in ("opened", "clicked", "replied", "unsubscribed", "complaint"):
        v = e[col].to_numpy()
        assert (v[~np.isnat(v)] < as_of).all(), f"{col} after the dataset's as-of time"
    queued = e["status"] == "queued"
    assert queued.any() and np.isnat(sent[queued.to_numpy()]).all()
    assert e["campaign_id"].isna().any(), "one-off emails"
    midnight = sent[~np.isnat(sent)]
    assert (midnight == midnight.astype("datetime64[D]")).any(), "a send at 00:00:00 UTC"


@pytest.mark.parametrize("field", ["tenants", "days", "emails_per_day"])
def test_sizes_out_of_range_are_refused(field):
    with pytest.raises(DemoDataError, match=f"{field}=-1 is out of range"):
        DemoSize(**{field: -1})
