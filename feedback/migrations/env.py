"""Alembic environment: runs on the connection the store hands over (the app migrates on start)."""
from alembic import context

from feedback.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
