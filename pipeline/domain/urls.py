"""URLs as they may be printed."""

from __future__ import annotations


def without_password(url: str) -> str:
    """The URL as it may be printed: a password in it (`redis://user:secret@host`) becomes ***."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    user_info, at, host = authority.rpartition("@")
    if not separator or not at or ":" not in user_info:
        return url
    return f"{scheme}://{user_info.split(':', 1)[0]}:***@{host}{slash}{path}"
