"""Keyset (cursor) pagination over a (timestamp, id) pair: stable while rows are added or deleted."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from sqlalchemy import Row, Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from domain.errors import ServiceError


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ServiceError("invalid_cursor", "The cursor is not valid.") from None


def keyset_page(
    session: Session,
    query: Select,
    keys: tuple[InstrumentedAttribute, InstrumentedAttribute],
    *,
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> tuple[list[Row], str | None]:
    """One page of `query` in `keys` order, after `cursor`, and the cursor of the next page.

    The cursor is checked before anything else, so a bad one is a 400 whatever the query.
    The keys are read from the first entity of each row.
    """
    after = decode_cursor(cursor) if cursor else None
    position = tuple_(*keys)
    query = query.order_by(*(key.desc() if descending else key for key in keys)).limit(limit + 1)
    if after:
        query = query.where(position < after if descending else position > after)
    rows = session.execute(query).all()
    page = rows[:limit]
    if len(rows) <= limit:
        return page, None
    return page, encode_cursor(*(getattr(page[-1][0], key.key) for key in keys))
