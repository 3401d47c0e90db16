"""The portal outcomes that are not a usable reply (see :mod:`hub.sync.client`)."""

from __future__ import annotations

__all__ = ["PortalError", "Rejected", "Transient"]


class PortalError(Exception):
    """Base of the portal outcomes that are not a usable reply."""


class Transient(PortalError):  # noqa: N818 - an outcome, read as "transient (failure)"
    """Retry later. ``reason`` is a metric label (``5xx``, ``429``, ``timeout``, ``reset``, ``connect``,
    ``error_body``, ``auth``, ``bad_reply``)."""

    def __init__(self, reason: str, detail: str, *, retry_after: float | None = None, maybe_sent: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class Rejected(PortalError):  # noqa: N818 - an outcome, read as "rejected (by the portal)"
    """The portal refused the request for good; ``message`` is the portal's own (redacted)."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(f"portal rejected the request (error_code {error_code}): {message}")
        self.error_code = error_code
        self.message = message
