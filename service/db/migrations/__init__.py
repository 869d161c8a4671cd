"""Alembic migrations of the results store (run through service.db.migrate)."""
