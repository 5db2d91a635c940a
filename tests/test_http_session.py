"""The HTTPS session under the Cosmos DB ledger: TLS contexts built once and shared by every
connection, certificate checks exactly as requests makes them, against the real local stand-in
(whose own CLI closes every connection, so each request opens one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from pipeline.adapters.azure.http_session import ReusedTlsAdapter, pooled_session

if TYPE_CHECKING:
    from tests.servers import CosmosEndpoint


def test_every_connection_shares_the_context_built_once(cosmos_endpoint: CosmosEndpoint) -> None:
    session = pooled_session(4)
    adapter = session.get_adapter(cosmos_endpoint.url)
    assert isinstance(adapter, ReusedTlsAdapter)
    for _ in range(3):
        assert session.get(cosmos_endpoint.url, verify=False, timeout=10).status_code == 200  # the account document
    keys = list(adapter.poolmanager.pools.keys())
    assert len(keys) == 1 and keys[0].key_ssl_context is adapter._not_verifying
    session.close()


def test_certificates_are_still_checked(cosmos_endpoint: CosmosEndpoint) -> None:
    session = pooled_session(1)
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        session.get(cosmos_endpoint.url, timeout=10)  # the stand-in's certificate is self-signed
    assert session.get_adapter(cosmos_endpoint.url)._verifying.verify_mode.name == "CERT_REQUIRED"  # type: ignore[attr-defined]
    session.close()
