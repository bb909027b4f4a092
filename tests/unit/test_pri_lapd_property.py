"""Property: over any pattern of loss, the data link never reorders or duplicates, never raises, and once the
wire is clean again it comes back up and carries everything sent after that."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from appliance.pri.lapd import LapdState
from appliance.pri.lapd_codec import Frame
from appliance.pri.lapd_events import LinkEstablished, LinkReleased
from tests.unit.test_pri_lapd_pair import Pair, lapd_settings

PROPERTY = lapd_settings(150)

step = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(["user", "network"]), st.integers(1, 6)),
    st.tuples(st.just("wait"), st.sampled_from(["user", "network"]), st.integers(1, 40)),
    st.tuples(st.just("cut"), st.sampled_from(["user", "network"]), st.integers(0, 1)),
)


def is_ordered_subsequence(got: list[bytes], sent: list[bytes]) -> bool:
    it = iter(sent)
    return all(any(x == y for y in it) for x in got)


@PROPERTY
@given(steps=st.lists(step, max_size=25), losses=st.lists(st.booleans(), min_size=1, max_size=64))
def test_lossy_wire_never_reorders_or_duplicates(
    steps: list[tuple[str, str, int]], losses: list[bool]
) -> None:
    pair = Pair()
    counter = [0]

    def drop(sender: str, frame: Frame) -> bool:
        counter[0] += 1
        return losses[counter[0] % len(losses)]

    pair.drop = drop
    pair.user.start(0.0)
    sent: dict[str, list[bytes]] = {"user": [], "network": []}
    serial = 0
    for action, side, amount in steps:
        if action == "send":
            for _ in range(amount):
                serial += 1
                message = f"{side}-{serial}".encode()
                lapd = pair.side(side)
                if lapd.state in (LapdState.TEI_ASSIGNED, LapdState.AWAITING_RELEASE):
                    continue  # discarded by design; nothing to deliver
                sent[side].append(message)
                lapd.send_data(message, pair.now)
        elif action == "wait":
            pair.run(pair.now + amount / 10)
        elif amount:
            pair.side(side).physical_down(pair.now)
            pair.run(pair.now + 0.5)
            pair.side(side).physical_up(pair.now)
    for side, other in (("user", "network"), ("network", "user")):
        assert is_ordered_subsequence(pair.received[other], sent[side])
        assert len(set(pair.received[other])) == len(pair.received[other])
    # Established/released reports alternate (re-establishments with loss aside).
    for side in ("user", "network"):
        up = False
        for event in pair.events[side]:
            if isinstance(event, LinkEstablished):
                assert up == event.reestablished
                up = True
            elif isinstance(event, LinkReleased):
                assert up
                up = False
    # A clean wire: the link comes back (keep-up) and carries new data both ways.
    pair.drop = lambda sender, frame: False
    pair.run(pair.now + 15.0)
    assert pair.user.established and pair.network.established
    before = {side: len(pair.received[side]) for side in ("user", "network")}
    pair.user.send_data(b"final-u", pair.now)
    pair.network.send_data(b"final-n", pair.now)
    pair.run(pair.now + 1.0)
    assert pair.received["network"][before["network"] :] == [b"final-u"]
    assert pair.received["user"][before["user"] :] == [b"final-n"]
