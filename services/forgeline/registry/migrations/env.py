"""Alembic environment of the registry: runs on the connection the store hands over."""

from alembic import context

from forgeline.registry.schema import Base

VERSION_TABLE = "registry_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
