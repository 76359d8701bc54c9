"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ClauseElement, ColumnElement, String, Table, any_, case, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


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


def in_ids(dialect: str, column: Any, ids: list[str]) -> ColumnElement[bool]:
    """``column IN ids`` whose SQL text does not change with ``len(ids)``.

    On PostgreSQL it is ``column = ANY($1)`` with one array parameter: asyncpg prepares
    each distinct statement text, so an ``IN`` list of a new length costs a PREPARE.
    """
    if dialect == "postgresql":
        return column == any_(literal(ids, postgresql.ARRAY(String())))
    return cast(ColumnElement[bool], column.in_(ids))


class DriverStatements:
    """Base of the bulk stores: statements sent on the driver's own connection under ``db``
    (asyncpg's or aiosqlite's), skipping SQLAlchemy, inside the transaction it began."""

    def __init__(self, db: AsyncConnection) -> None:
        self._db = db
        self._conn: Any = None

    async def _driver(self) -> Any:
        if self._conn is None:
            conn = (await self._db.get_raw_connection()).driver_connection
            inside = conn.is_in_transaction() if hasattr(conn, "is_in_transaction") else conn.in_transaction
            if not inside:
                raise RuntimeError("the bulk path writes only inside the group's transaction")
            self._conn = conn
        return self._conn
