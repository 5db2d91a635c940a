"""The HTTP session under the Azure SDK clients that talk HTTPS from many threads (Cosmos DB).

Three costs are avoided. A connection is never thrown away for lack of room: the pool holds as many
connections as there are worker threads. And a new connection costs only its TLS handshake:
urllib3 builds a fresh SSL context for every connection and loads the CA bundle into it (about
20 ms of CPU under the GIL, measured on this project's machine: 85 % of a request's time against a
server that closes every connection, such as the Cosmos DB stand-in's own CLI), so the contexts are
built once here and handed to urllib3 through requests' documented extension point
(`HTTPAdapter.build_connection_pool_key_attributes`). Verification is unchanged: the verifying
context checks the certificate chain against the same CA bundle requests uses, and the host name.
And the environment is read once per server, not once per request: requests looks for proxy and
CA-bundle variables on every request (`Session.merge_environment_settings`, a public method of
the session), scanning every variable twice, and a Function app's environment holds all of its
app settings (docs/benchmarks.md, issue 19, ninth pass).
"""

from __future__ import annotations

import ssl
import warnings
from typing import Any
from urllib.parse import urlsplit

from requests import PreparedRequest, Session
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies
from urllib3.exceptions import InsecureRequestWarning
from urllib3.util.retry import Retry

# The Cosmos DB SDK turns certificate checks off for the local emulator only (localhost or
# 127.0.0.1, azure/cosmos/_synchronized_request.py): urllib3's warning about it, once per request,
# says nothing the user can act on. Every other host still warns.
warnings.filterwarnings("ignore", category=InsecureRequestWarning,
                        message=r"Unverified HTTPS request is being made to host '(localhost|127\.0\.0\.1)'")


class ReusedTlsAdapter(HTTPAdapter):
    """An HTTPAdapter whose TLS contexts are built once, not once per connection."""

    def __init__(self, pool_maxsize: int) -> None:
        self._verifying = ssl.create_default_context(cafile=DEFAULT_CA_BUNDLE_PATH)
        self._not_verifying = ssl.create_default_context()
        self._not_verifying.check_hostname = False  # what verify=False asks for (the local emulator)
        self._not_verifying.verify_mode = ssl.CERT_NONE
        super().__init__(pool_maxsize=pool_maxsize, max_retries=Retry(total=False, redirect=False))

    def build_connection_pool_key_attributes(self, request: PreparedRequest, verify: Any,
                                             cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if verify is True:
            pool["ssl_context"] = self._verifying
        elif verify is False:
            pool["ssl_context"] = self._not_verifying
        return host, pool  # a CA bundle of the caller's (verify="path") keeps requests' own handling

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if verify is True:  # the verifying context holds the bundle already: do not load it again
            conn.ca_certs = conn.ca_cert_dir = None


class EnvironmentReadOnce(Session):
    """A session that reads the proxy and CA-bundle variables once per scheme, host and port
    (and per-request `no_proxy`), then answers as requests would have. The environment of this
    process is not changed while it runs; a variable set later is not seen."""

    def __init__(self) -> None:
        super().__init__()
        self._read: dict[tuple[str, str | None], tuple[dict[str, str], str | None]] = {}

    def merge_environment_settings(self, url: str, proxies: dict[str, str] | None, stream: bool | None,
                                   verify: Any, cert: Any) -> dict[str, Any]:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        parts = urlsplit(url)
        key = (f"{parts.scheme}://{parts.netloc}", no_proxy)
        if (found := self._read.get(key)) is None:  # requests reads them; threads racing here read the same
            verify_found = super().merge_environment_settings(url, None, None, True, None)["verify"]
            found = self._read[key] = (get_environ_proxies(url, no_proxy=no_proxy),
                                       verify_found if isinstance(verify_found, str) else None)
        environment_proxies, bundle = found
        if proxies is not None:  # what requests does: the request's own proxies win
            for scheme, proxy in environment_proxies.items():
                proxies.setdefault(scheme, proxy)
        if (verify is True or verify is None) and bundle:
            verify = bundle
        return {"proxies": merge_setting(proxies, self.proxies), "stream": merge_setting(stream, self.stream),
                "verify": merge_setting(verify, self.verify), "cert": merge_setting(cert, self.cert)}


def pooled_session(workers: int) -> Session:
    """A session for `workers` threads over HTTPS; retries are the caller's (none here)."""
    session = EnvironmentReadOnce()
    session.mount("https://", ReusedTlsAdapter(pool_maxsize=workers))
    return session
