"""Registry fixtures: a metadata DB on SQLite always, and on PostgreSQL when one is reachable.

Set FORGELINE_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1/postgres) to
run every store test on PostgreSQL too; each test gets a database of its own.
"""

from __future__ import annotations

import os
import uuid

import pytest

POSTGRES_URL = os.environ.get("FORGELINE_TEST_POSTGRES_URL", "")


def _postgres_database():
    import sqlalchemy

    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"forgeline_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(POSTGRES_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty metadata database URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("FORGELINE_TEST_POSTGRES_URL is not set")
    yield from _postgres_database()
