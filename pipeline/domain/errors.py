"""The base of every error the pipeline raises on purpose, and the user's mistakes.

`pipeline.ports` extends this hierarchy with the errors adapters raise when a backend is
unavailable; every other module's errors derive from one of these two classes, so that an entry
point can tell a user's mistake (one line, exit 1) from an outage (retry) from a bug (traceback).
"""

from __future__ import annotations


class ChargebackError(Exception):
    """Raised on purpose by the pipeline (never by a bug)."""


class UserError(ChargebackError, ValueError):
    """A mistake the user can fix: a setting, a file, an option, a value. Its message names the
    thing and the fix, in one line."""
