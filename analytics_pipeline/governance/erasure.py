"""Erasing a tenant: OLAP rows, the audit log's policy, Dagster's history, the event outbox.

Order matters, and every step can be repeated:

1. refuse unless OLTP no longer serves the tenant (absent or `offboarded`: otherwise the tenant
   sensor would build it again) and no queued or running run covers it;
2. one OLAP transaction: delete its rows from every replace-mode table, pseudonymise its
   admin_audit_log rows (the policy in docs/OPERATIONS.md "Tenant lifecycle"), and open the
   erasure record (`analytics.erasures`, completed_at NULL);
3. the Dagster instance (instance/forget.py): its runs, partition events, partition, and any
   quote of it in other runs' history;
4. the event outbox on this machine;
5. close the record: completed_at and the counts of steps 3 and 4.

A crash between 2 and 5 leaves an open record; the next erase resumes it. An erase that finds
nothing left and a closed record is a no-op that says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.errors import TenantLifecycleError
from analytics_pipeline.governance.pseudonym import Pseudonymizer
from analytics_pipeline.instance import forget
from analytics_pipeline.partitions import TENANTS_PARTITIONS_NAME, validate_tenant_id
from analytics_pipeline.resources.database import OlapDatabase
from analytics_pipeline.rollups.spec import WriteMode
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.rollups.tables.admin_audit_log import ADMIN_AUDIT_LOG
from analytics_pipeline.sources.tables import tenants
from analytics_pipeline.tracking.outbox import Outbox
from analytics_pipeline.warehouse.erasures import erasures


class RowsRemoved(TypedDict, total=False):
    """What an erasure removed, per step: the `rows_removed` JSON of `analytics.erasures`.

    Filled step by step (an interrupted erasure's record holds the steps it finished)."""

    olap: dict[str, int]  # rows deleted, per replace-mode table
    admin_audit_log_pseudonymised: int
    dagster: dict[str, int]  # instance/forget.py's counts, per kind
    outbox: int  # events deleted from the outbox


@dataclass(frozen=True)
class ErasureResult:
    tenant_hash: str
    erasure_id: int
    already_erased: bool
    rows_removed: RowsRemoved = field(default_factory=RowsRemoved)
    when: dt.datetime | None = None

    def summary(self, tenant_id: str) -> str:
        if self.already_erased:
            return (
                f"tenant {tenant_id!r} was already erased (erasure {self.erasure_id} of "
                f"{self.when:%Y-%m-%d %H:%M} UTC, {self.tenant_hash}); nothing left to erase"
            )
        olap = self.rows_removed.get("olap", {})
        dagster = self.rows_removed.get("dagster", {})
        return (
            f"erased tenant {tenant_id!r} as {self.tenant_hash} (erasure {self.erasure_id}): "
            f"OLAP {olap}, audit log rows pseudonymised "
            f"{self.rows_removed.get('admin_audit_log_pseudonymised', 0)}, Dagster {dagster}, "
            f"outbox events {self.rows_removed.get('outbox', 0)}"
        )


def oltp_status(conn: sa.Connection, tenant_id: str) -> str | None:
    """The tenant's status in OLTP, None when OLTP has no such tenant."""
    return conn.execute(
        sa.select(tenants.c.status).where(tenants.c.id == tenant_id)
    ).scalar_one_or_none()


def check_erasable(instance: dg.DagsterInstance, tenant_id: str, status: str | None) -> None:
    """Raise TenantLifecycleError when erasing the tenant now would be undone or collide."""
    if status is not None and status != "offboarded":
        raise TenantLifecycleError(
            f"tenant {tenant_id!r} is {status!r} in OLTP: the tenant sensor would rebuild it "
            "right after the erasure. Offboard it in the product first, then erase it"
        )
    order = instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    active = forget.active_runs_covering(instance, tenant_id, order)
    if active:
        raise TenantLifecycleError(
            f"tenant {tenant_id!r} has {len(active)} queued or running run(s) ({', '.join(active)}"
            "): wait for them to finish (or terminate them in the UI), then erase again"
        )


def _olap_rows(conn: sa.Connection, tenant_id: str) -> dict[str, int]:
    counts = {}
    for rollup in REGISTRY:
        t = rollup.table
        counts[rollup.name] = conn.execute(
            sa.select(sa.func.count()).select_from(t).where(t.c.tenant_id == tenant_id)
        ).scalar_one()
    return counts


def erase_tenant(
    *,
    tenant_id: str,
    requested_by: str,
    olap: OlapDatabase,
    instance: dg.DagsterInstance,
    oltp_status: str | None,
    outbox_path: Path | None,
    pseudonymizer: Pseudonymizer,
) -> ErasureResult:
    """Erase everything the pipeline holds about the tenant; see the module docstring."""
    validate_tenant_id(tenant_id)
    if not requested_by.strip():
        raise TenantLifecycleError("say who asks for the erasure (--requested-by)")
    check_erasable(instance, tenant_id, oltp_status)
    tenant_hash = pseudonymizer.tenant(tenant_id)
    dagster_left = forget.count_quotes(instance, tenant_id)
    outbox = Outbox(outbox_path) if outbox_path is not None and outbox_path.exists() else None
    try:
        with olap.transaction() as conn:
            # One erasure of a tenant at a time, whoever runs it.
            conn.execute(
                sa.select(sa.func.pg_advisory_xact_lock(0x65726173, _lock_id(tenant_hash)))
            )
            olap_left = {k: v for k, v in _olap_rows(conn, tenant_id).items() if v}
            last = conn.execute(
                sa.select(erasures.c.erasure_id, erasures.c.completed_at, erasures.c.rows_removed)
                .where(erasures.c.tenant_hash == tenant_hash)
                .order_by(erasures.c.erasure_id.desc())
                .limit(1)
            ).first()
            if (
                last is not None
                and last.completed_at is not None
                and not (olap_left or dagster_left)
            ):
                return ErasureResult(
                    tenant_hash, last.erasure_id, already_erased=True, when=last.completed_at
                )
            removed: RowsRemoved = {}
            if last is not None and last.completed_at is None:
                erasure_id = last.erasure_id  # an interrupted erasure: finish it
                # The JSON this function wrote last time (below), so of the same shape.
                previous: RowsRemoved = last.rows_removed
                removed = previous.copy()
            else:
                erasure_id = conn.execute(
                    sa.insert(erasures)
                    .values(tenant_hash=tenant_hash, requested_by=requested_by)
                    .returning(erasures.c.erasure_id)
                ).scalar_one()
            olap_removed = dict(removed.get("olap", {}))
            for rollup in REGISTRY:
                if rollup.write_mode == WriteMode.REPLACE:
                    t = rollup.table
                    n = conn.execute(sa.delete(t).where(t.c.tenant_id == tenant_id)).rowcount
                    olap_removed[rollup.name] = olap_removed.get(rollup.name, 0) + n
            removed["olap"] = olap_removed
            removed["admin_audit_log_pseudonymised"] = removed.get(
                "admin_audit_log_pseudonymised", 0
            ) + pseudonymise_audit_log(conn, tenant_id, pseudonymizer)
            conn.execute(
                sa.update(erasures)
                .where(erasures.c.erasure_id == erasure_id)
                .values(rows_removed=removed)
            )
        removed["dagster"] = forget.forget_tenant(instance, tenant_id, tenant_hash)
        removed["outbox"] = outbox.forget(forget.quote_pattern(tenant_id)) if outbox else 0
    finally:
        if outbox is not None:
            outbox.close()
    with olap.transaction() as conn:
        when = conn.execute(
            sa.update(erasures)
            .where(erasures.c.erasure_id == erasure_id)
            .values(rows_removed=removed, completed_at=sa.func.now())
            .returning(erasures.c.completed_at)
        ).scalar_one()
    return ErasureResult(
        tenant_hash, erasure_id, already_erased=False, rows_removed=removed, when=when
    )


def _lock_id(tenant_hash: str) -> int:
    # pg_advisory_xact_lock(int, int): a 31-bit number from the pseudonym's hex digits.
    return int(tenant_hash.rsplit(":", 1)[-1][:7], 16)


def pseudonymise_audit_log(conn: sa.Connection, tenant_id: str, p: Pseudonymizer) -> int:
    """Apply the audit-log policy to the tenant's rows; return how many rows it touched.

    Kept: the action, the actor's role, the target's kind, when it happened and was recorded,
    and the action id (the record that something was done, and when). Pseudonymised with the
    salted hash: the tenant, the actor and the target (the same actor stays the same pseudonym,
    so an investigation can still follow one actor). Removed: the IP address and the free-form
    details, which can name people. The rows then expire with the table's retention.
    """
    t = ADMIN_AUDIT_LOG.table
    rows = conn.execute(
        sa.select(t.c.action_id, t.c.date, t.c.actor_id, t.c.target_id).where(
            t.c.tenant_id == tenant_id
        )
    ).all()
    for action_id, date, actor_id, target_id in rows:
        conn.execute(
            sa.update(t)
            .where(t.c.tenant_id == tenant_id, t.c.date == date, t.c.action_id == action_id)
            .values(
                tenant_id=p.tenant(tenant_id),
                actor_id=p.scoped("actor", tenant_id, actor_id),
                target_id=None if target_id is None else p.scoped("target", tenant_id, target_id),
                ip_address=None,
                details={},
            )
        )
    return len(rows)
