"""Column-level lineage, derived from each rollup's SELECT (never written by hand).

For every output column of a rollup, `column_lineage` walks the SQLAlchemy expression that
computes it back to the OLTP table columns it reads, through labels, casts, functions, FILTER
clauses, subqueries, UNION ALL branches (by position) and set-returning functions in FROM. The
rule, which docs/DATA_DICTIONARY.md states for dashboard authors:

- A column's lineage is the OLTP columns its expression references.
- An aggregate (a count, a sum, a ratio of counts) also depends on which rows it aggregates: the
  columns of the conditions that select them (WHERE, and JOIN ... ON) join its lineage, except
  equalities between two columns, which are join keys (tenant_id = the window's tenant, a foreign
  key = a primary key) and say which rows match, not what a value is.
- A value with no OLTP column of its own (count(*), a constant 1 in a UNION branch, a day of the
  run's windows) is computed from the columns that select its rows, by the same rule; a constant
  0 or NULL pads a UNION branch and carries nothing.
- `unnest` over parallel arrays pairs elements by position: a FILTER `ev.milestone = 'x'` keeps
  the rows of position k of the first array, so the other arrays' columns resolve to their
  element k only (lead_analytics: `leads_created` counts created_at, not the other timestamps).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql import elements, functions, selectable, visitors
from sqlalchemy.sql.operators import eq

from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.rollups.sql import Windows

SourceColumn = tuple[str, str]  # (OLTP table, column)
# Which element of a parallel unnest a FILTER pinned: TableValuedAlias -> position.
Binding = Mapping[selectable.TableValuedAlias, int]

_AGGREGATES = {"count", "sum", "min", "max", "avg"}


def column_lineage(rollup: Rollup) -> dict[str, set[SourceColumn]]:
    """Each output column of `rollup` -> the OLTP (table, column) pairs it is computed from."""
    query = rollup.select(Windows())
    # Only OLTP tables are sa.Tables in a rollup's SELECT: the run's windows and
    # generate_series are functions, and resolve to nothing.
    return {
        column.name: _value_refs(column, query, aggregated=False, binding={})
        for column in query.selected_columns
    }


def _value_refs(
    expr: sa.ColumnElement[Any], branch: sa.Select[Any], *, aggregated: bool, binding: Binding
) -> set[SourceColumn]:
    """The OLTP columns one SELECT-list expression of `branch` is computed from."""
    aggregated = aggregated or _has_aggregate(expr)
    binding = {**binding, **_filter_binding(expr)}
    refs: set[SourceColumn] = set()
    columns = [
        n
        for n in visitors.iterate(expr)
        if isinstance(n, elements.ColumnClause) and not n.is_literal
    ]
    for col in columns:
        refs |= _column_refs(col, aggregated=aggregated, binding=binding)
    if not columns and _is_padding(expr):
        return refs
    if aggregated or not refs:
        refs |= _selection_refs(branch, binding)
    return refs


def _column_refs(
    col: elements.ColumnClause[Any], *, aggregated: bool, binding: Binding
) -> set[SourceColumn]:
    parent = col.table
    if isinstance(parent, sa.Table):
        return {(parent.name, col.name)}
    if isinstance(parent, selectable.TableValuedAlias):
        return _function_column_refs(parent, col, binding)
    if isinstance(parent, selectable.Subquery):
        position = list(parent.c).index(col)
        inner = parent.element
        branches = inner.selects if isinstance(inner, selectable.CompoundSelect) else [inner]
        refs: set[SourceColumn] = set()
        for b in branches:
            # A rollup's subqueries are SELECTs or UNIONs of SELECTs (nothing nests deeper).
            select = cast(sa.Select[Any], b)
            refs |= _value_refs(
                list(select.selected_columns)[position],
                select,
                aggregated=aggregated,
                binding=binding,
            )
        return refs
    return set()  # a literal column, or a column of something that is not a source


def _function_column_refs(
    alias: selectable.TableValuedAlias, col: elements.ColumnClause[Any], binding: Binding
) -> set[SourceColumn]:
    """A column of a function in FROM: unnest(a1, a2, ...) yields column i from argument i."""
    args = list(_function(alias).clauses)
    position = list(alias.c).index(col)
    chosen = [args[position]] if len(args) == len(alias.c) else args
    if alias in binding:
        chosen = [_element(arg, binding[alias]) for arg in chosen]
    refs: set[SourceColumn] = set()
    for arg in chosen:
        for node in visitors.iterate(arg):
            if isinstance(node, elements.ColumnClause):
                refs |= _column_refs(node, aggregated=False, binding=binding)
    return refs


def _function(alias: selectable.TableValuedAlias) -> functions.FunctionElement[Any]:
    """The function a table-valued alias in FROM calls (unnest, generate_series)."""
    # SQLAlchemy types the aliased element as any FROM clause; a TableValuedAlias is always
    # made by FunctionElement.table_valued().
    return cast(functions.FunctionElement[Any], alias.element)


def _element(arg: sa.ColumnElement[Any], position: int) -> sa.ColumnElement[Any]:
    """Element `position` of an ARRAY[...] constructor; any other argument as a whole."""
    clauses = getattr(arg, "clauses", None)
    if arg.__class__.__name__ == "array" and clauses is not None:
        element: sa.ColumnElement[Any] = list(clauses)[position]
        return element
    return arg


def _filter_binding(expr: sa.ColumnElement[Any]) -> dict[selectable.TableValuedAlias, int]:
    """FILTER (unnest_col = 'value') pins the unnest's rows to the position of 'value'."""
    found: dict[selectable.TableValuedAlias, int] = {}
    for node in visitors.iterate(expr):
        if not isinstance(node, elements.FunctionFilter) or node.criterion is None:
            continue
        for atom in _conjuncts(node.criterion):
            left, right = getattr(atom, "left", None), getattr(atom, "right", None)
            if getattr(atom, "operator", None) is not eq:
                continue
            if not isinstance(right, elements.BindParameter):
                continue
            if not isinstance(left, elements.ColumnClause):
                continue
            alias = left.table
            if not isinstance(alias, selectable.TableValuedAlias):
                continue
            arg = list(_function(alias).clauses)[list(alias.c).index(left)]
            values = getattr(arg, "value", None)
            if isinstance(values, list) and right.value in values:
                found[alias] = values.index(right.value)
    return found


def _selection_refs(branch: sa.Select[Any], binding: Binding) -> set[SourceColumn]:
    """Columns of the conditions that select `branch`'s rows, join keys aside."""
    conditions = [c for c in (branch.whereclause,) if c is not None]
    for frm in branch.get_final_froms():
        conditions.extend(_join_conditions(frm))
    refs: set[SourceColumn] = set()
    for condition in conditions:
        for atom in _conjuncts(condition):
            if _is_join_key(atom):
                continue
            for node in visitors.iterate(atom):
                if isinstance(node, elements.ColumnClause):
                    refs |= _column_refs(node, aggregated=False, binding=binding)
    return refs


def _join_conditions(frm: sa.FromClause) -> Iterable[sa.ColumnElement[Any]]:
    if isinstance(frm, selectable.Join):
        yield from _join_conditions(frm.left)
        yield from _join_conditions(frm.right)
        if frm.onclause is not None:
            yield frm.onclause


def _conjuncts(condition: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    if isinstance(condition, elements.BooleanClauseList) and condition.operator is operator.and_:
        return [atom for c in condition.clauses for atom in _conjuncts(c)]
    if isinstance(condition, elements.Grouping):
        return _conjuncts(cast(sa.ColumnElement[Any], condition.element))
    return [condition]


def _is_join_key(atom: sa.ColumnElement[Any]) -> bool:
    return (
        getattr(atom, "operator", None) is eq
        and isinstance(getattr(atom, "left", None), elements.ColumnClause)
        and isinstance(getattr(atom, "right", None), elements.ColumnClause)
    )


def _has_aggregate(expr: sa.ColumnElement[Any]) -> bool:
    return any(
        isinstance(n, functions.FunctionElement) and getattr(n, "name", None) in _AGGREGATES
        for n in visitors.iterate(expr)
    )


def _is_padding(expr: sa.ColumnElement[Any]) -> bool:
    """A constant 0 or NULL: what a UNION branch puts in the measures it does not compute."""
    while isinstance(expr, elements.Label):
        expr = expr.element
    if isinstance(expr, elements.Null):
        return True
    if isinstance(expr, elements.BindParameter):
        return expr.value in (0, None)
    if isinstance(expr, elements.ColumnClause) and expr.is_literal:
        return expr.name.strip() in ("0", "NULL", "null")
    return False
