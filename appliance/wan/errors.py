"""The WAN package's error tree.

The WAN monitor has no peer of its own to answer, so its errors are all local: the caller (the control
process glue, or the NOC CLI acting for an operator) asked for something the mode machine does not allow.
``code`` is the exit status the NOC CLI reports for the refused command (EX_USAGE for a bad request,
EX_CONFIG for a bad configuration value, sysexits.h), so an operator's script can tell the two apart.
"""

from __future__ import annotations

from typing import Final

EX_USAGE: Final = 64
EX_CONFIG: Final = 78


class WanError(Exception):
    """Base of every error raised by :mod:`appliance.wan`; ``code`` is the NOC CLI exit status."""

    code: int = EX_USAGE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.reason!r})"


class ModeError(WanError):
    """The caller asked for a mode transition or an override the machine does not allow.

    This is the package's ``LocalProtocolError``: it means a bug in the caller or an operator request the
    appliance refuses (forcing ONLINE with no cloud configured), never a fault of the network.
    """


class ModeConfigError(ModeError):
    """A timing or threshold value handed to the mode machine is out of range."""

    code = EX_CONFIG


class RouteError(WanError):
    """The kernel refused a default-route change for an uplink (no such interface, unreachable gateway)."""

    code = EX_CONFIG
