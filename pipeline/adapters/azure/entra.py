"""Microsoft Entra ID sign-in for Azure Cache for Redis / Azure Managed Redis: redis-py asks the
credential provider for (username, token) on every (re)connect; the Redis counters re-open their
connections before the token they authenticated with expires (`renew_due`)."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import TYPE_CHECKING

from redis.credentials import CredentialProvider

from pipeline.ports import UserError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

USERNAME_VARIABLE = "CHARGEBACK_REDIS_USERNAME"
ENTRA_SCOPE = "https://redis.azure.com/.default"


class EntraIdCredentialProvider(CredentialProvider):
    """(object id, Microsoft Entra token) for Azure Cache for Redis, asked for on every connect.
    The username is CHARGEBACK_REDIS_USERNAME (the object id of the managed identity or service
    principal), else the `oid` claim of the token. DefaultAzureCredential caches and refreshes
    tokens, so a reconnect costs no extra call to Entra ID while the cached token is fresh."""

    def __init__(self, credential: TokenCredential | None = None, username: str | None = None, *,
                 renew_before_seconds: float = 300) -> None:
        self._credential = credential
        self._username = username or None
        self._renew_before = renew_before_seconds  # Azure asks for a new token >= 3 min before expiry
        self._earliest_expiry: float | None = None
        self._lock = threading.Lock()

    def get_credentials(self) -> tuple[str, str]:
        if self._credential is None:
            from pipeline.adapters.azure.identity import shared_credential

            self._credential = shared_credential()
        token = self._credential.get_token(ENTRA_SCOPE)
        with self._lock:
            expiry = self._earliest_expiry
            self._earliest_expiry = token.expires_on if expiry is None else min(expiry, token.expires_on)
        return (self._username or _object_id(token.token), token.token)

    def renew_due(self, now: float | None = None) -> bool:
        """Whether a connection may be using a token that expires within renew_before_seconds."""
        expiry = self._earliest_expiry
        return expiry is not None and (time.time() if now is None else now) >= expiry - self._renew_before

    def forget(self) -> None:
        with self._lock:
            self._earliest_expiry = None


def _object_id(token: str) -> str:
    try:
        payload = token.split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["oid"])
    except (IndexError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"the Entra token carries no object id: set {USERNAME_VARIABLE} to the object id "
                         "of the identity that connects to Redis") from error
