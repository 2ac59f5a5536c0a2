"""Alembic migrations of workflows-tick (installed as ``workflows_tick.migrations``)."""
