"""Persistence: SQLAlchemy Core tables, the database handle and Alembic migrations."""
