"""Building blocks shared by the SQL-backed stores: the engine, keyset paging, stored times.

The job store and the registry store both keep their rows in SQLAlchemy (SQLite by default,
PostgreSQL by URL), page through them newest first with opaque tokens, and store every
time as UTC; this module is the one place each of those is done.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf import timestamp_pb2
from sqlalchemy import Select, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import InstrumentedAttribute

from forgeline.client import exceptions

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# -- engine ------------------------------------------------------------------------------


def create_sql_engine(url: str) -> Engine:
    """Creates a SQLAlchemy engine for a store's database URL.

    SQLite gets WAL and a busy timeout so readers never block writers, durable commits
    and enforced foreign keys; other databases get pre-ping so a dropped connection is replaced.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///registry.db`` or ``postgresql+psycopg://...``.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction (a version made READY) survives a power cut.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


# -- paging ------------------------------------------------------------------------------


def page_limit(page_size: int) -> int:
    """The number of items a page holds: the default when 0, never more than the maximum."""
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(after: int) -> str:
    """An opaque token for the page that continues after the row numbered `after`."""
    return base64.urlsafe_b64encode(json.dumps({"row": after}).encode()).decode()


def decode_page_token(token: str) -> int | None:
    """Returns the row a page token continues after, or None for the first page.

    Raises:
        InvalidArgument: the token was not produced by `encode_page_token`.
    """
    if not token:
        return None
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["row"])
    except (ValueError, KeyError, TypeError):
        raise exceptions.InvalidArgument(
            "page.page_token", "not a token from a previous page"
        ) from None


def keyset_page(
    query: Select, key: InstrumentedAttribute[int], page_size: int, page_token: str
) -> tuple[Select, int]:
    """Orders `query` newest first by `key` and limits it to one page (plus one row).

    The extra row tells `split_page` whether another page follows. Returns the query and
    the page size it was limited for.

    Raises:
        InvalidArgument: `page_token` is not a token from a previous page.
    """
    limit = page_limit(page_size)
    after = decode_page_token(page_token)
    query = query.order_by(key.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(key < after)
    return query, limit


def split_page(rows: Sequence[T], limit: int, key: Callable[[T], int]) -> tuple[list[T], str]:
    """Cuts rows fetched newest first to one page; returns it and the next page's token.

    Args:
        rows: Up to `limit + 1` rows; the extra one only says that more follow.
        limit: The page size.
        key: The row number of a row, the column the rows are ordered by.
    """
    token = encode_page_token(key(rows[limit - 1])) if len(rows) > limit else ""
    return list(rows[:limit]), token


# -- times -------------------------------------------------------------------------------


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Marks a naive datetime (as SQLite returns them) as UTC, which everything stored is."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """Converts an aware datetime to a protobuf Timestamp (None stays None)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts
