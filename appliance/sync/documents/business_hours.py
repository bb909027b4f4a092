"""Owner of ``business-hours`` documents: a schedule that replaces the schedule of the same name in every
IVR flow having one (:meth:`~appliance.ivr.service.IvrService.set_hours`).

The document is read by the flow codec's own schedule reader
(:func:`~appliance.ivr.flow_codec.decode_schedule`), so business hours pushed alone and inside a flow obey
one set of rules; the name must be one a flow can give a schedule. Nothing is written to files.
"""

from __future__ import annotations

from typing import Any

from appliance.ivr.errors import FlowDecodeError
from appliance.ivr.flow_codec import check_schedule_name, decode_schedule
from appliance.ivr.model import Schedule
from appliance.ivr.service import IvrService
from appliance.sync.documents.errors import InvalidDocument
from appliance.sync.documents.model import Kind


class BusinessHoursOwner:
    """``business-hours`` documents into ``ivr``."""

    kind: Kind = "business-hours"

    def __init__(self, ivr: IvrService) -> None:
        self._ivr = ivr

    def validate(self, name: str, content: Any, *, version: int) -> Schedule:
        try:
            check_schedule_name(name)
        except FlowDecodeError as exc:
            raise InvalidDocument(exc.reason) from None
        try:
            return decode_schedule(content)
        except FlowDecodeError as exc:
            raise InvalidDocument(exc.reason, path=exc.path) from None

    def apply(self, name: str, prepared: Schedule) -> None:
        self._ivr.set_hours(name, prepared)

    def remove(self, name: str) -> None:
        self._ivr.remove_hours(name)
