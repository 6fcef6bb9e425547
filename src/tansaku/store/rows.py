"""Get-or-create that is safe when several processes create the same row at once (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

T = TypeVar("T")


def get_or_create(session: Session, model: type[T], defaults: dict[str, Any] | None = None, **keys: Any) -> T:
    """The row of `model` with these unique-key values, inserted first if it does not exist.

    A plain "select, else add" lets two processes both miss the row and both insert it: one then fails on
    the unique constraint. INSERT ... ON CONFLICT DO NOTHING makes the second insert wait for the first
    transaction and then do nothing, so both end up updating the one row.
    """
    row = session.scalar(select(model).filter_by(**keys))
    if row is not None:
        return row
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # other databases: the unique constraint still refuses a duplicate
        row = model(**keys, **(defaults or {}))
        session.add(row)
        session.flush()
        return row
    session.flush()
    session.execute(insert(model).values(**keys, **(defaults or {})).on_conflict_do_nothing())
    return session.scalars(select(model).filter_by(**keys).execution_options(populate_existing=True)).one()
