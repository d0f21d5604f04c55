"""Persistence: SQLModel tables, engine setup, Alembic migrations, the ledger,
the content-addressed image store and the validated reading of TOML files."""
