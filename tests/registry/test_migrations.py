"""The Alembic migrations build exactly the schema the ORM models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from forgeline.common.sql import create_sql_engine
from forgeline.registry.schema import Base
from forgeline.registry.store import upgrade_schema


def test_migrations_match_the_models(db_url):
    engine = create_sql_engine(db_url)
    upgrade_schema(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"include_name": lambda name, kind, _: name != "registry_alembic_version"},
        )
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent(db_url):
    engine = create_sql_engine(db_url)
    upgrade_schema(engine)
    upgrade_schema(engine)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"models", "versions", "manifest_entries", "aliases", "evaluations"} <= tables
    assert "registry_alembic_version" in tables
