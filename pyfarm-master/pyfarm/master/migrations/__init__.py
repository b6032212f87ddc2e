"""Alembic migrations of the master's database."""
