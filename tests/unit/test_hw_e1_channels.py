"""Opening B-channels in a media process from a span's BChannelsSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from hw.e1.channels import open_bchannels
from hw.e1.dahdi_channel import SIG_CLEAR
from hw.e1.driver import BChannelsSpec
from hw.e1.errors import LinkUsageError
from hw.e1.links import FRAME_OCTETS
from hw.e1.sim import SimBChannels
from tests.unit.test_hw_e1_dahdi_channel import FakeDevice, Handler, far_recv
from tests.unit.test_hw_e1_sim import connect


async def test_sim_spec_listens_on_the_spans_b_socket(tmp_path: Path) -> None:
    handler = Handler()
    spec = BChannelsSpec("sim", 1, (1, 2), path=tmp_path / "span1-b.sock")
    b = await open_bchannels(spec, handler)
    assert isinstance(b, SimBChannels)
    far = await connect(tmp_path / "span1-b.sock")
    await handler.until(lambda: handler.links == [True])
    b.send(2, bytes(FRAME_OCTETS))
    assert await far_recv(far) == bytes((2,)) + bytes(FRAME_OCTETS)
    far.close()
    await b.close()


async def test_dahdi_spec_opens_the_channels_from_the_base_channel() -> None:
    device = FakeDevice({32: SIG_CLEAR, 48: SIG_CLEAR})
    b = await open_bchannels(
        BChannelsSpec("dahdi", 2, (1, 17), basechan=32), Handler(), access=device.access()
    )
    assert sorted(device.channo.values()) == [32, 48]
    await b.close()
    device.close()


async def test_incomplete_specs_are_refused() -> None:
    with pytest.raises(LinkUsageError, match="socket path"):
        await open_bchannels(BChannelsSpec("sim", 1, (1,)), Handler())
    with pytest.raises(LinkUsageError, match="base channel"):
        await open_bchannels(BChannelsSpec("dahdi", 1, (1,)), Handler())
