"""PostgreSQL passwords for Lakebase on Databricks Apps: short-lived OAuth tokens, fetched again before they expire.

Databricks Apps inject the app service principal's credentials (DATABRICKS_HOST, DATABRICKS_CLIENT_ID/SECRET) and,
for a database resource, PGHOST/PGUSER...; the Postgres role is the principal's client ID and its password is an
OAuth token. By default that is the app's own workspace token (databricks-sdk caches and refreshes it); with
``AVATAR_LAKEBASE_INSTANCE`` set it is a database credential for that instance from the SDK's
``database.generate_database_credential``. Either way each new connection asks for the password, and a token is
reused only while it has more than ``REFRESH_MARGIN_S`` left.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TOKEN_LIFETIME_S = 3600.0
"""Lakebase credentials last an hour; used when the credential call gives no expiry."""
REFRESH_MARGIN_S = 300.0
"""A token with less than five minutes left is replaced, so a connection never starts with one about to expire."""


class LakebasePassword:
    """Callable giving a valid OAuth token to use as the PostgreSQL password."""

    def __init__(self, instance: str = "", client_factory: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.instance = instance
        self._client_factory = client_factory or _workspace_client
        self._client: Any = None
        self._clock = clock
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()
        self.fetches = 0

    def __call__(self) -> str:
        with self._lock:
            if self._clock() < self._expires - REFRESH_MARGIN_S:
                return self._token
            if self._client is None:
                self._client = self._client_factory()
            self._token, self._expires = self._fetch()
            self.fetches += 1
            log.info("Lakebase: new OAuth token for PostgreSQL (valid %.0f min)", (self._expires - self._clock()) / 60)
            return self._token

    def _fetch(self) -> tuple[str, float]:
        if self.instance:
            credential = self._client.database.generate_database_credential(
                request_id=str(uuid.uuid4()), instance_names=[self.instance])
            expiry = credential.expiration_time
            expires = _timestamp(expiry) if expiry else self._clock() + TOKEN_LIFETIME_S
            return credential.token, expires
        token = self._client.config.oauth_token()
        expires = token.expiry.timestamp() if getattr(token, "expiry", None) else self._clock() + TOKEN_LIFETIME_S
        return token.access_token, expires


def _workspace_client() -> Any:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient()


def _timestamp(value: Any) -> float:
    """An expiry the SDK gives as an RFC 3339 string or a datetime, as Unix seconds."""
    from datetime import datetime

    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value.timestamp())
