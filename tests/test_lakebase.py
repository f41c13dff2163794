"""Lakebase on Databricks Apps: the app's OAuth token (from databricks-sdk, against the fake workspace) is the
PostgreSQL password of the app's role on a real PostgreSQL server, and tokens are fetched again before expiry."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from core.analytics import TurnLog
from core.config import load_config
from core.turnstore import PostgresStore, create_store
from core.turnstore.lakebase import REFRESH_MARGIN_S, TOKEN_LIFETIME_S, LakebasePassword
from tests.fake_databricks import FakeServingServer
from tests.postgres import PostgresServer
from tests.turn_writer import asked, turn

APP_ROLE = "0f5e8c2a-app-client-id"
"""What Databricks Apps set as PGUSER: the app service principal's client ID, which is its Postgres role."""


@pytest.fixture
def workspace(monkeypatch, no_cloud_credentials):
    """A fake workspace with the app's OAuth M2M credentials in the environment, as Databricks Apps inject them."""
    with FakeServingServer() as server:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_CLIENT_ID", APP_ROLE)
        monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "app-oauth-secret")
        # The fake serves no host metadata, from which the SDK would learn where the OAuth endpoints are.
        monkeypatch.setenv("DATABRICKS_DISCOVERY_URL", f"{server.url}/oidc/.well-known/oauth-authorization-server")
        yield server


def test_the_app_oauth_token_is_the_postgres_password(workspace, postgres: PostgresServer):
    database = postgres.create_database()
    postgres.execute(f"CREATE ROLE \"{APP_ROLE}\" LOGIN PASSWORD 'oauth-token-1'")  # the first token the fake issues
    postgres.execute(f'ALTER DATABASE "{database}" OWNER TO "{APP_ROLE}"')
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "PGDATABASE": database, "PGUSER": APP_ROLE,
           "PGSSLMODE": "disable", "PGAPPNAME": "avatar-assistant"}
    store = create_store(load_config(env).store)
    assert isinstance(store, PostgresStore) and isinstance(store.password, LakebasePassword)
    log = TurnLog(store)
    log.record_turn("s", asked(), turn(0.4), turn_key="lakebase")
    assert store.outbox.pending == 0
    store.engine().dispose()  # the next query opens a new connection: it asks for the password again
    assert [r["turn_key"] for r in log.export_rows()] == ["lakebase"]
    assert workspace.fake.oauth_tokens == ["oauth-token-1"]  # still valid: not fetched again
    assert store.password.fetches == 1


def test_a_wrong_token_is_an_outage_not_a_failed_turn(workspace, postgres: PostgresServer):
    database = postgres.create_database()
    postgres.execute(f"DROP ROLE IF EXISTS \"{APP_ROLE}-2\"")
    postgres.execute(f"CREATE ROLE \"{APP_ROLE}-2\" LOGIN PASSWORD 'a-token-the-fake-never-issues'")
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "PGDATABASE": database, "PGUSER": f"{APP_ROLE}-2",
           "PGSSLMODE": "disable"}
    log = TurnLog(create_store(load_config(env).store))
    log.record_turn("s", asked(), turn(0.4))
    assert log.store.outbox.pending == 1
    assert "password authentication failed" in log.store.outbox.last_error


@dataclass
class FakeClock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_refreshed_before_they_expire():
    clock = FakeClock()
    issued: list[str] = []

    def oauth_token():
        issued.append(f"token-{len(issued) + 1}")
        return SimpleNamespace(access_token=issued[-1], expiry=None)

    password = LakebasePassword(client_factory=lambda: SimpleNamespace(config=SimpleNamespace(
        oauth_token=oauth_token)), clock=clock)
    assert password() == "token-1"
    clock.now += TOKEN_LIFETIME_S - REFRESH_MARGIN_S - 1
    assert password() == "token-1"  # still comfortably valid
    clock.now += 2
    assert password() == "token-2" and password.fetches == 2


def test_an_instance_name_uses_the_database_credential_call():
    calls = []

    def generate_database_credential(*, request_id, instance_names):
        calls.append((request_id, instance_names))
        return SimpleNamespace(token="db-credential", expiration_time="2030-01-01T00:00:00Z")

    client = SimpleNamespace(database=SimpleNamespace(generate_database_credential=generate_database_credential))
    password = LakebasePassword("avatar-lakebase", client_factory=lambda: client, clock=FakeClock())
    assert password() == "db-credential" and password() == "db-credential"
    assert len(calls) == 1 and calls[0][1] == ["avatar-lakebase"] and len(calls[0][0]) == 36
