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


ENVIRONMENTS = [
    {},
    {"HTTPS_PROXY": "http://proxy.example:3128"},
    {"https_proxy": "http://proxy.example:3128", "no_proxy": "documents.azure.com"},
    {"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "other.example,127.0.0.1"},
    {"ALL_PROXY": "socks5://proxy.example:1080", "REQUESTS_CA_BUNDLE": "/etc/corporate-ca.pem"},
    {"CURL_CA_BUNDLE": "/etc/curl-ca.pem"},
    {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "/etc/curl-ca.pem"},
]
URLS = ["https://acct.documents.azure.com/dbs/ledger/colls/events/docs",
        "https://acct-westeurope.documents.azure.com:443/dbs/ledger", "https://127.0.0.1:8081/dbs/x"]


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda e: ",".join(e) or "none")
def test_the_environment_is_read_as_requests_reads_it(environment: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    ours, plain = pooled_session(1), requests.Session()
    for url in URLS:
        for proxies, verify in (({}, True), ({}, None), ({}, False), ({"https": "http://own.example:8080"}, True),
                                ({"no_proxy": "acct.documents.azure.com"}, True), (None, True), ({}, "/mine.pem")):
            twice = [ours.merge_environment_settings(url, None if proxies is None else dict(proxies), None, verify,
                                                     None) for _ in range(2)]
            expected = plain.merge_environment_settings(url, None if proxies is None else dict(proxies), None,
                                                        verify, None)
            assert twice == [expected, expected], (url, proxies, verify)


def test_the_environment_is_read_once_per_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    session = pooled_session(1)
    first = session.merge_environment_settings(URLS[0], {}, None, True, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://changed.example:3128")
    assert session.merge_environment_settings(URLS[0] + "/other", {}, None, True, None) == first
    assert session.merge_environment_settings(URLS[1], {}, None, True, None)["proxies"]["https"] == (
        "http://changed.example:3128")  # another server: read when first asked
