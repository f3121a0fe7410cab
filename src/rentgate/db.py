"""Engine, sessions and the declarative base, tied to the Flask app context."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session

from rentgate.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# A pooled connection idle for longer than this is pinged before use. One
# checked in more recently skips the ping, because a request takes several
# connections from the pool in a row and a ping each time costs one round trip.
PING_AFTER_IDLE_SECONDS = 1.0
# app.extensions key of the engine that single_statement_session and
# request_connection use on PostgreSQL: the gateway's engine and pool, in
# autocommit mode.
_AUTOCOMMIT_ENGINE = "rentgate_autocommit_engine"


class Base(DeclarativeBase):
    """Base class of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(settings: Settings) -> Engine:
    """Create the engine; SQLite takes the write lock at BEGIN and waits when busy."""
    url = settings.database_url
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={
                "timeout": settings.sqlite_busy_timeout_ms / 1000,
                "check_same_thread": False,
            },
        )
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    engine = create_engine(url, pool_size=5, max_overflow=10)
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    # This replaces pool_pre_ping, which pings at every checkout. A connection
    # that the server dropped less than PING_AFTER_IDLE_SECONDS after its last
    # use fails its next statement instead, errors.py returns 503 for it, and
    # SQLAlchemy then replaces every connection of the pool.
    @event.listens_for(engine.pool, "connect")
    @event.listens_for(engine.pool, "checkin")
    def mark_used(_dbapi_connection: Any, record: Any) -> None:
        record.info["last_used"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get("last_used", 0.0)
        if time.monotonic() - last_used < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and checks out a new one.
            raise DisconnectionError(
                f"pooled connection failed its ping: {exc}"
            ) from exc


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    # pysqlite's own transaction handling issues BEGIN lazily and as DEFERRED,
    # which lets two writers both read and then deadlock on upgrade. Taking the
    # lock with BEGIN IMMEDIATE turns contention into a bounded busy wait.
    # Sessions made with the ``read_only`` execution option only read, so they
    # begin DEFERRED and, in WAL mode, read without waiting for the write lock.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("read_only"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def dialect_insert(bind: Session | Connection | Engine) -> Any:
    """Return the INSERT construct of the bind's dialect, which has ON CONFLICT."""
    connectable = bind.get_bind() if isinstance(bind, Session) else bind
    if connectable.dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def init_app(app: Flask) -> None:
    """Close the request's session on teardown."""

    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()
        connection = g.pop("db_autocommit_connection", None)
        if connection is not None:
            connection.close()


def get_session() -> Session:
    """Return the read-only session of the current request, made on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["rentgate"].read_sessions()
    return g.db_session


def request_connection() -> Connection:
    """Return the current request's autocommit connection, made on first use.

    One pooled connection serves every single-statement step of a request, so
    the request checks out the pool once. With no transaction open, holding it
    during a provider call holds no lock.
    """
    if "db_autocommit_connection" not in g:
        g.db_autocommit_connection = _autocommit_engine().connect()
    return g.db_autocommit_connection


def _autocommit_engine() -> Engine:
    engine = current_app.extensions.get(_AUTOCOMMIT_ENGINE)
    if engine is None:
        runtime = current_app.extensions["rentgate"]
        engine = runtime.engine.execution_options(isolation_level="AUTOCOMMIT")
        current_app.extensions[_AUTOCOMMIT_ENGINE] = engine
    return engine


def single_statement_session() -> Session:
    """Return a new session for a lookup of one SELECT, which the caller closes.

    On PostgreSQL the session runs in autocommit mode. A lone SELECT reads one
    snapshot at any isolation level, so the result is the same, and psycopg
    sends no BEGIN and no ROLLBACK, which saves two round trips. On SQLite it
    is a read-only session, whose deferred BEGIN costs no round trip.
    """
    runtime = current_app.extensions["rentgate"]
    if runtime.engine.dialect.name != "postgresql":
        return runtime.read_sessions()
    return Session(_autocommit_engine())
