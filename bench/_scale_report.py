"""The tables bench/production_scale.py prints: per path, project storage, stock, and the ratio."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from _scale_paths import Measure

TITLES = {
    "range": "(1) range run, in process (analytics-pipeline backfill)",
    "daemon": "(2) range run, queued (launchRun -> dagster-daemon)",
    "rebuild": "(3) full rebuild, 7 tables (analytics-pipeline backfill)",
    "ui": "(4) UI backfill of all partitions (--ui-tables)",
    "burst": "(5) late-data burst, sensor tick",
}
COLUMNS: list[tuple[str, int, Callable[[Measure], float | int | None], int]] = [
    # header, width, value, decimals
    ("runs", 5, lambda m: m.runs, 0),
    ("wall s", 9, lambda m: m.wall, 2),
    ("SQL s", 8, lambda m: m.sql, 2),
    ("Dagster ms/pa", 13, lambda m: m.dagster_ms, 3),
    ("event B/pa", 10, lambda m: _per(m.event_bytes, m), 0),
    ("db B/pa", 8, lambda m: _per(m.db_growth, m), 0),
    ("db growth MB", 12, lambda m: m.db_growth / 1e6, 1),
    ("partition-assets", 16, lambda m: m.partition_assets, 0),
    ("missing", 8, lambda m: _missing(m), 0),
]


def _missing(m: Measure) -> int | None:
    """Partition-assets the path should have materialized but Dagster has no record of."""
    expected = m.extra.get("expected")
    if m.materialized is None or not isinstance(expected, int | float):
        return None
    return int(expected) - m.materialized


def _per(total: int, m: Measure) -> float | None:
    return total / m.partition_assets if m.partition_assets else None


def median(measures: Sequence[Measure]) -> Measure:
    """One Measure holding the median of each figure over the repeats (extra: median too)."""
    if len(measures) == 1:
        return measures[0]

    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    extra: dict[str, float | int | str] = {}
    for key in dict.fromkeys(k for m in measures for k in m.extra):
        values = [m.extra.get(key) for m in measures]
        numbers = [v for v in values if isinstance(v, int | float)]
        extra[key] = med(numbers) if len(numbers) == len(values) else str(values[0])
    extra["repeats, wall s"] = " / ".join(f"{m.wall:.2f}" for m in measures)
    first = measures[0]
    return Measure(
        path=first.path,
        storage=first.storage,
        partition_assets=int(med(m.partition_assets for m in measures)),
        runs=int(med(m.runs for m in measures)),
        wall=med(m.wall for m in measures),
        sql=med(m.sql for m in measures),
        sql_source=first.sql_source,
        event_bytes=int(med(m.event_bytes for m in measures)),
        db_growth=int(med(m.db_growth for m in measures)),
        materialized=(
            None if first.materialized is None else int(med(m.materialized for m in measures))
        ),
        extra=extra,
    )


def _number(value: float | int | str) -> str:
    """1,234 for whole numbers (medians of counts are floats), else 3 decimals at most."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def _cell(value: float | int | None, width: int, decimals: int) -> str:
    text = "-" if value is None else f"{value:,.{decimals}f}"
    return text.rjust(width)


def table(by_path: dict[str, dict[str, Measure]], echo: Callable[[str], None] = print) -> None:
    """One row per storage per path, then project/stock for every figure."""
    header = f"{'path':<58} {'storage':<13} " + " ".join(h.rjust(w) for h, w, _, _ in COLUMNS)
    echo(header)
    echo("-" * len(header))
    for path, by_storage in by_path.items():
        title = TITLES[path]
        for storage, m in by_storage.items():
            cells = " ".join(_cell(value(m), w, d) for _, w, value, d in COLUMNS)
            echo(f"{title:<58} {storage:<13} {cells}")
            title = ""
        project, stock = by_storage.get("project"), by_storage.get("stock")
        if project and stock:
            cells = []
            for _, w, value, _ in COLUMNS:
                a, b = value(project), value(stock)
                cells.append(_cell(a / b if a is not None and b else None, w, 2))
            echo(f"{'':<58} {'project/stock':<13} " + " ".join(cells))
    echo("")


def details(by_path: dict[str, dict[str, Measure]], echo: Callable[[str], None] = print) -> None:
    """The figures a path has beyond the table (tick, burst sizes, backfill timings, ...)."""
    for path, by_storage in by_path.items():
        echo(f"{TITLES[path]}:")
        for storage, m in by_storage.items():
            extra = ", ".join(f"{k} {_number(v)}" for k, v in m.extra.items())
            echo(f"  {storage:<8} SQL from {m.sql_source}; {extra}")
    echo("")
