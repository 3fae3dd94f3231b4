"""Finding which (tenant, date) partitions of which tables changed in OLTP since a watermark.

Each source is read once per tick for the rows whose change column moved into the interval
(after, upto]; SQL returns only the distinct (tenant, UTC day) pairs they touch, so a burst of a
million changed rows is still a few hundred result rows.

Why (after, upto] with upto = the database's clock minus a lag, and no overlap: updated_at is set
by the product's trigger from the database clock (no clock skew between writer and reader), and
a row becomes visible when its transaction commits. Once `lag` has passed, every transaction that
touched a row with updated_at <= upto has committed (assuming none stays open longer than the
lag, which the product's short transactions satisfy), so nothing at or before the new watermark
can still appear; nothing is read twice, and nothing is missed.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa

from analytics_pipeline.rollups.spec import ChangeTracking, Rollup
from analytics_pipeline.rollups.sql import utc_day

Affected = dict[str, set[tuple[str, dt.date]]]  # rollup name -> partitions


def feeds(rollups: Iterable[Rollup]) -> dict[tuple[str, str], list[tuple[Rollup, ChangeTracking]]]:
    """(source table, change column) -> the rollups it feeds and how."""
    out: dict[tuple[str, str], list[tuple[Rollup, ChangeTracking]]] = defaultdict(list)
    for rollup in rollups:
        for track in rollup.tracks:
            out[(track.source.name, track.changed_at)].append((rollup, track))
    return out


def database_now(conn: sa.Connection) -> dt.datetime:
    """The database's clock (clock_timestamp(), not the transaction's start)."""
    now: dt.datetime = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
    return now


def complete_until(conn: sa.Connection) -> dt.datetime | None:
    """The time up to which this connection sees every committed change: the watermark's "now".

    On a primary, its clock. On a hot standby (pg_is_in_recovery()), the commit time of the last
    transaction it replayed: the standby's own clock runs ahead of what it has replayed by the
    replication lag, and a watermark taken from it would skip the changes still in flight. None
    when a standby has replayed no transaction since it started (it cannot tell yet).
    """
    until: dt.datetime | None = conn.execute(
        sa.select(
            sa.case(
                (sa.func.pg_is_in_recovery(), sa.func.pg_last_xact_replay_timestamp()),
                else_=sa.func.clock_timestamp(),
            )
        )
    ).scalar_one()
    return until


def changed_partitions(
    conn: sa.Connection,
    track: ChangeTracking,
    after: dt.datetime,
    upto: dt.datetime,
    today: dt.date,
) -> set[tuple[str, dt.date]]:
    """Partitions touched by rows of `track.source` changed in (after, upto]."""
    src = track.source
    changed = sa.and_(src.c[track.changed_at] > after, src.c[track.changed_at] <= upto)
    found: set[tuple[str, dt.date]] = set()
    for column in track.day_of:
        day = utc_day(src.c[column])
        days = conn.execute(
            sa.select(src.c.tenant_id, day).where(changed, src.c[column].is_not(None)).distinct()
        ).all()
        found.update((tenant, d) for tenant, d in days)
    if track.span is not None:
        start, end = (src.c[c] for c in track.span)
        rows = conn.execute(
            sa.select(
                src.c.tenant_id,
                sa.func.min(utc_day(start)),
                sa.func.max(sa.func.coalesce(utc_day(end), today)),
            )
            .where(changed)
            .group_by(src.c.tenant_id)
        ).all()
        for tenant, first, last in rows:
            found.update(
                (tenant, first + dt.timedelta(days=i))
                for i in range((min(last, today) - first).days + 1)
            )
    return found


def affected_since(
    conn: sa.Connection,
    rollups: Iterable[Rollup],
    watermarks: dict[str, dt.datetime],
    upto: dt.datetime,
    default_after: dt.datetime,
) -> Affected:
    """Per rollup, the partitions whose source rows changed after their source's watermark."""
    affected: Affected = defaultdict(set)
    today = upto.astimezone(dt.UTC).date()
    for (source, changed_at), users in feeds(rollups).items():
        after = watermarks.get(f"{source}.{changed_at}", default_after)
        for rollup, track in users:
            affected[rollup.name] |= changed_partitions(conn, track, after, upto, today)
    return dict(affected)
