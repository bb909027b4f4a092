"""The appliance's simulated E1/PRI span with a carrier on it (issue 6, "Shown by").

The carrier is :class:`appliance.pri.farend.FarEnd`: the appliance's own LAPD and Q.931, network side, on
the span's sockets (DESIGN.md §5.2), with real 20 ms A-law frames on the B-channels. The appliance runs as
a real process with no cloud configured (SURVIVABLE, DESIGN.md §5.1), so every PRI call goes to the
default IVR flow.

1. The far end connects; the D-channel establishes (SABME/UA) and the metrics say so.
2. Thirty calls at once, each from its own number: every channel carries the greeting; each caller
   dials 1 1 1 as in-band DTMF (ITU-T Q.23 tones in the B-channel audio, no signalling): menu 1 (a
   callback), 1 (the number it called from), 1 (the first time offered). That the IVR understood the
   tones is seen in what it did: thirty ``ivr.callback`` requests in the outbox, one per calling number,
   and each session's record with the keys "111". The IVR confirms and hangs up each call (cause 16).
3. With calls up, the far end vanishes (its sockets closed: loss of signal) and forgets them, as a switch
   that restarts. The span goes into alarm (LOS in the metrics, ``span.alarm`` raised in the outbox) and
   the D-channel is reported down. The appliance keeps its active calls for T309 (90 s, Q.931 §5.8.9).
4. The far end returns: the alarm clears (``span.alarm`` cleared), LAPD re-establishes by itself, the
   appliance asks after its calls (STATUS ENQUIRY), learns the far end has none and releases them
   (§5.8.11), and a new call is answered with the greeting. The far end's trace of the whole D-channel
   decodes in Wireshark without an error.

Wall time: about 20 s (the thirty IVR calls take 12 s of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.pri.farend import CallScript, FarEnd
from appliance.pri.q931_model import TypeOfNumber
from tests.system.pri_helpers import (
    appliance_with_span,
    eventually,
    far_end_for,
    outbox_events,
    span_metric,
    wireshark_errors,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

CALLS = 30
IVR_SCRIPT = CallScript(
    called="100",
    calling_type=TypeOfNumber.INTERNATIONAL,
    digits="111",  # menu 1: callback; 1: the number I call from; 1: the first time offered
    digits_after=6.0,  # once the greeting (4.5 s, keys discarded) is over: the menu takes the first key
    timeout=40,
)
GREETING_FRAMES = 25  # half a second of sound, at the least, on every channel


def caller(i: int) -> str:
    return f"49301234{i:04d}"  # Berlin numbers, sent as international (Q.931 §4.5.10): +49 30 1234 nnnn


async def test_thirty_ivr_calls_then_the_far_end_vanishes_and_returns(tmp_path: Path) -> None:
    async with appliance_with_span(tmp_path) as app, contextlib.AsyncExitStack() as stack:
        trace = stack.enter_context((tmp_path / "farend-d.pcap").open("wb"))
        far = far_end_for(app, trace=trace, dtmf=False)
        stack.push_async_callback(far.close)

        # 1. The D-channel.
        await far.start(within=10)
        await eventually(
            lambda: span_metric(app, "appliance_pri_dchannel_up") == 1, within=5, what="D-channel up"
        )

        # 2. Thirty callers in the IVR, keys in the audio.
        scripts = [replace(IVR_SCRIPT, calling=caller(i)) for i in range(CALLS)]
        results = await asyncio.gather(*(far.place_call(s) for s in scripts))
        for r in results:
            assert r.answered, r.line()
            assert r.heard.sound_frames >= GREETING_FRAMES, r.line()
            assert r.digits_sent == "111", r.line()
            assert (r.cleared_by, r.cause) == ("appliance", 16), r.line()
        assert len({r.channel for r in results}) == CALLS
        await eventually(
            lambda: len(outbox_events(app, "ivr.session")) >= CALLS, within=5, what="session records"
        )
        callbacks = outbox_events(app, "ivr.callback")
        assert sorted(c["number"] for c in callbacks) == sorted(f"+{caller(i)}" for i in range(CALLS))
        assert all(c["number_source"] == "caller" for c in callbacks), callbacks
        sessions = outbox_events(app, "ivr.session")
        assert [s["digits"] for s in sessions] == ["111"] * CALLS, sessions
        assert span_metric(app, "appliance_pri_calls") == 0

        # 3. Calls up (listening to the menu), then the far end vanishes. (The span started in LOS, before
        # the far end first connected: the events from here on are this loss's.)
        alarms_before = len(outbox_events(app, "span.alarm"))
        dchannel_before = len(outbox_events(app, "span.dchannel"))
        waiting = [asyncio.create_task(far.place_call(replace(IVR_SCRIPT, digits=""))) for _ in range(3)]
        await eventually(lambda: span_metric(app, "appliance_pri_calls") == 3, within=5, what="3 calls up")
        await eventually(lambda: answered(far) == 3, within=5, what="3 calls answered")
        await far.vanish()
        await eventually(
            lambda: span_metric(app, "appliance_span_alarm", alarm="los") == 1, within=3, what="LOS"
        )
        await eventually(lambda: span_metric(app, "appliance_pri_dchannel_up") == 0, within=3, what="D down")
        (raised,) = outbox_events(app, "span.alarm")[alarms_before:]
        assert (raised["span"], raised["alarm"], raised["state"]) == (1, "los", "raised"), raised
        (down,) = outbox_events(app, "span.dchannel")[dchannel_before:]
        assert not down["up"] and down["reason"] == "loss of signal", down
        for lost in await asyncio.gather(*waiting):
            assert lost.answered and lost.cleared_by == "vanished", lost.line()
        # The B-channels went with the line: the appliance ended its calls at once (cause 38), no T309.
        await eventually(lambda: span_metric(app, "appliance_pri_calls") == 0, within=3, what="calls ended")

        # 4. It returns, a switch restarted: the alarm clears and LAPD establishes by itself.
        await far.come_back(within=10)
        await eventually(
            lambda: span_metric(app, "appliance_span_alarm", alarm="los") == 0, within=3, what="clear"
        )
        await eventually(lambda: span_metric(app, "appliance_pri_dchannel_up") == 1, within=5, what="D up")
        _, cleared = outbox_events(app, "span.alarm")[alarms_before:]
        assert (cleared["alarm"], cleared["state"], cleared["raised_at"]) == ("los", "cleared", raised["at"])
        _, up = outbox_events(app, "span.dchannel")[dchannel_before:]
        assert up["up"] and up["down_s"] > 0, up

        after = await far.place_call(replace(IVR_SCRIPT, calling=caller(99), digits="", hold=2))
        assert after.answered and after.heard.sound_frames >= GREETING_FRAMES, after.line()
        assert (after.cleared_by, after.cause) == ("far end", 16), after.line()

        # Every D-channel frame of all that, as the far end saw it, decodes cleanly in Wireshark.
        trace.flush()
        if shutil.which("tshark") is not None:  # pragma: no branch - .ci/run installs it
            assert wireshark_errors(tmp_path / "farend-d.pcap") == []


def answered(far: FarEnd) -> int:
    return sum(r.answered for r in far.live_calls())
