"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ClauseElement, ColumnElement, Table, case, literal
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(dialect: str, table: Table, conflict_columns: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (cols) DO NOTHING`` on both databases.

    Races are settled by unique keys: the insert that loses simply inserts nothing, and
    the caller re-reads the winner.
    """
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return ins.on_conflict_do_nothing(index_elements=conflict_columns)


def greatest(column: Any, value: Any) -> ColumnElement[Any]:
    """The later of a column and a value, portably (PostgreSQL GREATEST, SQLite MAX).

    The value is bound with the column's type, so a UTC timestamp is stored the same
    way as everywhere else (naive UTC text on SQLite).
    """
    if not isinstance(value, ClauseElement):
        value = literal(value, column.type)
    return case((column < value, value), else_=column)


def upsert(
    dialect: str,
    table: Table,
    values: dict[str, Any],
    *,
    conflict_columns: list[str],
    update_values: dict[str, Any],
) -> Any:
    """``INSERT ... ON CONFLICT (cols) DO UPDATE SET ...`` on both databases."""
    ins = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return ins.values(values).on_conflict_do_update(index_elements=conflict_columns, set_=update_values)
