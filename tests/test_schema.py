"""A new database is created at the newest schema at once; it must equal one the migrations built step by step.

``storage.db.migrate`` skips Alembic on a database without tables (create_all, the migrations' rows,
the version stamp).  These tests keep that honest on SQLite and PostgreSQL: the models and the
migrations describe the same schema, and both ways give the same tables, columns, defaults, keys,
indexes and rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from storage.db import alembic_config, make_engine, migrate


@contextmanager
def fresh_engine(request: pytest.FixtureRequest, backend: str, tmp_path: Path, name: str) -> Iterator[Engine]:
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    import os

    from loop_helpers import pg_schema

    base = request.config.getoption("--pg") or os.environ.get("CREATIVE_LOOP_TEST_PG")
    if not base:
        pytest.skip("PostgreSQL not selected (set CREATIVE_LOOP_TEST_PG or --pg)")
    with pg_schema(base) as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def schema_of(engine: Engine) -> dict[str, Any]:
    """Everything about the tables that a migration could get wrong, in a comparable form."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        insp = inspect(conn)
        for table in sorted(insp.get_table_names()):
            out[table] = {
                # By name: a column a migration added to a filled table comes last there, not in the model's order.
                "columns": sorted(
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")).strip("'\"() ").lower())
                    for c in insp.get_columns(table)
                ),
                "pk": sorted(insp.get_pk_constraint(table)["constrained_columns"]),
                "fks": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                    for f in insp.get_foreign_keys(table)
                ),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)
                ),
                "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            }
        out["rows"] = {
            "alembic_version": conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all(),
            "accountcap": [
                tuple(r) for r in conn.execute(text("SELECT id, monthly_cap_minor, currency FROM accountcap")).all()
            ],
        }
    return out


def differences_from_models(engine: Engine) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import storage.models  # noqa: F401  (registers the tables)

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, SQLModel.metadata))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_new_database_equals_one_migrated_step_by_step(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    from alembic import command

    with (
        fresh_engine(request, backend, tmp_path, "stepwise") as stepwise,
        fresh_engine(request, backend, tmp_path, "at_once") as at_once,
    ):
        command.upgrade(alembic_config(stepwise), "head")
        migrate(at_once)
        assert differences_from_models(stepwise) == []  # the models say what the migrations build
        assert differences_from_models(at_once) == []
        assert schema_of(at_once) == schema_of(stepwise)
        assert schema_of(at_once)["rows"]["accountcap"] == [("account", None, "USD")]
        migrate(at_once)  # again: at its head, nothing to do
        assert schema_of(at_once) == schema_of(stepwise)


def test_a_database_with_other_tables_is_left_to_alembic(tmp_path: Path) -> None:
    """Only an empty database is created at once; one holding anything goes through the migrations."""
    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE someone_elses (x INTEGER)"))
        migrate(engine)
        left = differences_from_models(engine)  # besides the other table, which the models do not know
        assert [d[0] for d in left] == ["remove_table"] and left[0][1].name == "someone_elses"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM someone_elses")).scalar() == 0
            assert conn.execute(text("SELECT id FROM accountcap")).scalars().all() == ["account"]
    finally:
        engine.dispose()


def test_an_old_schema_is_upgraded_by_the_migrations(tmp_path: Path) -> None:
    from alembic import command

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        command.upgrade(alembic_config(engine), "0002")
        migrate(engine)
        assert differences_from_models(engine) == []
    finally:
        engine.dispose()
