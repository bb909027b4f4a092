"""WAN monitoring: the survivable-mode state machine (DESIGN.md §4) and its events."""

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
