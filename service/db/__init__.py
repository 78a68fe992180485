"""The state store: SQLAlchemy models, repositories and Alembic migrations."""
