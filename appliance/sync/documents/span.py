"""Owner of ``span`` documents: the settings of one E1 span (ITU-T G.704 framing, G.703 line code),
named by its span number (``"1"``, as ``pri:1`` in a route).

Checks beyond the field types (``span-content`` in ``appliance/sync/sync.cddl``): timeslot 16 is never a
B-channel (G.704 §5.1.3: it carries the D-channel with CCS, the channel-associated signalling with CAS),
no timeslot is listed twice, and a Q.931 ``switch_type`` is only meaningful with CCS framing.

Applying a document hands the settings to the injected ``on_span`` callback: in the appliance,
:meth:`appliance.app_pri.PriWiring.on_span`, which restarts that span alone with them (and refuses a span
that ``[[spans]]`` does not configure: its driver and RTP ports come from the configuration).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from appliance.sync.documents.errors import InvalidDocument
from appliance.sync.documents.fields import read_array, read_bool, read_choice, read_int, read_map
from appliance.sync.documents.model import Kind, join

_SPAN_NUMBER: Final = re.compile(r"[1-9][0-9]{0,2}")
SIGNALLING_SLOT: Final = 16


@dataclass(frozen=True, slots=True)
class SpanSettings:
    framing: Literal["ccs", "cas"]
    line_code: Literal["hdb3", "ami"]
    crc4: bool
    side: Literal["user", "network"]
    timing_priority: int
    b_channels: tuple[int, ...]
    switch_type: Literal["euroisdn"] | None = None


class SpanOwner:
    """``span`` documents handed to ``on_span(span_name, settings)`` (``None``: the document is gone).

    ``runnable(span_name, settings)``, when given, raises ``ValueError`` for settings the box cannot run
    (a span it does not have): the document is then invalid (422), not a failed apply.
    """

    kind: Kind = "span"

    def __init__(
        self,
        *,
        on_span: Callable[[str, SpanSettings | None], None],
        runnable: Callable[[str, SpanSettings], None] | None = None,
    ) -> None:
        self._on_span = on_span
        self._runnable = runnable

    def validate(self, name: str, content: Any, *, version: int) -> SpanSettings:
        if _SPAN_NUMBER.fullmatch(name) is None or not 1 <= int(name) <= 255:
            raise InvalidDocument(f'a span document is named by its span number 1 to 255, not "{name}"')
        doc = read_map(
            content,
            "",
            required=("framing", "line_code", "crc4", "side", "timing_priority", "b_channels"),
            optional=("switch_type",),
        )
        framing = read_choice(doc["framing"], "framing", ("ccs", "cas"))
        line_code = read_choice(doc["line_code"], "line_code", ("hdb3", "ami"))
        crc4 = read_bool(doc["crc4"], "crc4")
        side = read_choice(doc["side"], "side", ("user", "network"))
        timing_priority = read_int(doc["timing_priority"], "timing_priority", 0, 31)
        slots: list[int] = []
        for i, item in enumerate(read_array(doc["b_channels"], "b_channels", low=1, high=30)):
            at = join("b_channels", i)
            slot = read_int(item, at, 1, 31)
            if slot == SIGNALLING_SLOT:
                use = "the D-channel" if framing == "ccs" else "the CAS signalling"
                raise InvalidDocument(f"timeslot 16 carries {use}, never a B-channel", path=at)
            if slot in slots:
                raise InvalidDocument(f"timeslot {slot} is listed twice", path=at)
            slots.append(slot)
        switch_type = None
        if "switch_type" in doc:
            switch_type = read_choice(doc["switch_type"], "switch_type", ("euroisdn",))
            if framing != "ccs":
                raise InvalidDocument(
                    "a Q.931 switch type needs framing ccs (CAS has no D-channel)", path="switch_type"
                )
        settings = SpanSettings(
            framing,  # type: ignore[arg-type]
            line_code,  # type: ignore[arg-type]
            crc4,
            side,  # type: ignore[arg-type]
            timing_priority,
            tuple(slots),
            switch_type,  # type: ignore[arg-type]
        )
        if self._runnable is not None:
            try:
                self._runnable(name, settings)
            except ValueError as exc:
                raise InvalidDocument(str(exc)) from None
        return settings

    def apply(self, name: str, prepared: SpanSettings) -> None:
        self._on_span(name, prepared)

    def remove(self, name: str) -> None:
        self._on_span(name, None)
