"""The Azure Retail Prices API over HTTP: the `Foundry Models` pages, following `NextPageLink`.
Unauthenticated, list prices. `get` is injectable so tests serve recorded pages (no network here)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from urllib.parse import quote

from pipeline.ports import BackendUnavailable

API = "https://prices.azure.com/api/retail/prices"
MAX_PAGES = 1000  # a loop of NextPageLinks is a defect on their side, not a reason to run forever


def first_url(region: str | None) -> str:
    query = "serviceName eq 'Foundry Models'" + (f" and armRegionName eq '{region}'" if region else "")
    return f"{API}?$filter={quote(query)}"


def http_get(url: str, timeout: float = 30.0) -> bytes:
    """The body of `url`, or BackendUnavailable in one line."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as error:
        raise BackendUnavailable(f"Retail Prices API: HTTP {error.code} for {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise BackendUnavailable(f"Retail Prices API unreachable ({reason}): {url}") from None


def fetch_pages(region: str | None, get: Callable[[str], bytes] = http_get) -> Iterator[tuple[str, bytes]]:
    """(url, body) of every page, following NextPageLink. The caller parses each page."""
    import json

    url: str | None = first_url(region)
    for _ in range(MAX_PAGES):
        if not url:
            return
        body = get(url)
        yield url, body
        try:
            link = json.loads(body).get("NextPageLink")
        except (ValueError, AttributeError):
            return  # the caller's parse names the bad page
        url = link if isinstance(link, str) and link else None
    raise BackendUnavailable(f"Retail Prices API: more than {MAX_PAGES} pages; stopped at {url}")
