"""One Microsoft Entra ID credential per process, shared by every Azure client of this app (Blob
Storage, Cosmos DB, Event Hubs, Azure Monitor, Redis).

Microsoft's guidance is to reuse credential instances: a credential keeps the tokens it got, so
a reused one asks Entra ID (or the managed identity endpoint) again only when a token is due,
and an app that makes a new one per client may be throttled with 429 ("Authentication best
practices with the Azure Identity library",
https://learn.microsoft.com/dotnet/azure/sdk/authentication/best-practices). A Functions timer
run opens several stores, each once a run: with a credential each, every run fetched a token
per store.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_credential: TokenCredential | None = None
_lock = threading.Lock()


def shared_credential() -> TokenCredential:
    """The process's DefaultAzureCredential, made on first use (it reads AZURE_CLIENT_ID and the
    managed identity's environment then)."""
    global _credential
    with _lock:
        if _credential is None:
            from azure.identity import DefaultAzureCredential

            _credential = DefaultAzureCredential()
        return _credential
