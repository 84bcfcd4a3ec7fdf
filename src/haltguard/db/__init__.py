"""Storage for the operations service: one SQLAlchemy metadata, SQLite by default, PostgreSQL
when ``HALTGUARD_DATABASE_URL`` says so, and the Alembic migrations that create it."""
