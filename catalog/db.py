"""Open the catalog database: SQLite (WAL) by default, any SQLAlchemy URL by option, schema version checked."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine, select

from catalog.models import SCHEMA_VERSION, SchemaInfo


class SchemaVersionError(RuntimeError):
    """The catalog was written by a newer photo-engine; refusing to touch it."""


# Numbered migrations: MIGRATIONS[n] upgrades a catalog from version n to n + 1.
MIGRATIONS: dict[int, list[str]] = {
    1: ["ALTER TABLE task ADD COLUMN model VARCHAR"],
}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per URL per process, schema created and checked on first use."""
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"timeout": 30} if is_sqlite else {})
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    _prepare_schema(engine)
    return engine


def _prepare_schema(engine: Engine) -> None:
    """Create missing tables, then check and upgrade the stored schema version."""
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        row = session.get(SchemaInfo, "schema_version")
        if row is None:
            session.add(SchemaInfo(key="schema_version", value=str(SCHEMA_VERSION)))
            session.commit()
            return
        stored = int(row.value)
        if stored > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"catalog schema v{stored} is newer than this photo-engine understands (v{SCHEMA_VERSION}); "
                "upgrade photo-engine or open another library")
        while stored < SCHEMA_VERSION:
            for statement in MIGRATIONS.get(stored, []):
                session.connection().exec_driver_sql(statement)
            stored += 1
        row.value = str(stored)
        session.add(row)
        session.commit()


def session_for(url: str) -> Session:
    """A new session on the catalog; objects stay usable after commit (no expiry)."""
    return Session(engine_for(url), expire_on_commit=False)


def schema_version(url: str) -> int:
    with session_for(url) as session:
        row = session.exec(select(SchemaInfo).where(SchemaInfo.key == "schema_version")).first()
        return int(row.value) if row else 0
