"""The IVR prompt catalog: prompt names resolved to audio files, per language, over layered folders.

Layout of each catalog folder::

    <dir>/<language>/<name>.alaw    spoken prompts ("de/goodbye.alaw")
    <dir>/shared/<name>.alaw        language-neutral ones (music on hold)

Files are raw G.711 A-law at 8 kHz, mono, no header: the media worker plays them frame by frame (160
octets per 20 ms). The catalog is a list of such folders, the packaged defaults first (:func:`default_dirs`)
and the folder of prompts pushed by the cloud last; a later folder overrides an earlier one for the same
language and name, so a cloud-recorded ``de/closed`` replaces the synthetic one without touching the
package.

Resolution of ``path(language, name)``: ``language`` itself in any folder (latest first), then the shared
folder (latest first), then the catalog's default language (latest first). A shared prompt counts as
present in every language (:meth:`PromptCatalog.has`), so a flow's ``music_on_hold`` validates everywhere.

Names and languages are checked before they touch the file system (no path traversal): names are
``[a-z0-9_]{1,64}``, languages ``[a-z]{2,3}`` with up to two ``-subtags`` (``pt``, ``pt-BR``, ``zh-Hant-TW``).
:func:`install_prompt` stores a pushed prompt atomically, converting 8 kHz WAV input to raw A-law.
"""

from __future__ import annotations

import importlib.resources
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from appliance.durable import fsync_dir, write_atomically
from appliance.ivr.errors import IvrError
from appliance.media import g711

SHARED: Final = "shared"
"""The folder, in place of a language, of prompts every language shares."""
SUFFIX: Final = ".alaw"
RATE: Final = 8000
MAX_SECONDS: Final = 600
"""Longest prompt :func:`install_prompt` accepts (10 minutes)."""
MAX_ALAW_BYTES: Final = MAX_SECONDS * RATE
# The largest accepted upload: 10 minutes of 16-bit PCM plus room for a WAV header and metadata chunks.
MAX_INPUT_BYTES: Final = 2 * MAX_ALAW_BYTES + 65536

_NAME: Final = re.compile(r"[a-z0-9_]{1,64}")
# The same tags a flow may offer (appliance.ivr.validate.language_tag_ok): a language and up to two subtags.
_LANGUAGE: Final = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}")

# WAVE format tags (RFC 2361 appendix A) and the extensible format's sub-format GUID tail.
_WAVE_PCM: Final = 0x0001
_WAVE_ALAW: Final = 0x0006
_WAVE_MULAW: Final = 0x0007
_WAVE_EXTENSIBLE: Final = 0xFFFE
_GUID_TAIL: Final = bytes.fromhex("000000001000800000aa00389b71")


class PromptError(IvrError):
    """Base of the prompt catalog's errors. ``status`` is the sync API's answer to a push that raised it
    (422: the request was understood but its content refused)."""

    status: int = 422


class BadPromptName(PromptError, ValueError):
    """A prompt name or language that is not allowed (and so could never name a file of the catalog)."""


class BadPromptAudio(PromptError, ValueError):
    """Audio :func:`install_prompt` cannot store: empty, too long, or a WAV file that is not 8 kHz mono
    A-law, µ-law or 16-bit PCM."""


def check_name(name: str) -> str:
    """``name`` if it is a valid prompt name (``[a-z0-9_]{1,64}``), else :class:`BadPromptName`."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise BadPromptName(f"bad prompt name {name!r}")
    return name


def check_language(language: str, *, shared: bool = False) -> str:
    """``language`` if it is a valid language tag (or, with ``shared``, the shared folder), else
    :class:`BadPromptName`."""
    if isinstance(language, str) and (
        _LANGUAGE.fullmatch(language) is not None or (shared and language == SHARED)
    ):
        return language
    raise BadPromptName(f"bad prompt language {language!r}")


def default_dirs() -> list[Path]:
    """The packaged prompt folder (``appliance/ivr/prompts``), as the first catalog layer."""
    return [Path(str(importlib.resources.files("appliance.ivr") / "prompts"))]


class PromptCatalog:
    """Prompt files over layered folders (later ones override earlier ones); implements
    :class:`appliance.ivr.actions.PromptCatalog`.

    The catalog reads the file system on every call, so a prompt :func:`install_prompt` stored is found
    at once; each lookup is at most a few ``stat`` calls.
    """

    def __init__(self, dirs: Sequence[Path], default_language: str) -> None:
        self._dirs: Final = tuple(Path(d) for d in dirs)
        self._default: Final = check_language(default_language)

    @property
    def dirs(self) -> tuple[Path, ...]:
        """The folders, lowest precedence first."""
        return self._dirs

    @property
    def default_language(self) -> str:
        return self._default

    def _find(self, folder: str, name: str) -> Path | None:
        for directory in reversed(self._dirs):
            candidate = directory / folder / f"{name}{SUFFIX}"
            if candidate.is_file():
                return candidate
        return None

    def path(self, language: str, name: str) -> str:
        """The file for ``name`` in ``language``, else the shared one, else the default language's;
        ``KeyError`` when none exists, :class:`BadPromptName` for a malformed name or language."""
        check_name(name)
        for folder in dict.fromkeys((check_language(language), SHARED, self._default)):
            found = self._find(folder, name)
            if found is not None:
                return str(found)
        raise KeyError(f"no prompt {name!r} in {language!r} or {self._default!r}")

    def has(self, language: str, name: str) -> bool:
        """Whether ``language`` itself or the shared folder has ``name`` (no default-language fallback)."""
        check_name(name)
        return self._find(check_language(language), name) is not None or self._find(SHARED, name) is not None

    def languages(self) -> frozenset[str]:
        """The languages with at least one prompt in some folder."""
        found: set[str] = set()
        for directory in self._dirs:
            if not directory.is_dir():
                continue
            for child in directory.iterdir():
                if _LANGUAGE.fullmatch(child.name) and any(child.glob(f"*{SUFFIX}")):
                    found.add(child.name)
        return frozenset(found)

    def names(self, language: str) -> frozenset[str]:
        """Every name :meth:`has` answers True for in ``language`` (its own prompts and the shared ones)."""
        found: set[str] = set()
        for folder in (check_language(language), SHARED):
            for directory in self._dirs:
                found.update(
                    f.stem for f in (directory / folder).glob(f"*{SUFFIX}") if _NAME.fullmatch(f.stem)
                )
        return frozenset(found)


# --- installing a pushed prompt -------------------------------------------------------------------------


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """The first chunk of each id in a RIFF/WAVE file. Total: returns or raises :class:`BadPromptAudio`."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadPromptAudio("not a RIFF/WAVE file")
    chunks: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = data[offset + 8 : offset + 8 + size]
        if len(body) < size and chunk_id != b"data":
            raise BadPromptAudio(f"WAV chunk {chunk_id!r} is truncated")
        chunks.setdefault(chunk_id, body)
        offset += 8 + size + (size & 1)  # chunks are padded to even length (RIFF)
    return chunks


def wav_to_alaw(data: bytes) -> bytes:
    """Convert a WAV file of 8 kHz mono A-law, µ-law or 16-bit PCM (plain or WAVE_FORMAT_EXTENSIBLE) to
    raw A-law. µ-law goes through G.711 Table 3, PCM through the G.711 encoder. A ``data`` chunk shorter
    than its header says (a stream's writer never came back to fix the size) is taken as it is."""
    chunks = _chunks(data)
    fmt, samples = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or samples is None or len(fmt) < 16:
        raise BadPromptAudio("WAV file without fmt and data chunks")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _WAVE_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _GUID_TAIL:
            raise BadPromptAudio("WAV extensible format with an unknown sub-format")
        (tag,) = struct.unpack_from("<H", fmt, 24)
    if channels != 1 or rate != RATE:
        raise BadPromptAudio(f"WAV must be {RATE} Hz mono, not {rate} Hz with {channels} channels")
    if tag == _WAVE_ALAW and bits == 8:
        return samples
    if tag == _WAVE_MULAW and bits == 8:
        return g711.ulaw_to_alaw(samples)
    if tag == _WAVE_PCM and bits == 16:
        count = len(samples) // 2
        return g711.alaw_encode(struct.unpack(f"<{count}h", samples[: 2 * count]))
    raise BadPromptAudio(f"WAV format {tag:#06x} with {bits} bits is not A-law, µ-law or 16-bit PCM")


def to_prompt_audio(data: bytes) -> bytes:
    """The raw A-law a pushed prompt is stored as: a WAV file (starts ``RIFF....WAVE``) is converted by
    :func:`wav_to_alaw`, anything else is taken as raw A-law already (every octet is a valid A-law
    sample). Raises :class:`BadPromptAudio` for empty audio or more than :data:`MAX_SECONDS`."""
    if len(data) > MAX_INPUT_BYTES:
        raise BadPromptAudio(f"prompt upload of {len(data)} bytes is too large")
    audio = wav_to_alaw(data) if data[:4] == b"RIFF" and data[8:12] == b"WAVE" else data
    if not audio:
        raise BadPromptAudio("prompt has no audio")
    if len(audio) > MAX_ALAW_BYTES:
        raise BadPromptAudio(f"prompt of {len(audio) / RATE:.1f} s is longer than {MAX_SECONDS} s")
    return audio


def install_prompt(directory: Path, language: str, name: str, data: bytes) -> Path:
    """Store ``data`` as prompt ``name`` of ``language`` (or :data:`SHARED`) under catalog folder
    ``directory``, replacing any previous version; returns the file's path.

    ``data`` is converted by :func:`to_prompt_audio` first, so nothing invalid is ever written. The write
    is atomic and durable: a temporary file in the same folder is written and fsynced, renamed over the
    old one, and the folder fsynced, so a reader (or a power cut) sees the old prompt or the new one,
    never a part of one. Raises :class:`BadPromptName` or :class:`BadPromptAudio`.
    """
    check_language(language, shared=True)
    check_name(name)
    audio = to_prompt_audio(data)
    folder = Path(directory) / language
    created = not folder.is_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}{SUFFIX}"
    write_atomically(target, audio)
    if created:
        fsync_dir(folder.parent)  # the new language folder's own entry
    return target
