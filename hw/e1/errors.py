"""The E1 span package's error tree (STYLE.md rule 8).

The far end of a span never raises here: a bad message on a simulated span socket or a bad frame from a
card is counted and dropped. Exceptions are for our own callers' mistakes (:class:`SpanConfigError`,
:class:`LinkUsageError`) and for a backend that cannot do what it was asked (:class:`DahdiError`).
"""

from __future__ import annotations


class E1Error(Exception):
    """Base of every error raised by :mod:`hw.e1`."""


class SpanConfigError(E1Error, ValueError):
    """A span configuration that an E1 span cannot have; the message names the setting and the span."""


class LinkUsageError(E1Error, ValueError):
    """Our caller misused a D- or B-channel link (a frame no link could carry, a timeslot not open)."""


class DahdiError(E1Error):
    """The DAHDI backend failed: a file it writes or reads, ``dahdi_cfg`` or a channel device."""


class DahdiCfgError(DahdiError):
    """``dahdi_cfg`` failed, timed out or could not be run; ``stderr`` is what it said."""

    def __init__(self, reason: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.returncode = returncode
        self.stderr = stderr
