"""The rules a refresh enforces before it commits: the table's invariants, and reconciliation.

Both run inside the refresh's transaction, over the rows just written; a broken rule raises
DataQualityError, which rolls the whole refresh back. The asset checks of assets/rollups.py
report them under INVARIANTS_CHECK and RECONCILIATION_CHECK.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from analytics_pipeline.errors import DataQualityError
from analytics_pipeline.rollups.spec import Rollup, WriteMode
from analytics_pipeline.rollups.sql import Windows, source_counts
from analytics_pipeline.rollups.writers import Counts, grain

# The asset checks the rules are reported under (see assets/rollups.py).
INVARIANTS_CHECK = "invariants"
RECONCILIATION_CHECK = "reconciles_with_oltp"

# Per written partition: its row count and its reconciled total.
Totals = dict[tuple[str, dt.date], tuple[int, int]]


def check_invariants(conn: sa.Connection, rollup: Rollup, params: Mapping[str, Any]) -> list[str]:
    """Fail (and so roll back) if any row of the run's partitions breaks an invariant."""
    t = rollup.table
    grain_columns = [t.c[name] for name in grain(rollup)]
    w = Windows()
    run_rows = t.join(w.relation, w.contains_day(t.c.tenant_id, t.c.date))
    # Every rule counted in one pass over the run's rows. (One ORDER BY ... LIMIT query per rule
    # made the planner walk the whole table in grain order for each rule: 0.69 s a rule at
    # 564k rows against 0.09 s for all eight here.) Only a broken rule is looked at row by row.
    broken = (
        conn.execute(
            sa.select(
                *(
                    sa.func.count().filter(sa.not_(sa.func.coalesce(inv.condition(t), sa.false())))
                    for inv in rollup.invariants
                )
            ).select_from(run_rows),
            params,
        ).one()
        if rollup.invariants
        else ()
    )
    for inv, n in zip(rollup.invariants, broken, strict=True):
        if not n:
            continue
        bad = conn.execute(
            sa.select(*grain_columns)
            .select_from(run_rows)
            .where(sa.not_(sa.func.coalesce(inv.condition(t), sa.false())))
            .order_by(*grain_columns)
            .limit(5),
            params,
        ).all()
        if bad:
            where = bad[0]._mapping
            first = ", ".join(f"{k}={v}" for k, v in where.items())
            raise DataQualityError(
                f"{rollup.name}: rule {inv.name!r} ({inv.description}) is broken by "
                f"{n} row(s), first at {first}. Nothing was "
                "written; the previous rows are unchanged. Check the OLTP rows of that "
                "partition, or the rollup's SELECT.",
                check_name=INVARIANTS_CHECK,
                rule=inv.name,
                table=rollup.name,
                tenant=where["tenant_id"],
                date=where["date"],
            )
    return [inv.name for inv in rollup.invariants]


def oltp_counts(conn: sa.Connection, rollup: Rollup, params: Mapping[str, Any]) -> Counts | None:
    """The source rows each partition summarises, counted apart from the rollup's SELECT."""
    if rollup.reconciliation is None:
        return None
    rec = rollup.reconciliation
    query = source_counts(
        Windows(), rec.source, rec.timestamp, indexed=rec.indexed, where=rec.where
    )
    rows = conn.execute(query, params).all()
    return {(tenant, day): n for tenant, day, n in rows}


def partition_totals(conn: sa.Connection, rollup: Rollup, params: Mapping[str, Any]) -> Totals:
    """Per written partition: its row count and its reconciled total, in one scan."""
    t = rollup.table
    w = Windows()
    column = rollup.reconciliation.column if rollup.reconciliation is not None else None
    measure = sa.func.count() if column is None else sa.func.sum(t.c[column])
    return {
        (tenant, day): (int(n), int(total or 0))
        for tenant, day, n, total in conn.execute(
            sa.select(t.c.tenant_id, t.c.date, sa.func.count(), measure)
            .select_from(t.join(w.relation, w.contains_day(t.c.tenant_id, t.c.date)))
            .group_by(t.c.tenant_id, t.c.date),
            params,
        ).all()
    }


def check_reconciliation(
    rollup: Rollup,
    expected: Counts | None,
    totals: Mapping[tuple[str, dt.date], tuple[int, int]],
) -> list[str]:
    """Per partition, the written total must equal the OLTP count it summarises."""
    if expected is None or rollup.reconciliation is None:
        return []
    got = {key: total for key, (_rows, total) in totals.items()}
    what = rollup.reconciliation.column or "rows"
    for key in sorted(set(expected) | set(got)):
        want, have = expected.get(key, 0), got.get(key, 0)
        ok = have >= want if rollup.write_mode == WriteMode.APPEND_ONLY else have == want
        if not ok:
            tenant, day = key
            raise DataQualityError(
                f"{rollup.name}: rule 'reconciles_with_oltp' is broken for tenant {tenant}, "
                f"date {day}: the written {what} total {have} but OLTP has {want} source row(s) "
                "for that partition. Nothing was written; the previous rows are unchanged. "
                "The rollup's SELECT loses or duplicates rows (a join?).",
                check_name=RECONCILIATION_CHECK,
                rule=RECONCILIATION_CHECK,
                table=rollup.name,
                tenant=tenant,
                date=day,
            )
    return [RECONCILIATION_CHECK]
