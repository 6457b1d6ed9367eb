"""PostgreSQL from Debian for tests: a real server in a temp dir, on a free loopback port.

One server per test session (per xdist worker: each worker has its own session), and a fresh
database per test (``postgres_db``), so tests share a server but no data. A test that restarts
or stops the server gets its own (``private_postgres``) and hurts no one else.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``pg_ctl`` run as the ``postgres``
user (``runuser``), in a temp dir that user owns. The unix socket goes there too, so the
system's cluster (if the package started one) and its socket are never touched. Authentication
is ``trust``: only loopback and that private socket can reach the server. fsync stays on:
tests check durability against a restart.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import reserve_port

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "camtrap"
SERVER_USER = "postgres"  # the account the server runs as when the tests run as root
START_TIMEOUT_S = 60


def postgres_bin_dir() -> Path | None:
    """Debian's binaries of the newest installed major version, or None."""
    if not PG_ROOT.is_dir():
        return None
    versions = [p for p in PG_ROOT.iterdir() if p.name.isdigit() and (p / "bin/pg_ctl").exists()]
    if not versions:
        return None
    return max(versions, key=lambda p: int(p.name)) / "bin"


def _server_account() -> pwd.struct_passwd | None:
    """Who runs the server: the postgres user when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None


class PostgresServer:
    """One PostgreSQL cluster of our own: ``start``/``stop``/``restart`` keep dir and port."""

    def __init__(self, bin_dir: Path, base: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.data_dir = base / "data"
        self.socket_dir = base / "socket"
        self.log_path = base / "server.log"
        self.port = port
        self.running = False

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    # -- the server process -----------------------------------------------------------------

    def _run(self, tool: str, *args: str) -> None:
        """Run one PostgreSQL tool as the server's account; fail the test with its log if not."""
        argv = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        # Output to a file, never a pipe: the postmaster pg_ctl leaves behind would hold a pipe
        # open, and reading it would then wait for the server to exit.
        with (self.base / f"{tool}.out").open("wb") as out:
            result = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.base, check=False
            )
        if result.returncode != 0:
            output = (self.base / f"{tool}.out").read_text(errors="replace")[-2000:]
            log = (
                self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            )
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({result.returncode}):\n{output}\n{log[-2000:]}"
            )

    def init(self) -> None:
        self.socket_dir.mkdir()
        account = _server_account()
        if account is not None:
            for path in (self.base, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "100",
            "fsync": "on",
            "log_min_messages": "warning",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests.support.postgres\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
            "-t", str(START_TIMEOUT_S), "start",
        )  # fmt: skip
        self.running = True

    def stop(self) -> None:
        """Stop in fast mode: open sessions are cut, committed data stays."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        self.running = False

    def restart(self) -> None:
        """Fast restart on the same data dir and port: clients see their connections drop."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop if running; never raises, so a session's teardown always gets through."""
        if self.running or (self.data_dir / "postmaster.pid").exists():
            try:
                self.stop()
            except RuntimeError:
                self._run_quietly("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def _run_quietly(self, tool: str, *args: str) -> None:
        with contextlib.suppress(RuntimeError):
            self._run(tool, *args)

    # -- databases --------------------------------------------------------------------------

    def new_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, cutting any session a test left open on it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _start_server() -> PostgresServer:
    pytest.importorskip("psycopg", reason="psycopg (the PostgreSQL client) is not installed")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL is not installed (no {PG_ROOT}/<version>/bin/pg_ctl)")
    if os.geteuid() == 0 and _server_account() is None:
        pytest.skip(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL")
    # Not pytest's tmp_path: its dirs are private to us (0700), and the server user must reach
    # its data dir.
    base = Path(tempfile.mkdtemp(prefix="camtrap-pg-"))
    server = PostgresServer(bin_dir, base, reserve_port())
    try:
        server.init()
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's server; tests each make their own database on it (``postgres_db``)."""
    server = _start_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database of this test's own on the session's server."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres_server.new_database(name)
    yield url
    if postgres_server.running:
        postgres_server.drop_database(name)


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own, free to stop and restart (the fault tests)."""
    server = _start_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Runs a test once per engine of the ingest store: None means ``<root>/ingest.sqlite``,
    else the URL of a fresh PostgreSQL database of the test's own."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_db")
    return url
