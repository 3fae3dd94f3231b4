"""Tenant keys and partition windows.

Why: a tenant id with '|' silently corrupts Dagster multi-partition keys, so bad ids must be
refused before anything is registered; and the window compression decides which rows a run
deletes and rewrites, so it must cover exactly the requested partitions.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from analytics_pipeline.errors import InvalidPartitionKeyError
from analytics_pipeline.partitions import (
    FIX_CLI_FILTER,
    TENANTS_PARTITIONS_NAME,
    TenantDay,
    TenantWindow,
    add_tenants,
    parse_partition_keys,
    split_tenant_ids,
    to_windows,
    validate_tenant_id,
)

D = dt.date(2026, 3, 1)


@pytest.mark.parametrize("good", ["acme", "tenant-001", "A_b-9", "x" * 64, "7eleven"])
def test_valid_tenant_ids_pass(good):
    assert validate_tenant_id(good) == good


@pytest.mark.parametrize(
    "bad", ["a|b", "", "x" * 65, "acme corp", "-acme", "acme,beta", "ténant", "a/b", None, 42]
)
def test_invalid_tenant_ids_are_refused_naming_the_value(bad):
    with pytest.raises(InvalidPartitionKeyError) as err:
        validate_tenant_id(bad)
    assert repr(bad) in str(err.value)
    assert "it was not" in str(err.value)


def test_the_advice_fits_where_the_id_came_from():
    """A tenant read from OLTP, one typed on the command line and one inside a run's partition
    key each get the advice that fits: a --tenants typo must not be told to rename a tenant."""
    with pytest.raises(InvalidPartitionKeyError) as from_cli:
        validate_tenant_id("evil|corp", fix=FIX_CLI_FILTER)
    assert "--tenants" in str(from_cli.value) and "OLTP" not in str(from_cli.value)
    with pytest.raises(InvalidPartitionKeyError) as from_key:
        parse_partition_keys([dg.MultiPartitionKey({"tenant": "a b", "date": "2026-03-01"})])
    assert "partition key" in str(from_key.value) and "OLTP" not in str(from_key.value)
    _, invalid = split_tenant_ids(["a b"])
    assert "Rename the tenant in OLTP" in invalid["a b"]


def test_a_batch_with_one_bad_id_adds_nothing():
    with dg.instance_for_test() as instance:
        add_tenants(instance, ["acme"])
        with pytest.raises(InvalidPartitionKeyError, match=r"'evil\|corp'"):
            add_tenants(instance, ["beta", "evil|corp", "gamma"])
        assert instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME) == ["acme"]
        assert add_tenants(instance, ["acme", "beta", "beta"]) == ["beta"]
        assert instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME) == ["acme", "beta"]


def test_windows_cover_exactly_the_partitions():
    days = [0, 1, 2, 5, 6, 9]
    parts = [TenantDay("b", D + dt.timedelta(days=i)) for i in days]
    parts += [TenantDay("a", D), TenantDay("a", D)]  # duplicates collapse
    windows = to_windows(parts)
    assert windows == [
        TenantWindow("a", D, D + dt.timedelta(days=1)),
        TenantWindow("b", D, D + dt.timedelta(days=3)),
        TenantWindow("b", D + dt.timedelta(days=5), D + dt.timedelta(days=7)),
        TenantWindow("b", D + dt.timedelta(days=9), D + dt.timedelta(days=10)),
    ]
    covered = {
        (w.tenant_id, w.first_day + dt.timedelta(days=i)) for w in windows for i in range(w.days)
    }
    assert covered == {(p.tenant_id, p.day) for p in parts}


def test_a_rectangle_is_one_window_per_tenant():
    parts = [TenantDay(t, D + dt.timedelta(days=i)) for t in ("a", "b", "c") for i in range(365)]
    assert [(w.tenant_id, w.days) for w in to_windows(parts)] == [
        ("a", 365),
        ("b", 365),
        ("c", 365),
    ]


def test_partition_keys_parse_and_validate():
    keys = ["2026-03-01|acme", dg.MultiPartitionKey({"tenant": "beta", "date": "2026-03-02"})]
    assert parse_partition_keys(keys) == [
        TenantDay("acme", D),
        TenantDay("beta", D + dt.timedelta(days=1)),
    ]
    with pytest.raises(InvalidPartitionKeyError, match="not YYYY-MM-DD"):
        parse_partition_keys([dg.MultiPartitionKey({"tenant": "acme", "date": "March 1"})])
