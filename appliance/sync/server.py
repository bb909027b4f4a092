"""The HTTP layer of the sync API: the routes of sync.cddl on aiohttp, every answer CBOR.

Theory of operation. :class:`SyncApi` holds the parts the API serves (the outbox, the document store,
blobs, the certificate in use, a ``status`` callable for mode and site) and builds the
:class:`aiohttp.web.Application`. A middleware turns every error into the ``error`` body of sync.cddl with
its status — a :class:`SyncError`, an error of the documents package, aiohttp's own 404/405/413, or an
unexpected exception (500 ``internal``, logged, never a traceback or an HTML page to the peer). Request
bodies are read only with ``Content-Type: application/cbor`` (415 otherwise) and only up to
``max_body`` bytes (413); :mod:`appliance.sync.codec` decodes them.

Acknowledgements are serialised: the files of the acknowledged blob-bearing events (voicemails and call
recordings, :data:`appliance.sync.blobs.BLOB_EVENTS`) are collected before the outbox prunes their events
and deleted after, so a blob is never gone while its event can still be read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, TypeVar

from aiohttp import web

from appliance.sync import codec
from appliance.sync.blobs import BLOB_EVENTS, BlobStore, if_range_matches, parse_range
from appliance.sync.errors import (
    AckBeyondLast,
    BadRange,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    SyncError,
    TooLarge,
    Unavailable,
    UnsupportedMediaType,
    error_body,
)

log = logging.getLogger(__name__)

CBOR: Final = "application/cbor"
PREFIX: Final = "/sync/v1"
DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
DECODE_INLINE: Final = 64 * 1024
MAX_SEQ: Final = 2**63 - 1  # SQLite's largest integer: no seq is ever above it
BLOB_CHUNK: Final = 256 * 1024
_RESPONSE_OF: Final = {
    404: NotFound("no such resource"),
    405: MethodNotAllowed("method not allowed here"),
    413: TooLarge("the request body is too large"),
}

_T = TypeVar("_T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OutboxApi(Protocol):
    """What the API uses of :class:`appliance.store.outbox.Outbox`."""

    async def read_raw_after(self, seq: int, limit: int) -> list[Any]: ...
    async def wait_for_append(self, after_seq: int, timeout: float) -> bool: ...  # noqa: ASYNC109
    async def acknowledge(self, upto_seq: int) -> int: ...
    async def stats(self) -> Any: ...


class DocumentsApi(Protocol):
    """What the API uses of :class:`appliance.sync.documents.store.DocumentStore`."""

    async def put(
        self,
        kind: str,
        name: str,
        replaces: int,
        version: int,
        content: Any,
        confirm_within: float | None,
        now: float,
    ) -> Any: ...
    async def confirm(self, kind: str, name: str, version: int, now: float) -> Any: ...
    async def get(self, kind: str, name: str) -> Any: ...
    async def list(self) -> list[Any]: ...


BlobEvents = Callable[[int, int], Awaitable[list[tuple[str, bytes]]]]
"""(after, upto) -> the type and stored body of each event of a :data:`BLOB_EVENTS` type with seq in
(after, upto], in seq order."""


async def read_blob_events(outbox: OutboxApi, after: int, upto: int) -> list[tuple[str, bytes]]:
    """:data:`BlobEvents` read through the outbox's raw feed (every event of the range is read; a caller
    with the outbox's database queries only the rows of the blob-bearing types instead)."""
    events: list[tuple[str, bytes]] = []
    while after < upto:
        batch = await outbox.read_raw_after(after, MAX_LIMIT)
        if not batch:
            break
        events += [(e.type, e.body) for e in batch if e.type in BLOB_EVENTS and e.seq <= upto]
        after = batch[-1].seq
    return events


def cbor_response(body: Mapping[str, Any] | bytes, status: int = 200) -> web.Response:
    data = body if isinstance(body, bytes) else codec.encode(body)
    return web.Response(body=data, status=status, content_type=CBOR)


@web.middleware
async def errors_as_cbor(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a CBOR ``error`` body (sync.cddl) with its status."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        mapped = _RESPONSE_OF.get(exc.status, BadRequest(exc.reason))
        response = cbor_response(mapped.to_body(), exc.status)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except BadRange as exc:
        response = cbor_response(exc.to_body(), exc.status)
        response.headers["Content-Range"] = f"bytes */{exc.size}"
        return response
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        status, body = error_body(exc)
        if status >= 500 and not isinstance(exc, SyncError):
            log.exception("sync API %s %s failed", request.method, request.path)
        return cbor_response(body, status)


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or not low <= int(text) <= high:
        raise BadRequest(f"query parameter {name} must be an integer from {low} to {high}, not {text[:40]!r}")
    return int(text)


def _query_seconds(request: web.Request, name: str, high: float) -> float:
    text = request.query.get(name)
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise BadRequest(f"query parameter {name} must be seconds from 0 to {high:g}, not {text[:40]!r}")
    return min(value, high)  # longer waits are cut to the longest this appliance holds a request


class SyncApi:
    """The routes of sync.cddl over the appliance's parts.

    ``status`` gives site, serial, firmware, mode, mode_since (POSIX seconds or utc-time), forced and
    uplink; ``certificate`` the ``certificate-info`` of the certificate presented now; ``blob_events``
    the types and stored bodies of the blob-bearing events with seq in (after, upto] (None: read through
    the outbox); ``wall`` the wall clock and ``monotonic`` the clock of document confirmation deadlines.
    """

    def __init__(
        self,
        *,
        outbox: OutboxApi,
        documents: DocumentsApi | None,
        blobs: BlobStore,
        status: Callable[[], Mapping[str, Any]],
        certificate: Callable[[], Mapping[str, Any]],
        max_body: int,
        max_wait: float,
        wall: Callable[[], float],
        monotonic: Callable[[], float],
        closing: asyncio.Event,
        blob_events: BlobEvents | None = None,
        documents_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._outbox = outbox
        self._documents = documents
        self._blobs = blobs
        self._status = status
        self._certificate = certificate
        self._max_body = max_body
        self._max_wait = max_wait
        self._wall = wall
        self._monotonic = monotonic
        self._closing = closing
        self._blob_events = blob_events or self._blob_events_from_outbox
        self._documents_changed = documents_changed
        self._ack_lock = asyncio.Lock()

    def application(self) -> web.Application:
        # client_max_size: aiohttp refuses a larger body with 413 while reading it.
        app = web.Application(middlewares=[errors_as_cbor], client_max_size=self._max_body)
        app.router.add_get(f"{PREFIX}/health", self.health, allow_head=False)
        app.router.add_get(f"{PREFIX}/status", self.status, allow_head=False)
        app.router.add_get(f"{PREFIX}/events", self.events, allow_head=False)
        app.router.add_post(f"{PREFIX}/ack", self.ack)
        app.router.add_get(f"{PREFIX}/blobs/{{blob_id:.+}}", self.blob)  # HEAD too
        app.router.add_get(f"{PREFIX}/config", self.list_documents, allow_head=False)
        app.router.add_post(f"{PREFIX}/config/{{kind}}/{{name:.+}}/confirm", self.confirm_document)
        app.router.add_get(f"{PREFIX}/config/{{kind}}/{{name:.+}}", self.get_document, allow_head=False)
        app.router.add_put(f"{PREFIX}/config/{{kind}}/{{name:.+}}", self.put_document)
        return app

    # --- bodies -------------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> bytes:
        if request.content_type != CBOR:
            raise UnsupportedMediaType(f"the body must be {CBOR}, not {request.content_type[:80]!r}")
        if request.content_length is not None and request.content_length > self._max_body:
            raise TooLarge(f"the body is {request.content_length} bytes, over {self._max_body}")
        return await request.read()  # over client_max_size: HTTPRequestEntityTooLarge, 413

    async def _decode(self, request: web.Request, decode: Callable[..., _T]) -> _T:
        """The body decoded by ``decode``; a large one in a thread, as checking a body of a million
        small items takes a second that the event loop must not lose."""
        data = await self._body(request)
        if len(data) <= DECODE_INLINE:
            return decode(data, max_size=self._max_body)
        return await asyncio.to_thread(decode, data, max_size=self._max_body)

    # --- status -------------------------------------------------------------------------------------------

    def _mode(self) -> Mapping[str, Any]:
        return self._status()

    async def health(self, request: web.Request) -> web.Response:
        return cbor_response(
            {"status": "ok", "mode": self._mode()["mode"], "time": codec.utc_time(self._wall())}
        )

    async def status(self, request: web.Request) -> web.Response:
        parts = dict(self._mode())
        since = parts.get("mode_since")
        if isinstance(since, int | float):
            parts["mode_since"] = codec.utc_time(since)
        documents = await self._documents.list() if self._documents is not None else []
        body = {
            "site": parts.get("site", ""),
            "serial": parts.get("serial", ""),
            "firmware": parts.get("firmware", ""),
            "mode": parts["mode"],
            "mode_since": parts.get("mode_since") or codec.utc_time(self._wall()),
            "forced": parts.get("forced"),
            "uplink": parts.get("uplink"),
            "outbox": _outbox_status(await self._outbox.stats()),
            "documents": [d.as_message() for d in documents],
            "certificate": dict(self._certificate()),
            "time": codec.utc_time(self._wall()),
        }
        return cbor_response(body)

    # --- events -------------------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        after = _query_int(request, "after", 0, 0, MAX_SEQ)
        limit = _query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        wait = _query_seconds(request, "wait", self._max_wait)
        events = await self._outbox.read_raw_after(after, limit)
        if (
            not events
            and wait > 0
            and not self._closing.is_set()
            and await self._wait_for_append(after, wait)
        ):
            events = await self._outbox.read_raw_after(after, limit)
        stats = await self._outbox.stats()
        body = codec.encode_event_batch(
            events, first_seq=stats.first_seq, last_seq=stats.last_seq, acked_seq=stats.acked_seq
        )
        return cbor_response(body)

    async def _wait_for_append(self, after: int, wait: float) -> bool:
        """Wait for an event after ``after``, at most ``wait`` s, and no longer than until shutdown."""
        appended = asyncio.ensure_future(self._outbox.wait_for_append(after, wait))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({appended, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (appended, closing):
                task.cancel()
            await asyncio.gather(appended, closing, return_exceptions=True)
        return (
            appended.done()
            and not appended.cancelled()
            and appended.exception() is None
            and appended.result()
        )

    # --- acknowledgements ---------------------------------------------------------------------------------

    async def ack(self, request: web.Request) -> web.Response:
        upto = (await self._decode(request, codec.decode_ack)).upto
        async with self._ack_lock:
            before = await self._outbox.stats()
            if upto > before.last_seq:
                raise AckBeyondLast(
                    f"cannot acknowledge seq {upto}: the last seq issued is {before.last_seq}"
                )
            if upto <= before.acked_seq:  # a replay: nothing changes
                return cbor_response({"acked_seq": before.acked_seq, "pruned": 0})
            files = self._blobs.files_named(await self._blob_events(before.acked_seq, upto))
            pruned = await self._outbox.acknowledge(upto)
            if files:
                await asyncio.to_thread(self._blobs.delete, files)
            after = await self._outbox.stats()
        return cbor_response({"acked_seq": after.acked_seq, "pruned": pruned})

    async def _blob_events_from_outbox(self, after: int, upto: int) -> list[tuple[str, bytes]]:
        return await read_blob_events(self._outbox, after, upto)

    # --- blobs --------------------------------------------------------------------------------------------

    async def blob(self, request: web.Request) -> web.StreamResponse:
        blob_id = request.match_info["blob_id"]
        blob = await asyncio.to_thread(self._blobs.open, blob_id)
        headers = {"ETag": blob.etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        byte_range = None
        range_header = request.headers.get("Range")
        if range_header is not None and if_range_matches(request.headers.get("If-Range"), blob.etag):
            byte_range = parse_range(range_header, blob.size)
        first, length, status = 0, blob.size, 200
        if byte_range is not None:
            first, length, status = byte_range.first, byte_range.length, 206
            headers["Content-Range"] = byte_range.content_range()
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = length
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        sent = 0
        try:
            while sent < length:
                chunk = await asyncio.to_thread(
                    self._blobs.read, blob, first + sent, min(BLOB_CHUNK, length - sent)
                )
                if not chunk:  # the file shrank or went: end short; the client sees a short body, retries
                    break
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
        except (ConnectionError, FileNotFoundError) as exc:
            # The headers are sent, so no error body can follow: the cloud resumes with a Range.
            log.info("blob %s: transfer ended after %d of %d bytes: %s", blob_id, sent, length, exc)
        return response

    # --- documents ----------------------------------------------------------------------------------------

    def _store(self) -> DocumentsApi:
        if self._documents is None:
            raise Unavailable("configuration documents are not served by this appliance")
        return self._documents

    async def list_documents(self, request: web.Request) -> web.Response:
        return cbor_response({"documents": [d.as_message() for d in await self._store().list()]})

    async def get_document(self, request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        document = await self._store().get(kind, name)
        if document is None:
            raise NotFound(f"no document {kind}/{name}")
        return cbor_response(document.as_message())

    async def put_document(self, request: web.Request) -> web.Response:
        store = self._store()
        write = await self._decode(request, codec.decode_config_write)
        kind, name = request.match_info["kind"], request.match_info["name"]
        try:
            result = await store.put(
                kind,
                name,
                write.replaces,
                write.version,
                write.content,
                write.confirm_within,
                self._monotonic(),
            )
        finally:
            self._documents_changed()
        return cbor_response(result.as_message())

    async def confirm_document(self, request: web.Request) -> web.Response:
        store = self._store()
        version = (await self._decode(request, codec.decode_confirm)).version
        kind, name = request.match_info["kind"], request.match_info["name"]
        try:
            result = await store.confirm(kind, name, version, self._monotonic())
        finally:
            self._documents_changed()
        return cbor_response(result.as_message())


def _outbox_status(stats: Any) -> dict[str, Any]:
    return {
        "first_seq": stats.first_seq,
        "last_seq": stats.last_seq,
        "acked_seq": stats.acked_seq,
        "pending": stats.pending,
        "bytes": stats.bytes,
        "quota_bytes": stats.quota_bytes or 0,
        "pressure": stats.pressure,
    }
