"""The helpers shared by the SQL-backed stores: engine, page tokens and paging, stored times."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from forgeline.client import exceptions
from forgeline.common.sql import (
    MAX_PAGE_SIZE,
    as_utc,
    create_sql_engine,
    decode_page_token,
    encode_page_token,
    page_limit,
    split_page,
    to_timestamp,
    utcnow,
)


def test_sqlite_engine_sets_its_pragmas(tmp_path):
    engine = create_sql_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert (
                conn.execute(text("PRAGMA synchronous")).scalar() == 2
            )  # FULL: commits are durable
    finally:
        engine.dispose()


@pytest.mark.parametrize("after", [1, 42, 10**12])
def test_page_token_round_trips(after):
    assert decode_page_token(encode_page_token(after)) == after


def test_empty_page_token_is_the_first_page():
    assert decode_page_token("") is None


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        base64.urlsafe_b64encode(b"[1]").decode(),
        base64.urlsafe_b64encode(b'{"other": 1}').decode(),
        base64.urlsafe_b64encode(b'{"row": "x"}').decode(),
    ],
)
def test_bad_page_token_names_the_field(token):
    with pytest.raises(exceptions.InvalidArgument) as info:
        decode_page_token(token)
    assert info.value.violations[0].field == "page.page_token"


def test_page_limit_defaults_and_caps():
    assert page_limit(0) == 50
    assert page_limit(7) == 7
    assert page_limit(MAX_PAGE_SIZE + 1) == MAX_PAGE_SIZE


def test_split_page_gives_a_token_only_when_more_rows_follow():
    rows = [9, 8, 7, 6]
    page, token = split_page(rows, 3, lambda r: r)
    assert page == [9, 8, 7]
    assert decode_page_token(token) == 7
    assert split_page(rows[:3], 3, lambda r: r) == ([9, 8, 7], "")


def test_times_are_utc():
    assert utcnow().tzinfo is UTC
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert as_utc(naive) == naive.replace(tzinfo=UTC)
    aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(aware) is aware
    assert as_utc(None) is None
    assert to_timestamp(None) is None
    assert to_timestamp(naive).seconds == int(naive.replace(tzinfo=UTC).timestamp())
    assert to_timestamp(aware).seconds == int(aware.timestamp())
