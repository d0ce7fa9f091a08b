"""Session fixtures: the real broker and PostgreSQL, embedded unless the environment names them.

``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` point the suite at existing services;
otherwise one embedded broker and one embedded PostgreSQL start for the whole session.
Every test gets its own database (cloned from a migrated template) and its own topic
prefix and consumer group, so tests never see each other's data.

The suite runs on pytest-xdist's workers (pyproject's ``addopts``), each a session of its
own: each starts its own embedded services, or makes a template of its own on the
existing PostgreSQL (a random name, dropped with its clones at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from runtime import db
from switchboard.embedded import missing_services


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Without pytest-xdist (``-p no:xdist``), the ``--numprocesses`` and ``--dist`` of
    pyproject's ``addopts`` are accepted and do nothing: the suite runs in one process."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "pytest-xdist is disabled: these options do nothing")
    group.addoption("--numprocesses", dest="numprocesses", metavar="numprocesses")
    group.addoption("--dist", dest="dist", metavar="distmode", default="no")


@dataclass(frozen=True)
class Infrastructure:
    bootstrap_servers: str
    server_url: str
    """URL of the PostgreSQL server's maintenance database."""
    template: str
    """A migrated database new test databases are cloned from."""


@contextlib.contextmanager
def embedded_state_dir() -> Iterator[Path]:
    """A folder for embedded services' data, outside pytest's temporary root. As root, the
    embedded PostgreSQL runs as another user, and every pytest session that starts meanwhile
    (a second `make test`, an editor's test run) takes group and other permissions off that
    root, pulling the data folder from under a running server (PANIC on pg_control)."""
    path = Path(tempfile.mkdtemp(prefix="switchboard-tests-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def service_state_dir() -> Iterator[Path]:
    """``embedded_state_dir`` for one test's own ``switchboard run``."""
    with embedded_state_dir() as path:
        yield path


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[Infrastructure]:
    with (
        embedded_state_dir() as state,
        missing_services(
            state, os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
        ) as (bootstrap, database_url),
    ):
        server_url = db.with_database(database_url, "postgres")
        template = f"switchboard_template_{uuid.uuid4().hex[:8]}"
        asyncio.run(_create_template(server_url, template))
        yield Infrastructure(bootstrap, server_url, template)
        asyncio.run(_drop_databases(server_url, template))


async def _create_template(server_url: str, template: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{template}"')
    finally:
        await conn.close()
    await db.migrate_url(db.with_database(server_url, template))


async def _drop_databases(server_url: str, template: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        prefix = template.replace("template", "t")
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1 OR datname = $2",
            prefix + "%",
            template,
        )
        for row in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url(infrastructure: Infrastructure) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = infrastructure.template.replace("template", "t") + "_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(infrastructure.server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{infrastructure.template}"')
    finally:
        await conn.close()
    yield db.with_database(infrastructure.server_url, name)
    conn = await asyncpg.connect(infrastructure.server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def cli_environ(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> dict[str, str]:
    """The environment of an operator's ``switchboard`` tool command: a config file
    naming the test's broker (the database from ``DATABASE_URL``, as an operator runs it)."""
    from tests.support import make_raw_config, to_toml

    raw = make_raw_config(infrastructure.bootstrap_servers, database_url)
    del raw["database"]
    path = tmp_path / "switchboard.toml"
    path.write_text(to_toml(raw))
    return {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database_url,
        "SWITCHBOARD_CONFIG": str(path),
        "SWITCHBOARD_LOG_FORMAT": "json",
    }
