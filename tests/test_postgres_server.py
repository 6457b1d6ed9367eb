"""The PostgreSQL the suite starts: a working server, a database per test, data kept on restart."""

from __future__ import annotations

import pytest

from tests.support.postgres import PostgresServer

psycopg = pytest.importorskip("psycopg")


def test_server_answers_on_loopback_with_the_port_it_reports(
    postgres_server: PostgresServer,
) -> None:
    assert postgres_server.url == f"postgresql://camtrap@127.0.0.1:{postgres_server.port}/postgres"
    with psycopg.connect(postgres_server.url, connect_timeout=5) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        port = conn.execute("SHOW port").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    assert version is not None and int(version[0]) >= 150000
    assert port == (str(postgres_server.port),)
    assert fsync == ("on",), "durability tests need a server that really flushes"


def test_each_test_gets_an_empty_database_of_its_own(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    with psycopg.connect(postgres_db) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE mine (x int)")
    assert name is not None and name[0] != "postgres"
    assert tables == (0,)
    other = postgres_server.new_database(f"{name[0]}_other")
    with psycopg.connect(other) as conn:
        seen = conn.execute("SELECT to_regclass('public.mine')").fetchone()
    assert seen == (None,), "a table made in one database must not show in another"


def test_databases_of_two_tests_do_not_meet(postgres_db: str) -> None:
    # Runs beside the test above: whichever goes second must still start from nothing.
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT to_regclass('public.mine')").fetchone() == (None,)


def test_restart_keeps_committed_data_on_the_same_port(private_postgres: PostgresServer) -> None:
    url = private_postgres.new_database("kept")
    port = private_postgres.port
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id text PRIMARY KEY)")
        conn.execute("INSERT INTO items VALUES ('a'), ('b')")
    before = psycopg.connect(url, autocommit=True)
    try:
        private_postgres.restart()
        with pytest.raises(psycopg.OperationalError):
            before.execute("SELECT 1")  # the restart really cut the server's sessions
    finally:
        before.close()
    assert private_postgres.port == port
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id FROM items ORDER BY id").fetchall()
    assert rows == [("a",), ("b",)]


def test_stopped_server_refuses_until_started_again(private_postgres: PostgresServer) -> None:
    private_postgres.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(private_postgres.url, connect_timeout=2).close()
    private_postgres.start()
    with psycopg.connect(private_postgres.url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
