"""The HTTP transport under the Cosmos DB client (pipeline/adapters/azure/transport.py), against
real servers on 127.0.0.1: the Cosmos DB stand-in, an HTTPS server with a certificate made here,
and sockets that misbehave on purpose. What the SDK and the ledger rely on: TLS contexts built
once, certificates checked, the environment read as requests reads it, and each failure reported
as nothing sent (ServiceRequestError) or maybe written (ServiceResponseError)."""

from __future__ import annotations

import base64
import datetime
import gzip
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
import urllib3
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpRequest
from requests.utils import select_proxy

from pipeline.adapters.azure.transport import PooledTransport
from tests.fault_tools import free_port

if TYPE_CHECKING:
    from tests.servers import CosmosEndpoint


def get(transport: PooledTransport, url: str, **options: object) -> tuple[int, bytes]:
    response = transport.send(HttpRequest("GET", url), **options)
    return response.status_code, response.body()


def test_every_connection_shares_the_context_built_once(cosmos_endpoint: CosmosEndpoint) -> None:
    transport = PooledTransport(4)
    for _ in range(3):  # the stand-in closes every connection: three connections
        status, body = get(transport, cosmos_endpoint.url, connection_verify=False)
        assert status == 200 and b"databaseAccountEndpoint" in body  # the account document
    [manager] = transport._managers.values()
    [key] = manager.pools.keys()
    assert key.key_ssl_context is transport._contexts[False]
    transport.close()


def test_certificates_are_still_checked(cosmos_endpoint: CosmosEndpoint) -> None:
    transport = PooledTransport(1)
    with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
        get(transport, cosmos_endpoint.url)  # the stand-in's certificate is self-signed
    [(verify, context)] = transport._contexts.items()  # True, or the bundle REQUESTS_CA_BUNDLE names
    assert verify is not False and context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    transport.close()


class Answer(http.server.BaseHTTPRequestHandler):
    """200 with a gzip-compressed JSON body; records the request's headers on the server."""

    def do_GET(self) -> None:
        self.server.asked.append(dict(self.headers))  # type: ignore[attr-defined]
        body = gzip.compress(b'{"answer": 42}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def answering(context: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[dict[str, str]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    server.asked = []  # type: ignore[attr-defined]
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{server.server_address[1]}/", server.asked  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def certificate_for_loopback(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid for a day: (certificate, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def clear_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", None])
def test_a_certificate_bundle_is_trusted_as_requests_trusts_it(variable: str | None, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)
    certificate, key = certificate_for_loopback(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    with answering(context) as (url, _):
        with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
            get(PooledTransport(1), url)  # certifi's bundle does not hold it
        if variable is not None:
            monkeypatch.setenv(variable, str(certificate))
        transport = PooledTransport(1)
        options = {} if variable else {"connection_verify": str(certificate)}  # the SDK's SSLCaCerts
        assert get(transport, url, **options) == (200, b'{"answer": 42}')
        transport.close()


def test_bodies_are_decoded_and_headers_read_in_any_case() -> None:
    transport = PooledTransport(1)
    with answering() as (url, asked):
        response = transport.send(HttpRequest("GET", url))
    assert response.body() == b'{"answer": 42}' and response.reason == "OK"
    assert response.headers["content-type"] == response.content_type == "application/json"
    assert asked[0]["Accept-Encoding"] == "gzip, deflate"  # as requests asks
    transport.close()


ENVIRONMENTS = [
    {},
    {"HTTPS_PROXY": "http://proxy.example:3128"},
    {"https_proxy": "http://proxy.example:3128", "no_proxy": "documents.azure.com"},
    {"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "other.example,127.0.0.1"},
    {"HTTP_PROXY": "http://plain.example:3128"},
    {"ALL_PROXY": "http://all.example:8080", "NO_PROXY": "acct-westeurope.documents.azure.com"},
]
URLS = ["https://acct.documents.azure.com/dbs/ledger/colls/events/docs",
        "https://acct-westeurope.documents.azure.com:443/dbs/ledger", "https://127.0.0.1:8081/dbs/x"]


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda e: ",".join(e) or "none")
def test_the_proxy_is_the_one_requests_would_use(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    transport = PooledTransport(1)
    for url in URLS:
        for own in (None, {"https": "http://own.example:8080"}):
            settings = requests.Session().merge_environment_settings(url, dict(own or {}), None, True, None)
            expected = select_proxy(url, settings["proxies"])
            manager = transport._manager(url, own, True)
            if expected is None:
                assert not isinstance(manager, urllib3.ProxyManager), (url, own)
            else:
                assert isinstance(manager, urllib3.ProxyManager) and manager.proxy == urllib3.util.parse_url(
                    expected), (url, own, expected)


def test_a_socks_proxy_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.example:1080")
    with pytest.raises(ServiceRequestError, match="only http:// and https:// proxies are supported; set HTTPS_PROXY"):
        get(PooledTransport(1), URLS[0])


def test_the_environment_is_read_once_per_server(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    transport = PooledTransport(1)
    first = transport._manager(URLS[0], None, True)
    monkeypatch.setenv("HTTPS_PROXY", "http://changed.example:3128")
    assert transport._manager(URLS[0] + "/other", None, True) is first
    other = transport._manager(URLS[1], None, True)  # another server: read when first asked
    assert isinstance(other, urllib3.ProxyManager) and other.proxy == urllib3.util.parse_url("http://changed.example:3128")


@contextmanager
def raw_server(behave: Callable[[socket.socket], object]) -> Iterator[int]:
    """A server on 127.0.0.1 that hands each accepted connection to `behave`: its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                behave(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def read_head(connection: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head and (chunk := connection.recv(4096)):
        head += chunk
    return head


def test_a_server_that_is_not_there_means_nothing_was_sent() -> None:
    with pytest.raises(ServiceRequestError) as raised:  # nothing listens there: refused
        get(PooledTransport(1), f"http://127.0.0.1:{free_port()}/")
    assert not isinstance(raised.value, ServiceResponseError)


def test_a_connection_dropped_after_the_request_means_it_may_have_been_written() -> None:
    with raw_server(lambda connection: read_head(connection) and None) as port:
        transport = PooledTransport(1)
        with pytest.raises(ServiceResponseError, match=r"Connection aborted|RemoteDisconnected") as raised:
            transport.send(HttpRequest("POST", f"http://127.0.0.1:{port}/docs", data=b'{"id": "e1"}'))
    assert not isinstance(raised.value, ServiceRequestError)


def test_a_server_that_never_answers_times_out_as_a_response() -> None:
    answered = threading.Event()
    with raw_server(lambda connection: read_head(connection) and answered.wait(5) and None) as port:
        with pytest.raises(ServiceResponseTimeoutError):
            get(PooledTransport(1), f"http://127.0.0.1:{port}/", read_timeout=0.3)
        answered.set()


def test_a_proxy_gets_the_credentials_of_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)
    heads: list[bytes] = []

    def refuse(connection: socket.socket) -> None:
        heads.append(read_head(connection))
        connection.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")

    with raw_server(refuse) as port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://ledger%40corp:p%3Ass@127.0.0.1:{port}")
        with pytest.raises(ServiceRequestError, match="407"):
            get(PooledTransport(1), "https://acct.documents.azure.com/dbs")
    request, *lines = heads[0].decode().split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines if line)}
    assert request.startswith("CONNECT acct.documents.azure.com:443 HTTP/")  # http.client tunnels in 1.0
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"ledger@corp:p:ss").decode()
