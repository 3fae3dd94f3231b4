"""The declarative definition of one OLAP table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from analytics_pipeline.rollups.sql import Windows
from analytics_pipeline.warehouse.metadata import contract_columns


@dataclass(frozen=True)
class Invariant:
    """A rule every written row must satisfy, as a SQL condition over the target table's row."""

    name: str
    condition: Callable[[sa.Table], sa.ColumnElement[bool]]
    description: str


@dataclass(frozen=True)
class Rollup:
    """One OLAP table: where it lands, what it reads, and the SELECT that computes it.

    `select` receives the run's partition windows and returns a SELECT whose columns are the
    table's contract columns, in table order, restricted to rows inside those windows.
    """

    table: sa.Table
    sources: tuple[sa.Table, ...]
    select: Callable[[Windows], sa.Select]
    description: str
    group: str
    invariants: tuple[Invariant, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def output_columns(self) -> list[sa.Column]:
        return contract_columns(self.table)

    def __post_init__(self) -> None:
        # Catch a SELECT whose columns drift from the table at import time, not in a failed run.
        produced = [c.name for c in self.select(Windows()).selected_columns]
        expected = [c.name for c in self.output_columns]
        if produced != expected:
            raise TypeError(
                f"rollup {self.name}: SELECT yields columns {produced}, the table expects "
                f"{expected} (same names, same order)"
            )
