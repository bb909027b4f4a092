"""Blobs of the sync API: files an event names (a voicemail), fetched by id with HTTP ranges.

Theory of operation. A blob id is ``<area>/<file name>`` (``voicemail/<record_id>.vm``); each area is
one directory, and a file name must match a strict pattern (no separator, no leading dot), so an id can
never name a file outside its directory. A cloud that lost its connection resumes a download with
``Range: bytes=<first>-`` (RFC 9110 §14.2) and ``If-Range`` with the ETag it saw (§13.1.5): the ETag is
the quoted hex SHA-256 of the whole file, computed once per (path, size, mtime) and cached.

A blob lives until the event that names it is acknowledged: :func:`blob_paths` finds the files named by
the bodies of acknowledged ``ivr.voicemail`` events, and :meth:`BlobStore.delete` removes them. A crash
between the acknowledgement and the deletion leaves orphans that :meth:`BlobStore.sweep` removes at the
next start.

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
from typing import Any, Final

from appliance.sync.errors import BadRange, BadRequest, NotFound

log = logging.getLogger(__name__)

VOICEMAIL: Final = "voicemail"
_FILE_RE: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_AREA_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")
_RANGE_RE: Final = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
_HASH_CHUNK: Final = 1 << 20


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


def blob_paths(body: Mapping[str, Any]) -> list[Path]:
    """The files an event body names: ``blob.path`` of an ``ivr.voicemail`` body (appliance/ivr/records)."""
    blob = body.get("blob")
    if isinstance(blob, Mapping):
        path = blob.get("path")
        if isinstance(path, str) and path:
            return [Path(path)]
    return []


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
