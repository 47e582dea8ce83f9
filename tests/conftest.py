"""Fixtures: every storage test runs on SQLite and on a real PostgreSQL.

PostgreSQL tests need ``CDRHUB_TEST_POSTGRES_URL`` (a server URL whose user may create
databases, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``). The run creates its own
database with a unique name and drops it at the end. Without the variable those tests skip,
unless ``CDRHUB_TEST_REQUIRE_POSTGRES=1`` (CI), where a skip would hide a failure.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cdrhub.app import create_app
from cdrhub.settings import Settings
from cdrhub.store import Store, open_store
from tests.helpers import (
    OTHER_TOKEN,
    POSTGRES_ENV,
    REQUIRE_ENV,
    TOKEN,
    Api,
    Push,
    Server,
    empty_postgres,
)


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    message = (
        f"PostgreSQL tests skipped: set {POSTGRES_ENV}=postgresql://USER@HOST:5432/postgres "
        "(a user that may CREATE DATABASE) to run them"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message.replace("skipped", "required"))
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test run's own, dropped at the end."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = _postgres_admin_url()
    name = f"cdrhub_test_{uuid.uuid4().hex[:12]}"
    plain = make_url(admin).set(drivername="postgresql")
    with psycopg.connect(plain.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield plain.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(plain.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, SQLite (a file) or PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cdrhub.db"
    url: str = request.getfixturevalue("postgres_database")
    empty_postgres(url)
    return url


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    """Settings for a test app on a migrated database, with two valid tokens and two paths."""
    store = open_store(store_url)
    try:
        store.upgrade()
    finally:
        store.close()
    return Settings(
        database_url=store_url,
        tokens=[TOKEN, OTHER_TOKEN],
        callback_paths=["/cc/callback", "/callback"],
        data_dir=tmp_path / "data",
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real app, lifespan included, driven through Starlette's test client."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """A second handle on the test database, for looking at what was stored."""
    handle = open_store(settings.database_url)
    yield handle
    handle.close()


@pytest.fixture
def push(client: TestClient) -> Push:
    """POST a call log the way NXCC does; override token, type, path or headers per call."""

    def _push(
        body: Any,
        *,
        token: str | None = TOKEN,
        content_type: str | None = "application/json",
        path: str = "/cc/callback",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if isinstance(body, dict | list):
            content = json.dumps(body, ensure_ascii=False).encode()
        elif isinstance(body, str):
            content = body.encode()
        else:
            content = body
        sent = dict(headers or {})
        if token is not None:
            sent["token"] = token
        if content_type is not None:
            sent["Content-Type"] = content_type
        return client.post(path, content=content, headers=sent)

    return _push


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start real servers on the test database; all are stopped after the test."""
    servers: list[Server] = []

    def _serve(**extra_env: str) -> Server:
        env = {
            "CDRHUB_DATABASE_URL": settings.database_url,
            "CDRHUB_TOKENS": ",".join(t.get_secret_value() for t in settings.tokens),
            "CDRHUB_CALLBACK_PATHS": ",".join(settings.callback_paths),
            "CDRHUB_DATA_DIR": str(settings.data_dir),
            **extra_env,
        }
        server = Server(env, tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()


@pytest.fixture
def api_key(store: Store) -> str:
    """A new API key with every right on the test database."""
    from cdrhub.auth.apikeys import create_key

    return create_key(store, "tests")[1]


@pytest.fixture
def api(client: TestClient, api_key: str) -> Api:
    """GET an /api path with the test API key; keyword arguments become query parameters."""

    def _get(path: str, **params: Any) -> httpx.Response:
        query = {k.rstrip("_"): v for k, v in params.items() if v is not None}
        return client.get(path, params=query, headers={"Authorization": f"Bearer {api_key}"})

    return _get
