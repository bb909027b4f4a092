"""Blob ids, HTTP ranges (RFC 9110 §14) and If-Range (§13.1.5) of the sync API, without a server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.sync.blobs import BLOB_EVENTS, BlobStore, ByteRange, if_range_matches, parse_range
from appliance.sync.errors import BadRange, BadRequest, NotFound
from tests.sync_schema import examples


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, ByteRange(0, 9, 100)),
        ("bytes=90-", 100, ByteRange(90, 99, 100)),
        ("bytes=90-1000", 100, ByteRange(90, 99, 100)),
        ("bytes=-10", 100, ByteRange(90, 99, 100)),
        ("bytes=-1000", 100, ByteRange(0, 99, 100)),
        ("bytes=99-99", 100, ByteRange(99, 99, 100)),
        ("bytes=5-4", 100, None),  # invalid: ignored
        ("bytes=-", 100, None),
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole blob
        ("items=0-1", 100, None),
        ("bytes=a-b", 100, None),
    ],
)
def test_ranges(header: str, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0)],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(BadRange) as caught:
        parse_range(header, size)
    assert caught.value.status == 416 and caught.value.size == size


@given(st.text(max_size=40), st.integers(0, 10_000))
@examples(300)
def test_any_header_gives_a_range_inside_the_blob_none_or_416(header: str, size: int) -> None:
    try:
        got = parse_range(header, size)
    except BadRange:
        return
    if got is not None:
        assert 0 <= got.first <= got.last < size and got.length >= 1


@given(st.integers(0, 10_000), st.integers(0, 10_000) | st.none(), st.integers(1, 10_000))
def test_range_forms_agree_with_slicing(first: int, last: int | None, size: int) -> None:
    header = f"bytes={first}-{'' if last is None else last}"
    data = bytes(size)
    try:
        got = parse_range(header, size)
    except BadRange:
        assert first >= size
        return
    if got is None:
        assert last is not None and last < first
        return
    stop = size if last is None else last + 1
    assert data[got.first : got.last + 1] == data[first:stop]


def test_if_range() -> None:
    assert if_range_matches(None, '"ab"')
    assert if_range_matches('"ab"', '"ab"')
    assert not if_range_matches('W/"ab"', '"ab"')
    assert not if_range_matches("Tue, 24 Nov 2026 21:00:00 GMT", '"ab"')


def test_ids_resolve_only_inside_their_area(tmp_path: Path) -> None:
    store = BlobStore({"voicemail": tmp_path})
    assert store.resolve("voicemail/r1.vm") == tmp_path.resolve() / "r1.vm"
    for bad in (
        "voicemail/../x",
        "voicemail/.x",
        "voicemail/a/b",
        "voicemail/",
        "voicemail",
        "/etc/passwd",
        "voicemail/" + "a" * 200,
        "voicemail/a\x00b",
    ):
        with pytest.raises(BadRequest):
            store.resolve(bad)
    with pytest.raises(NotFound):
        store.resolve("recordings/r1.vm")
    with pytest.raises(NotFound):
        store.open("voicemail/missing.vm")


def test_etag_is_cached_by_size_and_mtime(tmp_path: Path) -> None:
    store = BlobStore({"voicemail": tmp_path})
    path = tmp_path / "r.vm"
    path.write_bytes(b"one")
    first = store.open("voicemail/r.vm")
    assert first.etag == '"' + hashlib.sha256(b"one").hexdigest() + '"' and first.size == 3
    path.write_bytes(b"two!")
    os.utime(path, ns=(1, 1))
    assert store.open("voicemail/r.vm").etag == '"' + hashlib.sha256(b"two!").hexdigest() + '"'
    assert store.read(store.open("voicemail/r.vm"), 1, 2) == b"wo"


def test_delete_only_inside_the_areas(tmp_path: Path) -> None:
    area = tmp_path / "vm"
    area.mkdir()
    (area / "a.vm").write_bytes(b"a")
    (tmp_path / "outside").write_bytes(b"o")
    store = BlobStore({"voicemail": area})
    assert store.delete([area / "a.vm", tmp_path / "outside", area / "gone.vm"]) == 1
    assert (tmp_path / "outside").exists()


def test_files_named_by_blob_bearing_events(tmp_path: Path) -> None:
    store = BlobStore({"voicemail": tmp_path / "vm", "recording": tmp_path / "rec"})
    events = [
        ("ivr.voicemail", cbor2.dumps({"blob": {"path": "/s/voicemail/r.vm"}})),
        ("call.recording", cbor2.dumps({"path": "/x/c1.rec", "blob_id": "recording/c1.rec"})),
        ("call.record", cbor2.dumps({"blob_id": "recording/not-a-blob.rec"})),  # not in the table
    ]
    assert store.files_named(events) == [Path("/s/voicemail/r.vm"), (tmp_path / "rec" / "c1.rec").resolve()]


@pytest.mark.parametrize(
    ("event_type", "body"),
    [
        ("ivr.voicemail", {"blob": "x"}),
        ("ivr.voicemail", {}),
        ("ivr.voicemail", {"blob": {"path": 1}}),
        ("ivr.voicemail", {"blob": {"path": ""}}),
        ("ivr.voicemail", ["not", "a", "map"]),
        ("call.recording", {"path": "/x/c1.rec"}),  # blob_id is optional (records.cddl)
        ("call.recording", {"blob_id": "voicemail/r.vm"}),  # another area than the type's
        ("call.recording", {"blob_id": "recording/../r.vm"}),
        ("call.recording", {"blob_id": "recording"}),
        ("call.recording", {"blob_id": 7}),
    ],
)
def test_bodies_that_name_no_file(tmp_path: Path, event_type: str, body: object) -> None:
    store = BlobStore({"voicemail": tmp_path / "vm", "recording": tmp_path / "rec"})
    assert store.files_named([(event_type, cbor2.dumps(body))]) == []
    assert store.files_named([(event_type, b"\xff\x00")]) == []  # not CBOR


def test_recording_ids_name_nothing_without_a_recording_area(tmp_path: Path) -> None:
    store = BlobStore({"voicemail": tmp_path})
    assert store.files_named([("call.recording", cbor2.dumps({"blob_id": "recording/c1.rec"}))]) == []
    assert store.swept_areas() == ["voicemail"]


def test_swept_areas_are_those_of_the_table(tmp_path: Path) -> None:
    store = BlobStore({"voicemail": tmp_path / "a", "recording": tmp_path / "b", "prompts": tmp_path / "c"})
    assert sorted(store.swept_areas()) == sorted({f.area for f in BLOB_EVENTS.values()})
    assert "prompts" not in store.swept_areas()
