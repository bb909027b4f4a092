"""system.conf from span configurations, its atomic write, and running dahdi_cfg (a fake script)."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from hw.e1.dahdi_conf import (
    HEADER,
    DahdiSettings,
    channel_ranges,
    render_system_conf,
    run_dahdi_cfg,
    write_atomically,
)
from hw.e1.errors import DahdiCfgError, DahdiError, SpanConfigError
from hw.e1.model import SpanConfig


def test_two_pri_spans_line_by_line() -> None:
    text = render_system_conf(
        [
            SpanConfig(number=2, timing_priority=2, crc4=False, line_code="ami", side="network"),
            SpanConfig(number=1, b_channels=(1, 2, 3, 17)),
        ],
        tone_zone="de",
    )
    assert text.splitlines() == [
        HEADER.rstrip("\n"),
        "# span 1: ETSI EuroISDN, user side",
        "span=1,1,0,ccs,hdb3,crc4",
        "bchan=1-3,17",
        "hardhdlc=16",
        "# span 2: ETSI EuroISDN, network side",
        "span=2,2,0,ccs,ami",
        "bchan=32-46,48-62",
        "hardhdlc=47",
        "loadzone=de",
        "defaultzone=de",
    ]
    assert "echocanceller" not in text


def test_software_hdlc_and_base_channels_from_sysfs() -> None:
    text = render_system_conf([SpanConfig(number=3, timing_priority=0)], hdlc="dchan", basechans={3: 101})
    assert "span=3,0,0,ccs,hdb3,crc4\n" in text
    assert "bchan=101-115,117-131\n" in text
    assert "dchan=116\n" in text


@pytest.mark.parametrize(
    ("spans", "zone", "message"),
    [
        ([], "us", "at least one span"),
        ([SpanConfig(number=1), SpanConfig(number=1)], "us", "span numbers are not unique: [1, 1]"),
        ([SpanConfig(framing="cas", d_channel=None)], "us", "span 1: the dahdi backend drives CCS"),
        ([SpanConfig()], "us\nspan=9", "is not a DAHDI zone name"),
    ],
)
def test_what_dahdi_cannot_do_is_refused(spans: list[SpanConfig], zone: str, message: str) -> None:
    with pytest.raises(SpanConfigError) as caught:
        render_system_conf(spans, tone_zone=zone)
    assert message in str(caught.value)


def test_channel_ranges() -> None:
    assert channel_ranges([]) == ""
    assert channel_ranges([5]) == "5"
    assert channel_ranges([3, 1, 2, 5, 7, 8]) == "1-3,5,7-8"


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "dahdi" / "system.conf"
    write_atomically(path, "span=1\n")
    write_atomically(path, "span=2\n")
    assert path.read_text() == "span=2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["system.conf"]


def test_write_failure_is_a_dahdi_error_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "system.conf"
    path.write_text("old\n")
    tmp_path.chmod(0o500)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(DahdiError, match="cannot write"):
            write_atomically(path, "new\n")
    finally:
        tmp_path.chmod(0o700)
    assert path.read_text() == "old\n"


def fake_dahdi_cfg(tmp_path: Path, body: str) -> DahdiSettings:
    script = tmp_path / "dahdi_cfg"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return DahdiSettings(system_conf=tmp_path / "system.conf", dahdi_cfg=script, dahdi_cfg_timeout=5.0)


async def test_dahdi_cfg_success_reads_the_written_file(tmp_path: Path) -> None:
    settings = fake_dahdi_cfg(tmp_path, f'[ "$1" = -c ] && cp "$2" {tmp_path}/seen\n')
    write_atomically(settings.system_conf, "span=1,1,0,ccs,hdb3,crc4\n")
    await run_dahdi_cfg(settings)
    assert (tmp_path / "seen").read_text() == "span=1,1,0,ccs,hdb3,crc4\n"


async def test_dahdi_cfg_failure_carries_its_stderr(tmp_path: Path) -> None:
    settings = fake_dahdi_cfg(
        tmp_path,
        'echo "Notice: Configuration file is $2" >&2\n'
        'echo "DAHDI_SPANCONFIG failed on span 1: No such device or address (6)" >&2\nexit 1\n',
    )
    with pytest.raises(DahdiCfgError) as caught:
        await run_dahdi_cfg(settings)
    err = caught.value
    assert err.returncode == 1
    assert str(err).endswith(
        "failed with status 1: DAHDI_SPANCONFIG failed on span 1: No such device or address (6)"
    )
    assert err.stderr.startswith("Notice: Configuration file is ")


async def test_dahdi_cfg_missing_or_hanging(tmp_path: Path) -> None:
    missing = DahdiSettings(dahdi_cfg=tmp_path / "nowhere", system_conf=tmp_path / "system.conf")
    with pytest.raises(DahdiCfgError, match=r"cannot run .*nowhere"):
        await run_dahdi_cfg(missing)
    hanging = fake_dahdi_cfg(tmp_path, "exec sleep 30\n")
    hanging = replace(hanging, dahdi_cfg_timeout=0.2)
    with pytest.raises(DahdiCfgError, match=r"did not finish within 0\.2 s"):
        await run_dahdi_cfg(hanging)
