"""The reference cloud client of the sync API (DESIGN.md §5.3, contract ``sync.cddl``): what the cloud
team starts from, and what the tests, the demo and the benchmark use. Also a command:
``python -m appliance.sync.client --url https://… --ca … --cert … --key … status|pull|push|…``.

One :class:`SyncClient` holds one aiohttp session: connections are kept alive between requests, TLS
presents the cloud's client certificate and verifies the appliance against the site CA. Every request of
the API is safe to repeat (reads; an acknowledgement at or below the current one is a replay; writing the
running version again is a replay), so a :class:`TransportError` may always be answered by retrying.

Decoding is built for draining a large backlog: a batch is decoded by cbor2 in one call and each event
becomes one small tuple (:class:`Event`), nothing else per event.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import cbor2

from appliance.durable import fsync_dir
from appliance.sync.client_puller import Puller, PullReport
from appliance.sync.client_store import ClientStore, ClientStoreError
from appliance.sync.client_types import (
    BlobIntegrityError,
    ClientError,
    Event,
    EventBatch,
    ProtocolError,
    SyncClientError,
    TransportError,
)

__all__ = [
    "BlobIntegrityError",
    "ClientError",
    "ClientStore",
    "ClientStoreError",
    "Event",
    "EventBatch",
    "ProtocolError",
    "PullReport",
    "Puller",
    "SyncClient",
    "SyncClientError",
    "TransportError",
    "decode_event_batch",
]

CBOR: Final = "application/cbor"
PREFIX: Final = "/sync/v1"
_CHUNK: Final = 256 * 1024
# What a broken connection or an unreachable appliance looks like from aiohttp: retryable.
_TRANSPORT_ERRORS: Final = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


def client_ssl_context(
    ca: str | os.PathLike[str], cert: str | os.PathLike[str], key: str | os.PathLike[str]
) -> ssl.SSLContext:
    """TLS for the cloud side: verify the appliance against the site CA, present the client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.fspath(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(os.fspath(cert), os.fspath(key))
    return context


class SyncClient:
    """A client of one appliance's sync API; use as ``async with SyncClient(url, ca=…, cert=…, key=…)``.

    ``base_url`` is ``https://host:port`` (``http://`` only for tests without TLS). ``timeout`` bounds each
    request; a long poll gets its ``wait`` on top."""

    def __init__(
        self,
        base_url: str,
        *,
        ca: str | os.PathLike[str] | None = None,
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        if ssl_context is None and self.base_url.startswith("https:"):
            if ca is None or cert is None or key is None:
                raise ValueError("an https URL needs ca, cert and key")
            ssl_context = client_ssl_context(ca, cert, key)
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else False
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SyncClient:
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=16, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), raise_for_status=False
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("SyncClient used outside 'async with'")
        return self._session

    # -- the endpoints -----------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``GET /health``: ``{status, mode, time}``."""
        return _as_map(await self._request("GET", "/health"))

    async def status(self) -> dict[str, Any]:
        """``GET /status``: site, mode, uplink, outbox, documents, certificate (sync.cddl ``status``)."""
        return _as_map(await self._request("GET", "/status"))

    async def events(self, after: int = 0, limit: int = 1000, wait: float = 0) -> EventBatch:
        """``GET /events``: up to ``limit`` events after seq ``after``; with ``wait`` > 0 the appliance holds
        the answer until an event is appended or ``wait`` seconds pass (then the batch is empty)."""
        params = {"after": str(after), "limit": str(limit), "wait": _number(wait)}
        payload = await self._request(
            "GET", "/events", params=params, seconds=self.timeout + wait, decode=False
        )
        return decode_event_batch(payload)

    async def ack(self, upto: int) -> dict[str, Any]:
        """``POST /ack``: acknowledge every event up to ``upto``; ``{acked_seq, pruned}``."""
        return _as_map(await self._request("POST", "/ack", body={"upto": upto}))

    async def list_documents(self) -> list[dict[str, Any]]:
        """``GET /config``: the document-info of every pushed document."""
        raw = _as_map(await self._request("GET", "/config"))
        documents = raw.get("documents")
        if not isinstance(documents, list):
            raise ProtocolError("document list without 'documents'")
        return documents

    async def get_document(self, kind: str, name: str) -> dict[str, Any] | None:
        """``GET /config/<kind>/<name>``: the running document, None when there is none."""
        try:
            return _as_map(await self._request("GET", _document_path(kind, name)))
        except ClientError as exc:
            if exc.status == 404 and exc.code == "not-found":
                return None
            raise

    async def put_document(
        self,
        kind: str,
        name: str,
        content: Any,
        replaces: int,
        version: int,
        confirm_within: int | None = None,
    ) -> dict[str, Any]:
        """``PUT /config/<kind>/<name>``: replace version ``replaces`` (0: a new document) by ``version``;
        with ``confirm_within`` the appliance reverts unless :meth:`confirm` follows in time."""
        body: dict[str, Any] = {"replaces": replaces, "version": version, "content": content}
        if confirm_within is not None:
            body["confirm_within"] = confirm_within
        return _as_map(await self._request("PUT", _document_path(kind, name), body=body))

    async def confirm(self, kind: str, name: str, version: int) -> dict[str, Any]:
        """``POST /config/<kind>/<name>/confirm``: keep a write made with ``confirm_within``."""
        path = _document_path(kind, name) + "/confirm"
        return _as_map(await self._request("POST", path, body={"version": version}))

    async def blob(self, blob_id: str, dest: str | os.PathLike[str]) -> int:
        """Download blob ``blob_id`` to ``dest``; returns its size.

        Resumable: the bytes arrive in ``<dest>.part`` (its ETag beside it in ``<dest>.etag``); a later
        call continues with ``Range`` + ``If-Range``, and starts over if the blob changed. The whole file
        must hash to the ETag (hex SHA-256) before it is renamed to ``dest``: ``dest`` exists only whole
        and verified. Raises :class:`BlobIntegrityError` (the partial file is discarded), ClientError
        (e.g. 404) or TransportError (the partial file is kept for the next call)."""
        return await self._blob(blob_id, Path(dest), restart=True)

    async def _blob(self, blob_id: str, target: Path, *, restart: bool) -> int:
        """:meth:`blob`; ``restart``: whether a partial file the appliance does not continue may be
        discarded and the download started over (once: an appliance that refuses a fresh download too is
        answered with an error, not a loop)."""
        part = target.with_name(target.name + ".part")
        tag_file = target.with_name(target.name + ".etag")
        url = self._url("/blobs/" + quote(blob_id, safe="/"))
        offset, etag = 0, None
        if part.exists() and tag_file.exists():
            offset, etag = part.stat().st_size, tag_file.read_text().strip()
        else:
            part.unlink(missing_ok=True)
        headers = {"Range": f"bytes={offset}-", "If-Range": etag} if offset and etag else {}
        try:
            # No bound on the whole download (a long recording over a slow uplink), only on each wait.
            limit = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
            async with self.session.get(url, headers=headers, ssl=self._ssl, timeout=limit) as resp:
                if resp.status == 416 and etag is not None and _hex_digest(part) == _strip_etag(etag):
                    return _finish_blob(part, tag_file, target)  # whole already: only the rename was lost
                if resp.status == 416 and restart:
                    return await self._start_over(blob_id, target, part, tag_file)
                if resp.status >= 400:
                    raise _error_from(resp.status, await resp.read(), url)
                etag = resp.headers.get("ETag")
                if etag is None:
                    raise ProtocolError(f"blob {blob_id} without an ETag")
                if resp.status == 206 and _range_start(resp.headers.get("Content-Range")) != offset:
                    if not restart:
                        raise ProtocolError(f"blob {blob_id}: a range that was not asked for")
                    return await self._start_over(blob_id, target, part, tag_file)
                mode = "ab" if resp.status == 206 else "wb"
                if mode == "wb":  # 200: the whole blob (it changed, or no partial download)
                    tag_file.write_text(etag)
                with part.open(mode) as file:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        file.write(chunk)
                    file.flush()
                    os.fsync(file.fileno())
        except _TRANSPORT_ERRORS as exc:
            raise TransportError(f"blob {blob_id}: {exc!r}") from exc
        if _hex_digest(part) != _strip_etag(etag):
            _discard(part, tag_file)
            raise BlobIntegrityError(f"blob {blob_id} does not match its ETag {etag}")
        return _finish_blob(part, tag_file, target)

    async def _start_over(self, blob_id: str, target: Path, part: Path, tag_file: Path) -> int:
        _discard(part, tag_file)
        return await self._blob(blob_id, target, restart=False)

    # -- plumbing ---------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + PREFIX + path

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        seconds: float | None = None,
        decode: bool = True,
    ) -> Any:
        """The decoded CBOR answer (``decode=False``: its bytes); raises the errors of the module."""
        url = self._url(path)
        headers = {"Accept": CBOR}
        data = None
        if body is not None:
            data = cbor2.dumps(body)
            headers["Content-Type"] = CBOR
        limit = aiohttp.ClientTimeout(total=seconds if seconds is not None else self.timeout)
        try:
            async with self.session.request(
                method, url, params=params, data=data, headers=headers, ssl=self._ssl, timeout=limit
            ) as resp:
                payload = await resp.read()
                status = resp.status
        except _TRANSPORT_ERRORS as exc:
            raise TransportError(f"{method} {url}: {exc!r}") from exc
        if status >= 400:
            raise _error_from(status, payload, url)
        return _decode(payload, url) if decode else payload


def _decode(payload: bytes, where: str) -> Any:
    try:
        return cbor2.loads(payload)
    except Exception as exc:  # whatever the bytes make the decoder raise, it is the peer's fault
        raise ProtocolError(f"{where}: the answer is not CBOR ({exc})") from None


def decode_event_batch(payload: bytes) -> EventBatch:
    """The sync.cddl ``event-batch`` in ``payload`` (total: an :class:`EventBatch` or ProtocolError).

    One cbor2 call for the whole batch, then one tuple per event; the checks that every caller relies
    on (seqs consecutive integers, ids and types text, bodies maps) are one pass of type tests."""
    raw = _decode(payload, "event batch")
    try:
        events = [
            Event(e["seq"], e["id"], e["type"], e["hlc"], e["created"], e["body"]) for e in raw["events"]
        ]
        batch = EventBatch(events, raw["first_seq"], raw["last_seq"], raw["acked_seq"], payload)
    except (KeyError, TypeError, IndexError) as exc:
        raise ProtocolError(f"malformed event batch: {exc!r}") from None
    if not all(type(v) is int and v >= 0 for v in (batch.first_seq, batch.last_seq, batch.acked_seq)):
        raise ProtocolError("malformed event batch: first_seq, last_seq and acked_seq must be uints")
    if events:
        first = events[0].seq
        if type(first) is not int or not all(
            e.seq == first + i
            and type(e.id) is str
            and type(e.type) is str
            and type(e.hlc) is int
            and type(e.created) in (float, int)
            and type(e.body) is dict
            for i, e in enumerate(events)
        ):
            raise ProtocolError("malformed event batch: an event is out of order or of the wrong shape")
    return batch


def _document_path(kind: str, name: str) -> str:
    return f"/config/{quote(kind, safe='')}/{quote(name, safe='/')}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _as_map(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"expected a CBOR map, got {type(value).__name__}")
    return value


def _error_from(status: int, payload: bytes, url: str) -> SyncClientError:
    """The sync.cddl ``error`` body of a failed request as a ClientError (503 included: the caller may
    retry it)."""
    try:
        body = cbor2.loads(payload) if payload else {}
    except (cbor2.CBORDecodeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("error") if isinstance(body.get("error"), str) else "http-" + str(status)
    message = (
        body.get("message")
        if isinstance(body.get("message"), str)
        else payload[:200].decode("utf-8", "replace")
    )
    path = body.get("path") if isinstance(body.get("path"), str) else None
    current = body.get("current_version") if isinstance(body.get("current_version"), int) else None
    return ClientError(status, str(code), str(message), path=path, current_version=current, url=url)


def _strip_etag(etag: str) -> str:
    return etag.removeprefix("W/").strip('"').lower()


def _range_start(content_range: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes <first>-<last>/<size>`` (RFC 9110 §14.4)."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    first = content_range[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def _hex_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _discard(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _finish_blob(part: Path, tag_file: Path, target: Path) -> int:
    # The ETag file goes first: a crash between the two leaves a partial file without it, which the next
    # call starts over, rather than an ETag file nothing ever removes beside a finished blob.
    tag_file.unlink(missing_ok=True)
    os.replace(part, target)
    fsync_dir(target.parent)
    return target.stat().st_size


if __name__ == "__main__":
    import sys

    from appliance.sync.client_cli import main

    sys.exit(main())
