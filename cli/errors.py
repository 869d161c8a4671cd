"""The CLI's one error type: a mistake the user can fix, printed as one line."""

from __future__ import annotations

from core.contract.errors import AdapruneError


class UserError(AdapruneError):
    """A mistake the user can fix; printed as one line."""

    code = "usage_error"
