"""The HTTP transport under the Cosmos DB client: azure-core's pipeline straight onto urllib3.

azure-core ships one synchronous transport, `RequestsTransport`, and documents `HttpTransport`
as the place to plug in another. Under the Cosmos DB ledger requests adds nothing the SDK uses
(no cookies, redirects, auth or hooks: the SDK signs and retries itself), yet it cost about a
third of the consumer's CPU per create: 1.2-1.4 ms against 0.73-0.87 ms through this transport,
sequential creates against a stand-in that keeps connections open (docs/benchmarks.md, issue 19,
fifteenth pass). So this transport sends each request with urllib3, which requests itself runs on.

What requests did for this client, it still does:
- Connections are pooled per server, as many as there are writer threads, and a new connection
  costs only its TLS handshake: the verifying and the non-verifying SSL contexts are built once
  (urllib3 would otherwise load the CA bundle into a fresh context per connection, about 20 ms of
  CPU under the GIL). Certificates are checked against the same bundle requests uses, with the
  host name; the Cosmos DB SDK itself turns checks off for the local emulator only (localhost or
  127.0.0.1, azure/cosmos/_synchronized_request.py).
- The environment is read by requests itself, once per server and not on every request (a
  Function app's environment holds all of its app settings): a requests session, which never
  sends anything here, says which proxy (HTTPS_PROXY, NO_PROXY and the rest) and which CA bundle
  (REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE) it would use for the server
  (`Session.merge_environment_settings`, public). A proxy's credentials in
  its URL become a Proxy-Authorization header, as requests sends.
- Failures become the azure-core errors the SDK's retry policies and the ledger read: nothing sent
  (`ServiceRequestError`: no connection, name resolution, TLS, proxy; a connect time-out is its
  `ServiceRequestTimeoutError`) or sent and maybe written (`ServiceResponseError`: the connection
  dropped, or the read timed out, `ServiceResponseTimeoutError`). Redirects are not followed and
  urllib3 retries nothing: the SDK and the ledger decide.
- `Accept-Encoding: gzip, deflate` is sent, as requests sends it, and bodies are decoded.
Streamed downloads are not offered: the Cosmos DB client reads every body whole.
"""

from __future__ import annotations

import ssl
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InsecureRequestWarning,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

# The SDK turns certificate checks off for the local emulator only: urllib3's warning about it,
# once per request, says nothing the user can act on. Every other host still warns.
warnings.filterwarnings("ignore", category=InsecureRequestWarning,
                        message=r"Unverified HTTPS request is being made to host '(localhost|127\.0\.0\.1)'")

_ACCEPT_ENCODING = "gzip, deflate"  # what requests sends without brotli or zstandard installed
_Verify = bool | str


class PooledResponse(HttpResponse):
    """A response read whole: status, headers (case-insensitive, as urllib3 keeps them), body."""

    def __init__(self, request: HttpRequest, response: urllib3.BaseHTTPResponse) -> None:
        super().__init__(request, response)
        self.status_code = response.status
        self.headers = response.headers  # case-insensitive, as requests keeps them
        self.reason = response.reason
        self.content_type = response.headers.get("Content-Type")
        self._body = response.data

    def body(self) -> bytes:
        return self._body


class PooledTransport(HttpTransport):  # type: ignore[type-arg]  # generic over the legacy request/response
    """An azure-core transport on urllib3 pools: `connections` per server (one per writer thread)."""

    def __init__(self, connections: int) -> None:
        self._connections = connections
        self._requests = requests.Session()  # asked once per server what the environment says, never to send
        self._contexts: dict[_Verify, ssl.SSLContext] = {}
        self._managers: dict[tuple[str | None, _Verify], urllib3.PoolManager] = {}
        self._lock = threading.Lock()
        self._servers: dict[str, tuple[str | None, str | None]] = {}  # scheme://host -> proxy, CA bundle

    def __enter__(self) -> PooledTransport:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def open(self) -> None:
        """Nothing to open: pools are made when a server is first asked."""

    def close(self) -> None:
        for manager in self._managers.values():
            manager.clear()
        self._managers.clear()

    def send(self, request: HttpRequest, **kwargs: Any) -> PooledResponse:
        if kwargs.get("connection_cert") is not None:
            raise ValueError("PooledTransport does not send client certificates")
        verify: _Verify = kwargs.get("connection_verify", True)
        if verify is None:
            verify = True
        timeout = urllib3.Timeout(connect=kwargs.get("connection_timeout", 300),
                                  read=kwargs.get("read_timeout", 300))
        headers = request.headers
        if "Accept-Encoding" not in headers:
            headers["Accept-Encoding"] = _ACCEPT_ENCODING
        manager = self._manager(request.url, kwargs.get("proxies"), verify)
        try:
            response = manager.urlopen(request.method, request.url, body=request.data, headers=headers,
                                       timeout=timeout, redirect=False, retries=False, preload_content=True)
        except NewConnectionError as error:  # a ConnectTimeoutError too, for urllib3: test it first
            raise ServiceRequestError(error, error=error) from error
        except ConnectTimeoutError as error:
            raise ServiceRequestTimeoutError(error, error=error) from error
        except (SSLError, ProxyError) as error:
            raise ServiceRequestError(error, error=error) from error
        except ReadTimeoutError as error:
            raise ServiceResponseTimeoutError(error, error=error) from error
        except (ProtocolError, HTTPError) as error:
            raise ServiceResponseError(error, error=error) from error
        return PooledResponse(request, response)

    def _manager(self, url: str, proxies: Mapping[str, str] | None, verify: _Verify) -> urllib3.PoolManager:
        if proxies:  # the client's own (azure-core's ProxyPolicy) win over the environment's, as in requests
            proxy, bundle = self._environment(url, proxies)
        else:
            parts = urlsplit(url)
            server = f"{parts.scheme}://{parts.netloc}"
            if (found := self._servers.get(server)) is None:  # threads racing here read the same
                found = self._servers[server] = self._environment(url, {})
            proxy, bundle = found
        if verify is True and bundle is not None:
            verify = bundle
        if (manager := self._managers.get((proxy, verify))) is None:
            with self._lock:  # one pool manager per proxy and verification, whichever thread asks first
                if (manager := self._managers.get((proxy, verify))) is None:
                    manager = self._managers[(proxy, verify)] = self._new_manager(proxy, verify)
        return manager

    def _environment(self, url: str, proxies: Mapping[str, str]) -> tuple[str | None, str | None]:
        """The proxy for this URL and the CA bundle the environment names, as requests finds them."""
        found = self._requests.merge_environment_settings(url, dict(proxies), None, True, None)
        return select_proxy(url, found["proxies"]), found["verify"] if isinstance(found["verify"], str) else None

    def _new_manager(self, proxy: str | None, verify: _Verify) -> urllib3.PoolManager:
        options: dict[str, Any] = {"maxsize": self._connections, "retries": False,
                                   "ssl_context": self._context(verify)}
        if verify is False:
            options.update(cert_reqs="CERT_NONE", assert_hostname=False)
        if proxy is None:
            return urllib3.PoolManager(**options)
        if not proxy.lower().startswith(("http://", "https://")):
            raise ServiceRequestError(f"proxy {proxy!r}: only http:// and https:// proxies are supported; set "
                                      "HTTPS_PROXY to one, or add the Cosmos DB host to NO_PROXY")
        located = urlsplit(proxy)
        credentials = f"{unquote(located.username or '')}:{unquote(located.password or '')}"
        headers = urllib3.make_headers(proxy_basic_auth=credentials) if located.username else None
        return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)

    def _context(self, verify: _Verify) -> ssl.SSLContext:
        if (context := self._contexts.get(verify)) is None:
            if verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:  # True: requests' bundle (certifi's); a path (the environment's, the SDK's): that one
                bundle = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
                folder = Path(bundle).is_dir()
                context = ssl.create_default_context(cafile=None if folder else bundle,
                                                     capath=bundle if folder else None)
            self._contexts[verify] = context
        return context
