"""Hostile bodies against the running sync API: random bytes and mutated valid bodies to POST /ack and
PUT /config always get a 4xx CBOR error body, never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.sync_schema import examples, validate
from tests.sync_server import CBOR, Site, running_site

VALID = [
    ("POST", "ack", cbor2.dumps({"upto": 0})),
    (
        "PUT",
        "config/routing/default",
        cbor2.dumps(
            {"replaces": 0, "version": 1, "content": {"routes": [{"match": "*", "destinations": ["cloud"]}]}}
        ),
    ),
    (
        "PUT",
        "config/prompt/de/x",
        cbor2.dumps({"replaces": 0, "version": 1, "content": b"\xd5" * 16, "confirm_within": 5}),
    ),
    ("POST", "config/routing/default/confirm", cbor2.dumps({"version": 1})),
]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.AbstractEventLoop, Site]]:
    loop = asyncio.new_event_loop()
    manager = running_site(Path(tmp_path_factory.mktemp("property")), max_body=2048)
    site = loop.run_until_complete(manager.__aenter__())
    # An event after seq 0 (never acknowledged: the ack bodies here are upto 0 or invalid), so that no
    # events query is held as a long poll.
    loop.run_until_complete(site.outbox.append("mode.changed", {"mode": "online"}))
    try:
        yield loop, site
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()


def _post(running: tuple[asyncio.AbstractEventLoop, Site], method: str, path: str, data: bytes) -> None:
    loop, site = running

    async def call() -> tuple[int, bytes, str]:
        async with site.session.request(
            method, site.url(path), data=data, headers={"Content-Type": CBOR}
        ) as response:
            return response.status, await response.read(), response.content_type

    status, raw, content_type = loop.run_until_complete(call())
    assert content_type == CBOR
    if status < 400:  # a mutation can make a valid body: then it is answered as one
        return
    assert 400 <= status < 500, (status, raw[:200])
    validate("error", raw)


@given(st.sampled_from(VALID), st.binary(max_size=300))
@examples(60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_bytes_get_a_cbor_error(
    running: tuple[asyncio.AbstractEventLoop, Site], target: tuple[str, str, bytes], data: bytes
) -> None:
    method, path, _ = target
    _post(running, method, path, data)


@given(st.sampled_from(VALID), st.data())
@examples(60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mutated_valid_bodies_get_a_cbor_error_or_an_answer(
    running: tuple[asyncio.AbstractEventLoop, Site], target: tuple[str, str, bytes], data: st.DataObject
) -> None:
    method, path, body = target
    mutated = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if action == "flip" and mutated:
            mutated[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del mutated[at:]
        else:
            mutated[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    _post(running, method, path, bytes(mutated))


@given(st.sampled_from(["after", "limit", "wait"]), st.text(max_size=25))
@examples(60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_events_query_is_answered_or_refused_with_400(
    running: tuple[asyncio.AbstractEventLoop, Site], name: str, value: str
) -> None:
    loop, site = running

    async def call() -> tuple[int, bytes]:
        stats = await site.outbox.stats()
        if stats.pending == 0:  # a mutated ack acknowledged everything: never hold a long poll here
            await site.outbox.append("mode.changed", {"mode": "online"})
        url = site.url("events")
        async with site.session.get(
            url, params={name: value, "limit": "1"} if name != "limit" else {name: value}
        ) as r:
            return r.status, await r.read()

    status, raw = loop.run_until_complete(call())
    if status == 200:
        validate("event-batch", raw)
    else:
        assert status == 400, (status, raw[:200])
        validate("error", raw)
