"""WAN monitoring (DESIGN.md §4): the survivable-mode machine and its events, netlink link events
(:mod:`~appliance.wan.netlink`), the primary/backup uplink selector (:mod:`~appliance.wan.uplinks`), the
default-route applier (:mod:`~appliance.wan.routes`), the HTTPS health probe
(:mod:`~appliance.wan.https_probe`) and their glue (:mod:`~appliance.wan.monitor`,
:mod:`~appliance.wan.service`), imported from their modules."""

from appliance.wan.errors import ModeConfigError, ModeError, WanError
from appliance.wan.events import Event, ModeChanged, SendProbe
from appliance.wan.mode import FORCEABLE, TRANSITIONS, Mode, ModeMachine, check_transition

__all__ = [
    "FORCEABLE",
    "TRANSITIONS",
    "Event",
    "Mode",
    "ModeChanged",
    "ModeConfigError",
    "ModeError",
    "ModeMachine",
    "SendProbe",
    "WanError",
    "check_transition",
]
