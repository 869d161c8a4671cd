"""The CLI's one error type: a mistake the user can fix, printed as one line."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""
