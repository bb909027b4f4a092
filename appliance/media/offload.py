"""Handing eligible calls to the kernel fast path and reading its counters back (issue 3).

Theory of operation. A media worker with a :class:`~appliance.media.fastpath.KernelFastPath` wraps it in one
:class:`Offloader`. Whenever one of a call's RTP latches learns or moves, and after a re-negotiation
(``MediaWorker.latch_moved``), the worker calls :meth:`Offloader.after_packets`:

* a call not yet offloaded is judged by :func:`~appliance.media.fastpath_decide.decide` once both legs'
  RTP sources are latched; an eligible call (plain RTP both sides, same codec and payload types, no
  recording, no DTMF reports, no ``"no-fastpath"`` flag) is installed. A call refused for a lasting reason
  is not asked again until :meth:`Offloader.withdraw` (a re-negotiation) clears the verdict;
* an offloaded call whose userspace latch moved (a NAT rebinding reached the worker's socket and took the
  latch over) is withdrawn, so userspace relays it again and may offload it with the new address later.

While a call is offloaded the kernel forwards its RTP; a straggler that still reaches the worker's socket
is judged and counted by the relay but not sent (a userspace send would recreate a conntrack entry that
shadows the kernel's NAT). The latch never sees the latched sources then, so the kernel counters stand in
for them as the latch's ``witness``: a would-be successor's run of packets (the same SSRC from a new port,
a NAT rebinding) re-latches only if the incumbent's kernel count did not grow from the run's first packet
to its last. That is the userspace rule (a live incumbent breaks the run) at the cost of two counter reads
per run, so a rebinding loses no more packets than in userspace. RTCP stays in userspace.

On the worker's periodic timer :meth:`Offloader.poll` reads every offloaded call's counters in a few
netlink round trips; a direction whose packet count moved is reported to the relay as activity, so media
timeouts keep working at the resolution of the poll. Counters of earlier installs of a call are kept in
:class:`~appliance.media.call.CallOffload` so that statistics cover the whole call.

Every fast path failure is logged and leaves the call in userspace; nothing here raises to the worker.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Final

from appliance.media.call import CallOffload, MediaCall
from appliance.media.fastpath import FlowHandle, KernelFastPath
from appliance.media.fastpath_decide import Ineligible, LegMedia, decide
from appliance.media.fastpath_rules import FastPathError, FlowCounters, grown

log = logging.getLogger("appliance.media.offload")

# Reasons that a packet (the second remote latching) can clear; any other keeps the call in userspace until
# it is re-negotiated.
_TRANSIENT: Final = frozenset({Ineligible.NOT_LATCHED})


class Offloader:
    """The worker's use of one open :class:`KernelFastPath` for its relay ``address``."""

    def __init__(self, fastpath: KernelFastPath, address: str) -> None:
        self.fastpath = fastpath
        self.address = address

    def after_packets(self, call: MediaCall) -> None:
        """Install ``call`` if it became eligible; withdraw it if its latch moved."""
        state = call.offload
        relay = call.relay
        if relay is None:
            return
        handle = state.handle
        if handle is not None:
            if (relay.latches("a").rtp.latched, relay.latches("b").rtp.latched) != (
                handle.a.remote,
                handle.b.remote,
            ):
                log.info("call %s: a remote moved; fast path withdrawn", call.call_id)
                self.withdraw(call)
            return
        if state.refused or "no-fastpath" in call.flags:
            return
        legs = []
        for name in ("a", "b"):
            leg = call.legs[name]
            config = leg.config
            assert config is not None  # the relay exists, so both legs are configured
            latched = relay.latches(name).rtp.latched
            legs.append(
                LegMedia(
                    config.codec,
                    config.codec_pt,
                    config.event_pt,
                    leg.srtp is not None,
                    (self.address, leg.port),
                    latched,
                )
            )
        decision = decide(
            legs[0], legs[1], recording="record" in call.flags, report_dtmf="dtmf-events" in call.flags
        )
        if decision.legs is None:
            if not set(decision.reasons) <= _TRANSIENT:
                state.refused = tuple(str(reason) for reason in decision.reasons)
                log.info("call %s stays in userspace: %s", call.call_id, ", ".join(state.refused))
            return
        try:
            state.handle = self.fastpath.install(call.call_id, *decision.legs)
        except FastPathError as exc:
            state.refused = (f"install failed: {exc}",)
            log.warning("call %s: fast path install failed: %s", call.call_id, exc)
            return
        state.live = FlowCounters()
        for name in ("a", "b"):
            relay.latches(name).rtp.witness = functools.partial(self._witness, state.handle, name)
        log.info("call %s handed to the kernel fast path", call.call_id)

    def _witness(self, handle: FlowHandle, leg: str) -> int | None:
        """How many packets the kernel forwarded from ``leg``'s latched source (None when unreadable: the
        latch then judges as in userspace)."""
        try:
            counters = self.fastpath.counters(handle)
        except FastPathError as exc:
            log.warning("call %s: fast path counters unreadable: %s", handle.key, exc)
            return None
        return counters.a_packets if leg == "a" else counters.b_packets

    def withdraw(self, call: MediaCall) -> None:
        """Give ``call`` back to userspace (delete, re-negotiation, moved latch) and forget any refusal, so
        that it is judged again with what changed."""
        state = call.offload
        state.refused = ()
        handle = state.handle
        if handle is None:
            return
        try:
            final = self.fastpath.remove(handle)
        except FastPathError as exc:
            # The kernel kept the rules: the call stays installed and is retried at the next withdraw.
            log.warning("call %s: fast path removal failed: %s", call.call_id, exc)
            return
        state.done = state.done + final
        state.live = FlowCounters()
        state.handle = None
        if call.relay is not None:
            for name in ("a", "b"):
                call.relay.latches(name).rtp.witness = None

    def poll(self, calls: Iterable[MediaCall], now: float) -> None:
        """Read the counters of every offloaded call and tell each relay which directions had media."""
        offloaded = {call.call_id: call for call in calls if call.offload.handle is not None}
        if not offloaded:
            return
        handles = [call.offload.handle for call in offloaded.values() if call.offload.handle is not None]
        try:
            counters = self.fastpath.poll(handles)
        except FastPathError as exc:
            log.warning("fast path counters unreadable: %s", exc)
            return
        for key, current in counters.items():
            call = offloaded[key]
            state: CallOffload = call.offload
            relay = call.relay
            if relay is not None:
                for leg in grown(state.live, current):
                    relay.activity(leg, now)
            state.live = current

    def close(self) -> None:
        """Delete the worker's table; every offloaded call falls back to userspace."""
        try:
            self.fastpath.close()
        except FastPathError as exc:
            log.warning("fast path not closed cleanly: %s", exc)
