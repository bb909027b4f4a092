"""Errors of call control."""

from __future__ import annotations


class MediaRefused(Exception):
    """Media for a leg cannot be set up: ``status`` is the SIP status the leg is refused with (488 for SDP
    that cannot be answered, 503 when no relay port is free), ``reason`` the text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
