"""Framing SIP messages on a byte stream: TCP and TLS (RFC 3261 §18.3), CRLF keep-alives (RFC 5626 §3.5.1).

Theory of operation. A stream carries messages back to back; each is a header block ending in CRLFCRLF
followed by exactly Content-Length octets of body, and Content-Length is mandatory on a stream (§18.3,
§20.14). :class:`StreamFramer` is sans-I/O: the connection feeds it whatever bytes arrived and takes whole
messages out, each handed to :func:`appliance.sip.message.parse_message` with ``stream=True``.

The buffer follows commit/rollback: bytes are consumed only when a whole unit is available (a message, or a
keep-alive), so a message split at any octet boundary frames the same as one that arrives in one piece.

Between messages, CRLFs are not part of any message (§7.5: they are ignored before a start line). A double
CRLF there is a keep-alive ping (RFC 5626 §3.5.1) that the appliance answers with one CRLF, the pong: the
framer counts the pongs due and the connection writes them. On a connection the appliance opened and pings
itself (``outbound=True``), each CRLF from the peer is a pong instead, counted for the flow's keep-alive
timer.

A framing error (header block over the size cap, Content-Length missing, malformed, repeated or too large)
raises :class:`DecodeError`; the stream cannot be resynchronised after one, so the connection closes it.
"""

from __future__ import annotations

import re
from typing import Final

from appliance.sip.errors import DecodeError, MessageTooLarge

PING: Final = b"\r\n\r\n"
PONG: Final = b"\r\n"
_CRLF: Final = b"\r\n"
_HEAD_END: Final = b"\r\n\r\n"
# A Content-Length field (full or compact form, any case) at the start of a header line. The start line
# comes first, so every header line is preceded by CRLF; a continuation line starts with SP or HTAB and
# cannot match.
_LENGTH_FIELD: Final = re.compile(rb"\r\n(?:content-length|l)[ \t]*:", re.IGNORECASE)
_FOLDED_LWS: Final = re.compile(rb"\r\n[ \t]")


class StreamFramer:
    """Cuts one connection's byte stream into whole SIP messages.

    ``max_size`` caps one message, header block and body together (the 513 limit of
    :func:`~appliance.sip.message.parse_message`). Call :meth:`feed` with every chunk received, then
    :meth:`next_message` until it returns ``None``, then write ``PONG * pongs_due()``.
    """

    __slots__ = ("_buffer", "_max_size", "_outbound", "_pongs_due", "_pongs_received", "_scanned")

    def __init__(self, max_size: int, *, outbound: bool = False) -> None:
        if max_size < len(_HEAD_END):
            raise ValueError(f"max_size {max_size} cannot hold a message")
        self._max_size = max_size
        self._outbound = outbound
        self._buffer = bytearray()
        # How far the current message's header block was already searched for CRLFCRLF, so that a header
        # block trickling in octet by octet is scanned once, not once per chunk.
        self._scanned = 0
        self._pongs_due = 0
        self._pongs_received = 0

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as a message or consumed as a keep-alive."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received octets; nothing is parsed until :meth:`next_message`."""
        self._buffer += data

    def pongs_due(self) -> int:
        """How many pongs (``PONG``, one CRLF) the connection must write now; reading clears the count."""
        due, self._pongs_due = self._pongs_due, 0
        return due

    def pongs_received(self) -> int:
        """How many pongs arrived on an ``outbound`` connection since the last call; reading clears it."""
        received, self._pongs_received = self._pongs_received, 0
        return received

    def next_message(self) -> bytes | None:
        """The next whole message, or ``None`` until more octets arrive.

        Raises :class:`DecodeError` (:class:`MessageTooLarge` for the size cap) when the stream cannot be
        framed; the buffer is then left as it was and the connection must be closed.
        """
        self._skip_keepalives()
        buffer = self._buffer
        if not buffer:
            return None
        end = buffer.find(_HEAD_END, self._scanned)
        if end < 0:
            if len(buffer) > self._max_size:
                raise MessageTooLarge(len(buffer), self._max_size)
            # The terminator may straddle the next chunk: rescan the last three octets.
            self._scanned = max(0, len(buffer) - 3)
            return None
        head_size = end + len(_HEAD_END)
        if head_size > self._max_size:
            raise MessageTooLarge(head_size, self._max_size)
        length = _content_length(bytes(buffer[:end]))
        total = head_size + length
        if total > self._max_size:
            raise MessageTooLarge(total, self._max_size)
        if len(buffer) < total:
            self._scanned = end  # the header block is complete; wait for the body
            return None
        message = bytes(buffer[:total])
        del buffer[:total]
        self._scanned = 0
        return message

    def _skip_keepalives(self) -> None:
        """Consume the CRLFs in front of the next message (RFC 3261 §7.5), counting pings and pongs."""
        buffer = self._buffer
        if self._scanned or buffer[:2] != _CRLF:
            return
        outbound = self._outbound
        consumed = 0
        n = len(buffer)
        while buffer[consumed : consumed + 2] == _CRLF:
            if outbound:
                self._pongs_received += 1
                consumed += 2
            elif buffer[consumed : consumed + 4] == PING:
                self._pongs_due += 1
                consumed += 4
            elif consumed + 2 < n and buffer[consumed + 2] != 0x0D:
                consumed += 2  # a lone CRLF before a start line: ignored
            else:
                break  # "\r\n" or "\r\n\r" so far: a ping may still be arriving
        if consumed:
            del buffer[:consumed]


def _content_length(head: bytes) -> int:
    """The Content-Length of a header block (start line included, final CRLFCRLF excluded)."""
    matches = list(_LENGTH_FIELD.finditer(head))
    if not matches:
        raise DecodeError("Missing Content-Length header on a stream transport")
    if len(matches) > 1:
        raise DecodeError("Duplicate Content-Length header")
    start = matches[0].end()
    stop = start
    # The value runs to the end of the line, continuation lines included (RFC 3261 §7.3.1 folding).
    while True:
        stop = head.find(_CRLF, stop)
        if stop < 0:
            stop = len(head)
            break
        if _FOLDED_LWS.match(head, stop) is None:
            break
        stop += 2
    value = head[start:stop].replace(_CRLF, b"").strip(b" \t")
    if not value.isdigit():  # bytes.isdigit() is ASCII-only
        raise DecodeError("Malformed Content-Length header")
    # Length first: int() refuses numerals beyond 4300 digits. Any value this long is over every size cap.
    if len(value.lstrip(b"0")) > 18:
        raise DecodeError("Content-Length out of range")
    return int(value)
