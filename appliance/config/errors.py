"""The configuration package's error tree.

A configuration is either accepted whole or rejected with every problem found, each named by the dotted path
of the offending key, so that an operator fixes a file in one pass instead of one error per restart. Each
error carries the exit code that ``appliance config check`` returns for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration document.

    ``path`` names the key (``sip.udp_port``, ``routes[1].destinations[0]``); it is empty for problems of the
    document as a whole (a TOML syntax error). ``message`` says what was expected and what was found.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """The configuration was rejected; ``errors`` lists every issue found, in document order."""

    exit_code: int = 1

    def __init__(self, errors: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class ConfigReadError(ConfigError):
    """The configuration file could not be read at all (missing, unreadable, a directory)."""

    exit_code = 2
