"""Shared fixtures: one configuration and one pipeline (real embedded models) for the whole test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.config import AppConfig, load_config  # noqa: E402 - HF_HUB_OFFLINE must be set first
from core.llama_build import report  # noqa: E402
from core.pipeline import Pipeline  # noqa: E402
from core.turnstore import PostgresStore, SQLiteStore, TurnStore  # noqa: E402
from tests.fake_databricks import FAKE_TOKEN, FakeServingServer  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def pytest_report_header() -> str:
    """One line at the top of every run: the llama.cpp build and the CPU features it uses, for crash reports."""
    try:
        return report().line()
    except RuntimeError as exc:
        return f"llama.cpp: {exc}"


@pytest.fixture(scope="session")
def app_config(tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    """The default configuration, offline, with a throwaway cache for audio files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "OPENAI_", "AVATAR_"))}
    env["AVATAR_CACHE_DIR"] = str(tmp_path_factory.mktemp("avatar-cache"))
    return load_config(env)


@pytest.fixture(scope="session")
def pipeline(app_config: AppConfig) -> Pipeline:
    """A pipeline on the embedded default models, loaded and warmed up once."""
    pipeline = Pipeline(app_config)
    pipeline.warm_up()
    return pipeline


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots and other files a person may want to look at after the tests."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


CLOUD_VARIABLES = ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET",
                   "DATABRICKS_CONFIG_PROFILE", "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL")


@pytest.fixture
def no_cloud_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real credentials or ~/.databrickscfg leak into a test."""
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))


@pytest.fixture
def databricks(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServingServer]:
    """A fake Databricks workspace, with DATABRICKS_HOST/TOKEN pointing at it."""
    with FakeServingServer() as server:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", FAKE_TOKEN)
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the whole session (a fresh cluster, removed afterwards)."""
    root = Path(tempfile.mkdtemp(prefix="avatar-pg-"))
    server = PostgresServer(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], TurnStore]:
    """Each call opens one more store (as another app instance would) on one fresh database of the backend."""
    if request.param == "sqlite":
        path = tmp_path / "turns.sqlite"
        return lambda: SQLiteStore(path)
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.url(server.create_database())
    return lambda: PostgresStore(url)
