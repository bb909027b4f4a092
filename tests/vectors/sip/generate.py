"""Writes the SIP wire vectors of this folder: ``valid/<case>.sip`` and ``invalid/<case>.sip``.

The files are the reference; this script is how they were made, so that their octets (CRLF line ends, NUL,
non-UTF-8 octets, exact Content-Length values) are exact and a case can be changed and rewritten:

    .venv/bin/python tests/vectors/sip/generate.py

Cases named ``torture_*`` are the appliance's own equivalents of the RFC 4475 torture tests that apply to
it (the section is cited per case), addressed to loopback hosts. The expected values of every case are
tabled in ``tests/unit/test_sip_message.py``.
"""

from __future__ import annotations

from pathlib import Path

from sip_invalid import INVALID
from sip_valid import VALID

HERE = Path(__file__).parent


def main() -> None:
    for kind, cases in (("valid", VALID), ("invalid", INVALID)):
        folder = HERE / kind
        folder.mkdir(exist_ok=True)
        for stale in folder.glob("*.sip"):
            if stale.stem not in cases:
                stale.unlink()
        for name, data in cases.items():
            (folder / f"{name}.sip").write_bytes(data)


if __name__ == "__main__":
    main()
