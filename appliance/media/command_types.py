"""What the media worker's command handlers share: the refusal they raise and the shape of an encrypted
file store (call recordings, voicemail).

Kept apart from :mod:`appliance.media.commands` so that :mod:`appliance.media.ivr_commands`, which
``commands`` uses, can raise and take the same types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.media.control_events import ControlError, ErrorCode
from appliance.media.recording import key_id_for


class CommandFailedError(ControlError):
    """A command the worker refuses; ``code`` is the :class:`ErrorCode` of the ``Error`` reply."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """Where encrypted files go (call recordings, voicemail) and the key-encryption key that wraps each
    file's data key."""

    directory: Path
    kek: bytes

    @property
    def key_id(self) -> str:
        return key_id_for(self.kek)
