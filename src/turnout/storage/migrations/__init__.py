"""Alembic migrations of turnout's schema (see storage/migrate.py for when they run)."""
