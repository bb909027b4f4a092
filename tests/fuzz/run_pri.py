"""Coverage-guided fuzzing of the D-channel receive path with atheris (libFuzzer): ``make fuzz-pri``.

The harness and its invariants are :mod:`tests.fuzz.pri_receive`'s, the same the hypothesis property test
(``tests/unit/test_pri_fuzz.py``) runs; here libFuzzer's input is read as the far end's steps, with the
LAPD and Q.931 modules instrumented so that the search follows new branches. A broken invariant or an
exception is a crash: libFuzzer writes the input to ``crash-*`` and stops.

    python -m tests.fuzz.run_pri [libFuzzer options] [corpus directory ...]

e.g. ``-max_total_time=300 var/fuzz-pri`` (``make fuzz-pri`` passes ``FUZZ_ARGS``). A crash input is
replayed by giving its file instead of a directory.
"""

from __future__ import annotations

import logging
import sys

import atheris

with atheris.instrument_imports(include=["appliance.pri", "tests.fuzz"]):
    from tests.fuzz.pri_receive import COMMANDS, Op, ReceivePath, seed_messages

SEEDS = seed_messages()
WAITS = (0.5, 1.1, 4.1, 10.5, 31.0, 121.0)
MAX_STEPS = 40


def message(fdp: atheris.FuzzedDataProvider) -> bytes:
    """Q.931 octets: a seed as it is, with one octet changed, cut and followed by fuzz, or all fuzz."""
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 3:
        return bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 260)))
    seed = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    if mode == 1:
        seed[fdp.ConsumeIntInRange(0, len(seed) - 1)] = fdp.ConsumeInt(1) & 0xFF
    elif mode == 2:
        seed = seed[: fdp.ConsumeIntInRange(0, len(seed))] + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16))
    return bytes(seed)


def step(fdp: atheris.FuzzedDataProvider) -> Op:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind <= 2:
        return Op("message", message(fdp))
    if kind == 3:
        return Op("frame", bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 264))))
    if kind == 4:
        return Op("wait", amount=WAITS[fdp.ConsumeIntInRange(0, len(WAITS) - 1)])
    if kind == 5:
        return Op(
            "command", amount=fdp.ConsumeIntInRange(0, len(COMMANDS) - 1), pick=fdp.ConsumeIntInRange(0, 60)
        )
    return (Op("reset"), Op("down"), Op("up"))[fdp.ConsumeIntInRange(0, 2)]


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    path = ReceivePath("user" if fdp.ConsumeBool() else "network")
    for _ in range(MAX_STEPS):
        if not fdp.remaining_bytes():
            break
        path.step(step(fdp))
    # a link taken down and T309 run out releases every call left (each exactly once: step checks)
    path.run([Op("down"), Op("wait", amount=121.0), Op("wait", amount=121.0)])
    assert path.q931.calls == 0 and set(path.reported) == path.released


def main() -> None:
    logging.disable(logging.CRITICAL)  # every fault is logged: at fuzzing speed that is the cost
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
