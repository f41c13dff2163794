"""A real, throwaway PostgreSQL server for tests: Debian's ``postgresql`` binaries, a fresh cluster in a temporary
folder, listening on loopback only, started and stopped by the tests themselves.

PostgreSQL refuses to run as root; as root (CI) the server runs as the ``postgres`` user the Debian package creates.
Connections over TCP need a password (scram-sha-256), as on a real deployment. The port is ``AVATAR_TEST_PG_PORT``
(default 5433), or a free one when that is taken.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

DEFAULT_PORT = 5433
SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "avatar-test-superuser"
START_TIMEOUT_S = 60
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",  # a throwaway cluster: no need to wait for the disk (a clean stop still writes everything)
    "max_connections": "100",
}


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: `apt-get install postgresql` (make test does it)")
    return found


def _free_port(preferred: int) -> int:
    for port in itertools.chain([preferred], range(preferred + 100, preferred + 200)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for the test PostgreSQL server")


class PostgresServer:
    """One cluster: ``start()``, ``stop()``, ``create_database()``; ``url(database)`` for SQLAlchemy."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port or _free_port(int(os.environ.get("AVATAR_TEST_PG_PORT", DEFAULT_PORT)))
        self._as_postgres = os.geteuid() == 0
        self._databases = itertools.count(1)
        self._init()

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", SUPERUSER, "--", *args] if self._as_postgres else list(args)
        subprocess.run(command, check=True, capture_output=True, text=True, cwd="/")

    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        password_file = self.root / "superuser-password"
        password_file.write_text(SUPERUSER_PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(self.root, SUPERUSER)
            shutil.chown(password_file, SUPERUSER)
        self._run(_binary("initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={password_file}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-instructions")

    def start(self) -> None:
        options = " ".join([f"-p {self.port}", f"-k {self.data}", *(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())])
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", str(START_TIMEOUT_S), "-o", options, "start")

    def stop(self) -> None:
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = SUPERUSER_PASSWORD
            ) -> URL:
        return URL.create("postgresql+psycopg", username=user, password=password, host="127.0.0.1",
                          port=self.port, database=database)

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction (CREATE DATABASE, CREATE ROLE...)."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=SUPERUSER_PASSWORD,
                             dbname=database, autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"avatar_test_{os.getpid()}_{next(self._databases)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name
