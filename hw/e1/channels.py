"""Open a span's B-channels from a :class:`~hw.e1.driver.BChannelsSpec`, in a media process.

The control process owns the span (:class:`~hw.e1.driver.SpanDriver`) and hands its media worker the
picklable spec; the worker opens the channels here, whatever the backend, and gets a
:class:`~hw.e1.links.BChannels`. A simulated span's B-channel socket starts listening here, so the far end
connects to the worker; loopbacks of a simulated span apply to B-channels opened through the
:class:`~hw.e1.sim_span.SimSpan` only.
"""

from __future__ import annotations

import asyncio

from hw.e1.dahdi_channel import DahdiBChannels, DeviceAccess
from hw.e1.driver import BChannelsSpec
from hw.e1.errors import LinkUsageError
from hw.e1.links import BChannelHandler, BChannels
from hw.e1.sim import SimBChannels


async def open_bchannels(
    spec: BChannelsSpec,
    handler: BChannelHandler,
    *,
    access: DeviceAccess | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> BChannels:
    """Open the B-channels ``spec`` describes; raises :class:`LinkUsageError` for an incomplete spec."""
    if spec.backend == "sim":
        if spec.path is None:
            raise LinkUsageError(f"span {spec.span}: a simulated span's B-channels need a socket path")
        link = SimBChannels(spec.path, handler, timeslots=spec.timeslots, loop=loop)
        await link.start()
        return link
    if spec.basechan is None:
        raise LinkUsageError(f"span {spec.span}: DAHDI B-channels need the span's base channel")
    return DahdiBChannels.open(
        spec.basechan, spec.timeslots, handler, access=access or DeviceAccess(), loop=loop
    )
