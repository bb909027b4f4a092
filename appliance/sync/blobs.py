"""Blobs of the sync API: files an event names (a voicemail), fetched by id with HTTP ranges.

Theory of operation. A blob id is ``<area>/<file name>`` (``voicemail/<record_id>.vm``); each area is
one directory, and a file name must match a strict pattern (no separator, no leading dot), so an id can
never name a file outside its directory. A cloud that lost its connection resumes a download with
``Range: bytes=<first>-`` (RFC 9110 §14.2) and ``If-Range`` with the ETag it saw (§13.1.5): the ETag is
the quoted hex SHA-256 of the whole file, computed once per (path, size, mtime) and cached.

A blob lives until the event that names it is acknowledged. :data:`BLOB_EVENTS` is the one table of the
event types that name a blob (a voicemail, a call recording) and where their body names it;
:meth:`BlobStore.files_named` finds the files of a batch of such events, and :meth:`BlobStore.delete`
removes them. A crash between the acknowledgement and the deletion leaves orphans that
:meth:`BlobStore.sweep` removes at the next start from every area of the table. Blob areas outside the
table (none today) are never swept.

Range parsing is sans-I/O; the store reads files (blocking, small reads) and is used from a thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import cbor2

from appliance.sync.errors import BadRange, BadRequest, NotFound, SyncError

log = logging.getLogger(__name__)

VOICEMAIL: Final = "voicemail"
RECORDING: Final = "recording"
_FILE_RE: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_AREA_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")
_RANGE_RE: Final = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
_HASH_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class BlobField:
    """Where the body of a blob-bearing event names its file: the value at the keys ``at``, either an
    absolute path (``ivr.voicemail``: ``blob.path``) or, with ``is_id``, a blob id of ``area``
    (``call.recording``: ``blob_id``). ``area`` is the blob area the event's files lie in."""

    area: str
    at: tuple[str, ...]
    is_id: bool = False

    def value(self, body: Mapping[str, Any]) -> str | None:
        """The non-empty string at ``at`` in ``body``, or None."""
        value: Any = body
        for key in self.at:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value if isinstance(value, str) and value else None


BLOB_EVENTS: Final[Mapping[str, BlobField]] = MappingProxyType(
    {
        "ivr.voicemail": BlobField(VOICEMAIL, ("blob", "path")),  # appliance/ivr/records.py
        "call.recording": BlobField(RECORDING, ("blob_id",), is_id=True),  # records.cddl call-recording
    }
)
"""The event types whose files live until the event is acknowledged. Only these rows are read on an
acknowledgement and at the start-up sweep."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``first`` to ``last`` inclusive of a blob of ``size`` bytes (RFC 9110 §14.1.1)."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


def parse_range(header: str, size: int) -> ByteRange | None:
    """The single range of a ``Range`` header over ``size`` bytes (RFC 9110 §14.1.2).

    None means "send the whole blob": a header of another unit or several ranges is ignored, as §14.2
    allows. :class:`BadRange` (416) for a range that no byte satisfies: a first byte at or past the end,
    a suffix of length 0, or any range of an empty blob."""
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None  # "bytes=-" is not a range (§14.1.1); ignore the header
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise BadRange(f"no byte in the last {suffix} of a {size}-byte blob", size=size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # invalid, so ignored (§14.1.1)
    if first >= size:
        raise BadRange(f"range starts at byte {first} of a {size}-byte blob", size=size)
    return ByteRange(first, min(last, size - 1), size)


def if_range_matches(header: str | None, etag: str) -> bool:
    """Whether a Range may be honoured given ``If-Range`` (RFC 9110 §13.1.5): no header, or the strong
    ETag of the blob now (a date there is not comparable with a content hash, so it does not match)."""
    return header is None or header.strip() == etag


@dataclass(frozen=True, slots=True)
class BlobFile:
    path: Path
    size: int
    etag: str


class BlobStore:
    """Blob ids to files in ``areas`` (area name -> directory)."""

    def __init__(self, areas: Mapping[str, Path]) -> None:
        for area in areas:
            if _AREA_RE.fullmatch(area) is None:
                raise ValueError(f"bad blob area name {area!r}")
        self._areas = {area: Path(directory).resolve() for area, directory in areas.items()}
        self._etags: dict[tuple[Path, int, int], str] = {}

    def resolve(self, blob_id: str) -> Path:
        """The file of ``blob_id``; :class:`BadRequest` for an id of the wrong form, :class:`NotFound`
        for an unknown area."""
        area, sep, name = blob_id.partition("/")
        if not sep or _FILE_RE.fullmatch(name) is None:
            raise BadRequest(f"a blob id is <area>/<file name>, not {blob_id[:200]!r}")
        directory = self._areas.get(area)
        if directory is None:
            raise NotFound(f"no blob area {area[:64]!r}")
        return directory / name

    def open(self, blob_id: str) -> BlobFile:
        """The file, its size and ETag; :class:`NotFound` when it does not exist (or is gone)."""
        path = self.resolve(blob_id)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no blob {blob_id!r}") from None
        if not path.is_file():
            raise NotFound(f"no blob {blob_id!r}")
        key = (path, stat.st_size, stat.st_mtime_ns)
        etag = self._etags.get(key)
        if etag is None:
            etag = '"' + _sha256(path) + '"'
            self._etags = {k: v for k, v in self._etags.items() if k[0] != path}
            self._etags[key] = etag
        return BlobFile(path, stat.st_size, etag)

    def read(self, blob: BlobFile, first: int, length: int) -> bytes:
        with blob.path.open("rb") as file:
            file.seek(first)
            return file.read(length)

    def files_named(self, events: Iterable[tuple[str, bytes]]) -> list[Path]:
        """The files that ``events`` (type, stored CBOR body) name, by :data:`BLOB_EVENTS`. Events of other
        types, undecodable bodies, bodies without the field and ids of another area or of the wrong form
        name nothing: an acknowledgement must not fail on a body the appliance itself wrote."""
        files: list[Path] = []
        for event_type, raw in events:
            field = BLOB_EVENTS.get(event_type)
            if field is None:
                continue
            try:
                body = cbor2.loads(raw)
            except (cbor2.CBORDecodeError, ValueError):
                continue
            value = field.value(body) if isinstance(body, Mapping) else None
            if value is None:
                continue
            if not field.is_id:
                files.append(Path(value))
            elif value.partition("/")[0] == field.area and field.area in self._areas:
                try:
                    files.append(self.resolve(value))
                except SyncError:
                    continue
        return files

    def swept_areas(self) -> list[str]:
        """The areas of this store that :data:`BLOB_EVENTS` names, the ones :meth:`sweep` may clear."""
        named = {field.area for field in BLOB_EVENTS.values()}
        return [area for area in self._areas if area in named]

    def delete(self, paths: Iterable[Path]) -> int:
        """Delete ``paths`` that lie directly in an area; returns how many were deleted."""
        deleted = 0
        directories = set(self._areas.values())
        for path in paths:
            if path.parent.resolve() not in directories:
                log.warning("not deleting %s: outside the blob directories", path)
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            self._etags = {k: v for k, v in self._etags.items() if k[0] != path}
            deleted += 1
        return deleted

    def sweep(self, area: str, keep: Collection[Path], *, older_than: float) -> int:
        """Delete the files of ``area`` not in ``keep`` and last modified before ``older_than`` (POSIX
        seconds; files newer than that may belong to an event not yet appended). Temporary files (a
        leading dot) are their writer's. Returns how many were deleted."""
        directory = self._areas[area]
        kept = {path.name for path in keep if path.parent.resolve() == directory}
        orphans: list[Path] = []
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            if entry.name not in kept and entry.stat().st_mtime < older_than:
                orphans.append(directory / entry.name)
        deleted = self.delete(orphans)
        if deleted:
            log.info("removed %d %s blobs no pending event names", deleted, area)
        return deleted


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
