"""The shared backend: PostgreSQL through psycopg 3 — Lakebase on Databricks Apps, any server via DATABASE_URL.

Several app instances share one database: rows are keyed by a random turn key, schema changes are serialised with
an advisory lock, and pooled connections are checked before use (a database that restarted is reconnected to).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

from core.config import StoreConfig
from core.errors import ConfigError
from core.turnstore.base import TurnStore
from core.turnstore.lakebase import LakebasePassword

DRIVER = "postgresql+psycopg"
URL_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")
SCHEMA_LOCK_ID = 0x41564154  # "AVAT": the advisory lock every instance takes to migrate the schema
POOL_SIZE = 4
"""Connections kept open per instance: turns write one at a time, the dashboard reads a few queries."""
POOL_RECYCLE_S = 1800
"""Connections are replaced after 30 minutes, well inside a Lakebase token's hour."""


class PostgresStore(TurnStore):
    """Turns in a PostgreSQL database.

    ``password`` (a callable) supplies the password for each new connection; the URL's own password is used when
    it is None.
    """

    name = "postgres"
    label = "PostgreSQL"

    def __init__(self, url: str | URL, *, password: Callable[[], str] | None = None,
                 connect_timeout_s: float = 5.0, application_name: str = "") -> None:
        super().__init__()
        self.url = _driver_url(url)
        self.password = password
        self.connect_timeout_s = connect_timeout_s
        self.application_name = application_name

    @classmethod
    def from_config(cls, config: StoreConfig) -> PostgresStore:
        """From ``DATABASE_URL``, else the PG* variables (with a Lakebase OAuth token when no PGPASSWORD is set).

        Raises:
            ConfigError: neither is set, or the URL is not a PostgreSQL URL.
        """
        if config.database_url:
            return cls(config.database_url, connect_timeout_s=config.connect_timeout_s,
                       application_name=config.pg_appname)
        if not (config.pg_host and config.pg_database and config.pg_user):
            raise ConfigError("The postgres turn store needs DATABASE_URL, or PGHOST, PGDATABASE and PGUSER "
                              "(a Databricks Apps database resource sets them).")
        query = {"sslmode": config.pg_sslmode} if config.pg_sslmode else {}
        url = URL.create(DRIVER, username=config.pg_user, password=config.pg_password or None,
                         host=config.pg_host, port=config.pg_port, database=config.pg_database, query=query)
        password = None if config.pg_password else LakebasePassword(config.lakebase_instance)
        return cls(url, password=password, connect_timeout_s=config.connect_timeout_s,
                   application_name=config.pg_appname)

    @property
    def location(self) -> str:
        return f"{self.url.host}:{self.url.port or 5432}/{self.url.database}"

    def _create_engine(self) -> Engine:
        connect_args: dict[str, Any] = {"connect_timeout": max(1, round(self.connect_timeout_s))}
        if self.application_name:
            connect_args["application_name"] = self.application_name
        engine = create_engine(self.url, pool_size=POOL_SIZE, pool_pre_ping=True, pool_recycle=POOL_RECYCLE_S,
                               connect_args=connect_args)
        if self.password is not None:
            password = self.password

            @event.listens_for(engine, "do_connect")
            def _fresh_password(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
                cparams["password"] = password()

        return engine

    def _lock_schema(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK_ID})


def _driver_url(url: str | URL) -> URL:
    """``postgres://`` and ``postgresql://`` URLs (as hosting platforms give them) with the psycopg 3 driver."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and ValueError for malformed URLs
        raise ConfigError("DATABASE_URL is not a valid database URL") from exc
    if parsed.drivername not in URL_SCHEMES:
        raise ConfigError(f"DATABASE_URL must be a PostgreSQL URL (postgresql://...), got {parsed.drivername}://")
    return parsed.set(drivername=DRIVER)
