"""Owner of ``operator-keys`` documents: the SSH public keys of the operators allowed into the NOC SSH
service, each with a name (logged in the audit trail) and a role.

Each key is read by :func:`asyncssh.import_public_key` (so anything the SSH service would not take is
refused here, with its path) and stored normalised. Applying writes ``<state_dir>/noc/authorized_keys``
atomically (:func:`appliance.durable.write_atomically`), one line per key of every operator-keys document
(documents by name, keys in their order), in OpenSSH format with the operator's name as the comment and
the role as the option ``role="<role>"``::

    role="admin" ssh-ed25519 AAAAC3Nz... alice

asyncssh keeps an option it does not know: ``SSHAuthorizedKeys.validate`` returns it in the options of
the key that matched (``{"role": ["admin"]}``), which is how the NOC service reads the role. The file is a
materialisation of the stored documents: the store writes it again at every start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncssh

from appliance.durable import write_atomically
from appliance.sync.documents.errors import InvalidDocument
from appliance.sync.documents.fields import read_array, read_choice, read_map, read_text, wrong
from appliance.sync.documents.model import Kind, join

ROLES: Final = ("admin", "operator", "viewer")
MAX_KEYS: Final = 256
_OPERATOR: Final = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
HEADER: Final = b"# The operators' SSH keys, from the operator-keys configuration documents; do not edit.\n"


@dataclass(frozen=True, slots=True)
class OperatorKey:
    name: str
    role: str
    key: str
    """``<algorithm> <base64>``, without comment."""

    def line(self) -> str:
        return f'role="{self.role}" {self.key} {self.name}'


class OperatorKeysOwner:
    """``operator-keys`` documents written to ``path`` (``<state_dir>/noc/authorized_keys``)."""

    kind: Kind = "operator-keys"

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._documents: Mapping[str, tuple[OperatorKey, ...]] = {}

    def validate(self, name: str, content: Any, *, version: int) -> tuple[OperatorKey, ...]:
        doc = read_map(content, "", required=("keys",))
        keys: list[OperatorKey] = []
        for i, item in enumerate(read_array(doc["keys"], "keys", low=0, high=MAX_KEYS)):
            at = join("keys", i)
            entry = read_map(item, at, required=("name", "key", "role"))
            operator = read_text(
                entry["name"], join(at, "name"), _OPERATOR, "an operator name (1-64 of A-Z a-z 0-9 _ . @ + -)"
            )
            role = read_choice(entry["role"], join(at, "role"), ROLES)
            key = _public_key(entry["key"], join(at, "key"))
            for other in keys:
                if other.name == operator:
                    raise InvalidDocument(f"operator {operator!r} is listed twice", path=join(at, "name"))
                if other.key == key:
                    raise InvalidDocument(f"the same key as operator {other.name!r}", path=join(at, "key"))
            keys.append(OperatorKey(operator, role, key))
        return tuple(keys)

    def apply(self, name: str, prepared: tuple[OperatorKey, ...]) -> None:
        self._write({**self._documents, name: prepared})

    def remove(self, name: str) -> None:
        self._write({other: keys for other, keys in self._documents.items() if other != name})

    def _write(self, documents: Mapping[str, tuple[OperatorKey, ...]]) -> None:
        lines = [key.line() for name in sorted(documents) for key in documents[name]]
        self._path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self._path, HEADER + "".join(f"{line}\n" for line in lines).encode())
        self._documents = documents  # after the write: a failed write leaves the keys in force as they were


def _public_key(value: Any, path: str) -> str:
    """``value`` (an OpenSSH public key line) as ``<algorithm> <base64>``, or :class:`InvalidDocument`."""
    if not isinstance(value, str):
        raise wrong("an OpenSSH public key line", value, path)
    if "\n" in value.strip() or len(value) > 16384:
        raise InvalidDocument("expected one OpenSSH public key line", path=path)
    try:
        key = asyncssh.import_public_key(value)
        exported = key.export_public_key("openssh").decode("ascii")
    except Exception as exc:  # asyncssh raises KeyImportError, ValueError and others for bad input
        raise InvalidDocument(f"not an SSH public key asyncssh can use ({exc})", path=path) from None
    algorithm, data = exported.split()[:2]
    return f"{algorithm} {data}"
