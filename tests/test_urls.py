"""URLs as they may be printed: a password never, everything else as given."""

from __future__ import annotations

import pytest

from pipeline.domain.urls import without_password


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://reader:s3cr:et@127.0.0.1:6390/0", "redis://reader:***@127.0.0.1:6390/0"),
    ("redis://:only-password@host:6379/0", "redis://:***@host:6379/0"),
    ("rediss://cb.redis.azure.net:10000/0", "rediss://cb.redis.azure.net:10000/0"),
    ("redis://user@host:6379", "redis://user@host:6379"),
    ("sqlite:///home/me/counters.sqlite3", "sqlite:///home/me/counters.sqlite3"),
    ("not a url", "not a url"),
])
def test_a_password_is_never_shown(url: str, shown: str) -> None:
    assert without_password(url) == shown
