"""A probe round: SIP OPTIONS to the cloud trunk and, when configured, the HTTPS health check."""

from __future__ import annotations

from appliance.core import ApplianceCore
from appliance.sip.builder import make_response
from appliance.sip.message import Request, parse_message
from appliance.sip.uri import parse_sip_uri
from appliance.wan.mode import Mode
from tests.unit.harness import CLOUD, Harness
from tests.unit.test_wan_mode_paths import make as make_mode


class Rig:
    """The appliance core with a fresh mode machine on a harness's SIP context; the HTTPS part is faked."""

    def __init__(self, *, https: bool) -> None:
        h = Harness()
        # the harness's own core probed already: its OPTIONS (and their retransmissions) are not the rig's
        self.seen = {m.call_id for m in h.take(CLOUD)}
        self.now = 0.0
        self.mode = make_mode(probe_interval=5.0, probe_failures=2)
        self.https_started: list[int] = []
        self.outcomes: list[tuple[int, bool, str]] = []
        self.mode.set_probe_observer(lambda pid, ok, reason, now: self.outcomes.append((pid, ok, reason)))
        self.core = ApplianceCore(
            ctx=h.ctx,
            b2bua=h.b2bua,
            mode=self.mode,
            registrar=None,
            cloud_trunk=parse_sip_uri(h.cloud),
            https_probe=self.https_started.append if https else None,
        )
        self.core.start(self.now)

    def options(self) -> list[Request]:
        """OPTIONS sent since the last call, retransmissions left out."""
        out = []
        for peer, data in self.core.datagrams_to_send():
            message = parse_message(data)
            if peer != CLOUD or not isinstance(message, Request) or message.method != "OPTIONS":
                continue
            if message.call_id not in self.seen:
                self.seen.add(message.call_id)
                out.append(message)
        return out

    def answer(self, request: Request, status: int = 200) -> None:
        self.core.receive(make_response(request, status, to_tag="c0").to_bytes(), CLOUD, self.now)

    def at(self, now: float) -> None:
        self.now = now
        self.core.handle_timer(now)


def test_without_https_the_sip_answer_is_the_round() -> None:
    rig = Rig(https=False)
    (options,) = rig.options()
    assert rig.https_started == []
    rig.answer(options)
    assert rig.mode.mode is Mode.ONLINE and rig.outcomes == [(1, True, "answered")]


def test_round_is_answered_when_both_parts_answered_in_either_order() -> None:
    rig = Rig(https=True)
    (options,) = rig.options()
    assert rig.https_started == [1]
    rig.answer(options)
    assert rig.mode.mode is Mode.SURVIVABLE and rig.outcomes == []  # the HTTPS part still runs
    rig.core.https_probe_result(1, True, "", 0.1)
    assert rig.mode.mode is Mode.ONLINE and rig.outcomes == [(1, True, "answered")]

    rig = Rig(https=True)
    (options,) = rig.options()
    rig.core.https_probe_result(1, True, "", 0.1)
    assert rig.outcomes == []
    rig.answer(options)
    assert rig.outcomes == [(1, True, "answered")]


def test_round_fails_at_the_first_failure() -> None:
    rig = Rig(https=True)
    (options,) = rig.options()
    rig.core.https_probe_result(1, False, "HTTP 500", 0.1)
    assert rig.outcomes == [(1, False, "HTTP 500")]
    rig.answer(options)  # the SIP answer of a failed round changes nothing
    assert rig.outcomes == [(1, False, "HTTP 500")] and rig.mode.mode is Mode.SURVIVABLE

    rig = Rig(https=True)
    (options,) = rig.options()
    rig.answer(options, 503)
    assert rig.outcomes == [(1, False, "503 from the cloud")]
    rig.core.https_probe_result(1, True, "", 0.2)
    assert rig.outcomes == [(1, False, "503 from the cloud")]


def test_unanswered_https_part_times_the_round_out() -> None:
    rig = Rig(https=True)
    (options,) = rig.options()
    rig.answer(options)
    rig.at(2.0)
    assert rig.outcomes == [(1, False, "probe 1 unanswered after 2 s")]


def test_parts_of_an_older_round_are_dropped() -> None:
    rig = Rig(https=True)
    (first,) = rig.options()
    rig.mode.path_changed(0.5, "route moved")  # a new round supersedes the first
    rig.core.handle_timer(0.5)
    (second,) = rig.options()
    assert rig.https_started == [1, 2]
    rig.core.https_probe_result(1, True, "", 0.6)
    rig.answer(first)
    assert rig.outcomes == []
    rig.core.https_probe_result(2, True, "", 0.7)
    rig.answer(second)
    assert rig.outcomes == [(2, True, "answered")] and rig.mode.mode is Mode.ONLINE
