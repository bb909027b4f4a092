"""The pull loop against errors of the appliance or of a proxy in front of it: 5xx (but 501/505), 408 and
429 are retried with the back-off and lose no position, every event still stored once; any other 4xx ends
the loop at once. Runs against the in-memory contract appliance of ``test_sync_client``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from appliance.sync.client import ClientError, ClientStore, Puller
from appliance.sync.client_puller import retryable
from appliance.sync.client_types import ProtocolError, TransportError
from tests.unit.test_sync_client import Site, fill, site

__all__ = ["site"]  # the fixture, used by name


class Sleeps:
    """The injected back-off sleep: records the delays, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def retries_logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, object, object, object]]:
    return [
        (r.levelno, r.ctx["status"], r.ctx["code"], r.ctx["after_seq"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "appliance.sync.client_puller" and hasattr(r, "ctx")
    ]


@pytest.mark.parametrize("path", ["/events", "/ack"])
async def test_a_500_then_success_keeps_every_event_once(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    await fill(site.server, 12)
    site.server.fail_next, site.server.fail_status, site.server.fail_path = 1, 500, path
    sleep = Sleeps()
    caplog.set_level(logging.INFO, logger="appliance.sync.client_puller")
    with ClientStore.open(tmp_path / "events.db") as store:
        async with site.client() as client:
            puller = Puller(client, store, wait=0, sleep=sleep)
            assert await puller.run() == 12
        assert [e.seq for e in store.iter_events()] == list(range(1, 13))
    assert sleep.delays == [0.1] and puller.retries == 1
    assert site.server.acked == 12 and site.server.acks == [12]
    # A failed read retries from 0; a failed acknowledgement from the 12 already stored.
    assert retries_logged(caplog) == [(logging.WARNING, 500, "internal", 0 if path == "/events" else 12)]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
async def test_transient_statuses_back_off_and_keep_the_position(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    await fill(site.server, 25)
    sleep = Sleeps()
    caplog.set_level(logging.INFO, logger="appliance.sync.client_puller")
    with ClientStore.open(tmp_path / "events.db") as store:
        async with site.client() as client:
            puller = Puller(client, store, limit=10, wait=0, sleep=sleep)
            await puller.pull_once()  # 1..10 stored and acknowledged
            site.server.fail_next, site.server.fail_status, site.server.fail_path = 3, status, "/events"
            assert await puller.run() == 15
        assert [e.seq for e in store.iter_events()] == list(range(1, 26))
    assert sleep.delays == [0.1, 0.2, 0.4]
    assert site.server.acked == 25
    # A proxy's text body has no sync.cddl code: the client names it after the status.
    code = {500: "internal", 503: "unavailable"}.get(status, f"http-{status}")
    level = logging.INFO if status == 503 else logging.WARNING
    assert retries_logged(caplog) == [(level, status, code, 10)] * 3


@pytest.mark.parametrize("status", [400, 403, 404, 409, 501, 505])
async def test_other_errors_end_the_loop_without_retrying(site: Site, tmp_path: Path, status: int) -> None:
    await fill(site.server, 5)
    site.server.fail_next, site.server.fail_status = 1, status
    sleep = Sleeps()
    with ClientStore.open(tmp_path / "events.db") as store:
        async with site.client() as client:
            with pytest.raises(ClientError) as info:
                await Puller(client, store, wait=0, sleep=sleep).run()
        assert store.last_seq == 0
    assert info.value.status == status and sleep.delays == []
    assert site.server.acked == 0


def test_retryable_table() -> None:
    def error(status: int) -> ClientError:
        return ClientError(status, f"http-{status}", "")

    assert retryable(TransportError("connection reset"))
    assert not retryable(ProtocolError("not CBOR"))
    retried = [s for s in range(400, 600) if retryable(error(s))]
    assert retried == [408, 429, 500, 502, 503, 504, *range(506, 600)]
