"""Fixtures for the real local servers that `scripts/services.sh start` runs (and `make test`
starts and stops around the tests): redis-server, Azurite and the Cosmos DB stand-in.

Their endpoints come from the environment, as written to `.services/env`:

    CHARGEBACK_TEST_REDIS_URL                 redis://127.0.0.1:6390/0
    CHARGEBACK_TEST_AZURITE_CONNECTION_STRING the development connection string, BlobEndpoint on :10000
    CHARGEBACK_TEST_COSMOS_URL                https://127.0.0.1:8081
    CHARGEBACK_TEST_COSMOS_KEY                the emulator's public key

When a variable is missing, a test that needs the server is skipped with the reason, except
under CI (the CI variable set), where it fails: CI must never pass by skipping. A variable that
is set but whose server does not answer fails everywhere. Use them from tests/conftest.py with
`pytest_plugins = ["tests.servers"]`.
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple
from urllib.parse import urlparse

import pytest

REDIS_VARIABLE = "CHARGEBACK_TEST_REDIS_URL"
AZURITE_VARIABLE = "CHARGEBACK_TEST_AZURITE_CONNECTION_STRING"
COSMOS_URL_VARIABLE = "CHARGEBACK_TEST_COSMOS_URL"
COSMOS_KEY_VARIABLE = "CHARGEBACK_TEST_COSMOS_KEY"

HOW_TO_START = "start it with `scripts/services.sh start` and export .services/env, or run `make test`"


class CosmosEndpoint(NamedTuple):
    url: str
    key: str


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(service: str, *variables: str) -> list[str]:
    """The values of the variables; skips (fails under CI) naming the service when one is missing."""
    missing = [name for name in variables if not os.environ.get(name)]
    if missing:
        reason = f"{service} is not configured ({', '.join(missing)} unset): {HOW_TO_START}"
        if in_ci():
            pytest.fail(f"CI needs the real {service}; {reason}", pytrace=False)
        pytest.skip(reason)
    return [os.environ[name] for name in variables]


def check_answers(service: str, variable: str, host: str | None, port: int | None) -> None:
    """Fail (never skip) when a configured server does not accept connections."""
    if not host or port is None:
        pytest.fail(f"{variable} names no host and port for {service}", pytrace=False)
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as error:
        pytest.fail(f"{service} at {host}:{port} (from {variable}) does not answer: {error}; {HOW_TO_START}",
                    pytrace=False)


def blob_endpoint(connection_string: str) -> tuple[str | None, int | None]:
    """Host and port of the BlobEndpoint of a connection string (Azurite's defaults otherwise)."""
    settings = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    endpoint = {key.lower(): value for key, value in settings.items()}.get("blobendpoint")
    if endpoint is None:
        return "127.0.0.1", 10000  # UseDevelopmentStorage=true
    parsed = urlparse(endpoint)
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a real redis-server (database 0; tests clean up the keys they write)."""
    (url,) = require("redis-server", REDIS_VARIABLE)
    parsed = urlparse(url)
    check_answers("redis-server", REDIS_VARIABLE, parsed.hostname, parsed.port or 6379)
    return url


@pytest.fixture(scope="session")
def azurite_connection_string() -> str:
    """The connection string of a real Azurite (Blob service)."""
    (connection_string,) = require("Azurite", AZURITE_VARIABLE)
    check_answers("Azurite", AZURITE_VARIABLE, *blob_endpoint(connection_string))
    return connection_string


@pytest.fixture(scope="session")
def cosmos_endpoint() -> CosmosEndpoint:
    """URL and key of the real Cosmos DB stand-in (`url, key = cosmos_endpoint`)."""
    url, key = require("the Cosmos DB stand-in", COSMOS_URL_VARIABLE, COSMOS_KEY_VARIABLE)
    parsed = urlparse(url)
    check_answers("the Cosmos DB stand-in", COSMOS_URL_VARIABLE, parsed.hostname,
                  parsed.port or (443 if parsed.scheme == "https" else 80))
    return CosmosEndpoint(url, key)
