"""SDP rewriting for the media relay: every leg sees the appliance's relay ports, never the other leg.

Theory of operation. The appliance anchors the media of every call: a description received on one leg is
forwarded to the other leg only after :func:`rewrite_for_relay` has replaced every transport address in it
with the relay's own. What the far end negotiates about the media itself (formats in preference order,
``rtpmap``/``fmtp``/``ptime``/``maxptime``, direction, vendor attributes) passes through unchanged, so the
two endpoints still negotiate codecs end to end while the relay carries the packets.

Rewriting, stream by stream (RFC 8866, RFC 3264):

* ``o=`` becomes ``- <session id> <session version> IN IP4|IP6 <relay address>``: the relay is the
  originator the leg sees, and the caller keeps the id fixed and bumps the version on every re-offer
  (RFC 3264 §8).
* The session-level ``c=`` names the relay address; a media-level ``c=`` (one or several) becomes a single
  ``c=`` with the relay address.
* Each ``m=`` port becomes the relay port for that stream. ``None`` rejects the stream (port 0 with the
  original formats and no attributes, RFC 3264 §6); a stream the writer already disabled (port 0) stays
  disabled whatever port is given, since the relay must not revive it.
* ``a=rtcp`` (RFC 3605) names the relay's RTCP port (RTP port + 1, or the RTP port itself when the stream
  ends up multiplexed, RFC 5761 §5.1.3) without an address; ``a=rtcp-mux`` is kept, added or removed as
  ``rtcp_mux`` says (``None`` keeps what the writer sent).
* Holds keep their meaning. ``a=sendonly``/``recvonly``/``inactive`` pass through. A hold written the
  RFC 2543 way, with connection address ``0.0.0.0`` (or ``::``), cannot pass as such, because the leg must
  still learn the relay's address; RFC 3264 §8.4 recommends the direction attribute instead, so the stream
  gets the relay address and a media-level direction with "receive" removed: ``sendrecv`` → ``sendonly``,
  ``recvonly`` → ``inactive``, ``sendonly`` and ``inactive`` unchanged.
* ICE (RFC 8839: ``ice-ufrag``, ``ice-pwd``, ``ice-options``, ``ice-lite``, ``candidate``,
  ``remote-candidates``, ``end-of-candidates``) is removed at both levels when ``strip_ice`` is set: the
  candidates name the far leg's addresses and the relay answers no connectivity checks for them.
* ``a=crypto`` (SDES keys) is removed unless ``keep_crypto`` is set: the SRTP bridge writes its own keys.

After rewriting, no ``o=``, ``c=`` or ``a=rtcp`` line names an address other than the relay's. Attributes
the appliance does not interpret are kept verbatim (RFC 8866 §5.13 tells a relay to pass them through).

:func:`remote_endpoints` reads, from the description a leg sent, where the relay must send each stream, and
:func:`payload_map` gives the payload-type translation between two legs that number the same codecs
differently. All functions are pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from appliance.sdp.errors import LocalProtocolError, SdpDecodeError
from appliance.sdp.model import (
    DIRECTION_NAMES,
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
)
from appliance.sdp.offer_answer import audio_formats, same_codec

# RFC 8839 §5: the attributes that carry a leg's ICE state and candidate addresses.
ICE_ATTRIBUTES: Final = frozenset(
    {"ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "candidate", "remote-candidates", "end-of-candidates"}
)
_MAX_SESSION_FIELD: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class MediaEndpoint:
    """Where the relay sends one stream of a leg, read from the description that leg wrote.

    ``index`` is the stream's position among the ``m=`` lines. ``address`` is the stream's connection host
    (media-level ``c=``, else the session one); ``None`` only for a disabled stream (port 0) without any
    ``c=``. ``rtcp_address``/``rtcp_port`` come from ``a=rtcp`` (RFC 3605), else the RTP address and port + 1,
    or the RTP port itself when ``rtcp_mux`` is set. ``direction`` is the writer's, with "receive" removed
    for a ``0.0.0.0`` hold. ``codecs`` are the formats in preference order, each with its ``rtpmap`` or its
    RFC 3551 static meaning (formats with neither are left out).
    """

    index: int
    media: str
    proto: str
    address: str | None
    port: int
    rtcp_address: str | None
    rtcp_port: int
    rtcp_mux: bool
    direction: Direction
    codecs: tuple[RtpMap, ...]

    @property
    def accepts_media(self) -> bool:
        """True when the relay may send this leg RTP: the stream is enabled and the writer receives."""
        return self.port != 0 and self.address is not None and self.direction.receives


def rewrite_for_relay(
    sdp: SessionDescription,
    *,
    address: str,
    ports: Sequence[int | None],
    session_id: int,
    session_version: int,
    strip_ice: bool = True,
    rtcp_mux: bool | None = None,
    keep_crypto: bool = False,
) -> SessionDescription:
    """``sdp`` as the other leg must see it, with the relay at ``address`` and ``ports[i]`` for stream ``i``.

    ``ports`` has one entry per ``m=`` line; ``None`` rejects that stream. Raises
    :class:`LocalProtocolError` if ``address`` is not an IP literal, ``ports`` has the wrong length, a port
    (or its RTCP port + 1) is out of range, or the session id or version does not fit ``o=``. The input is
    a parsed description, so nothing the peer wrote can make this raise.
    """
    addrtype = _addrtype(address)
    if len(ports) != len(sdp.media):
        raise LocalProtocolError(f"relay ports: {len(ports)} given for {len(sdp.media)} streams")
    for port in ports:
        if port is not None and not 0 < port < 65535:
            raise LocalProtocolError(f"relay port out of range: {port}")
    for value in (session_id, session_version):
        if not 0 <= value <= _MAX_SESSION_FIELD:
            raise LocalProtocolError(f"session id/version out of range: {value}")
    relay = Connection("IN", addrtype, address)
    media = tuple(
        _rewrite_media(sdp, m, relay, port, strip_ice=strip_ice, rtcp_mux=rtcp_mux, keep_crypto=keep_crypto)
        for m, port in zip(sdp.media, ports, strict=True)
    )
    return replace(
        sdp,
        origin=Origin("-", session_id, session_version, "IN", addrtype, address),
        connection=relay,
        attributes=_filter(sdp.attributes, strip_ice=strip_ice, keep_crypto=keep_crypto),
        media=media,
    )


def remote_endpoints(sdp: SessionDescription) -> list[MediaEndpoint]:
    """One :class:`MediaEndpoint` per ``m=`` line of ``sdp``, in order.

    Raises :class:`SdpDecodeError` (400) if an enabled stream has no ``c=`` line at either level
    (RFC 8866 §5.7 requires one).
    """
    out: list[MediaEndpoint] = []
    for index, media in enumerate(sdp.media):
        connection = sdp.connection_for(media)
        if connection is None and media.port != 0:
            raise SdpDecodeError(f"stream {index} has no c= line")
        direction = sdp.direction_for(media)
        if connection is not None and connection.is_unspecified:
            # RFC 3264 §8.4: nothing is to be sent to a 0.0.0.0 address.
            direction = Direction.of(direction.sends, False)
        host = None if connection is None else connection.host
        rtcp = media.rtcp
        mux = media.rtcp_mux
        if rtcp is not None:
            rtcp_port = rtcp.port
            rtcp_host = rtcp.connection.host if rtcp.connection is not None else host
        else:
            rtcp_port = media.port if mux or media.port == 0 else media.port + 1
            rtcp_host = host
        out.append(
            MediaEndpoint(
                index=index,
                media=media.media,
                proto=media.proto,
                address=host,
                port=media.port,
                rtcp_address=rtcp_host,
                rtcp_port=rtcp_port,
                rtcp_mux=mux,
                direction=direction,
                codecs=audio_formats(media),
            )
        )
    return out


def payload_map(offer_leg: MediaDescription, answer_leg: MediaDescription) -> dict[int, int]:
    """Payload type translation for one stream: ``{pt in offer_leg: pt in answer_leg}`` per shared codec.

    Two formats are the same codec when encoding name (case-insensitive), clock rate and channel count
    (absent = 1) agree, static formats taking their RFC 3551 meaning. If the answer leg lists the codec
    more than once, a format with the same ``fmtp`` parameters is preferred, then the first one not yet
    mapped. Formats with no counterpart are absent from the result; identical numbers map to themselves,
    so a relay can translate every payload type it forwards by one lookup. Applied to a packet travelling
    the other way, use the inverted map.
    """
    candidates = audio_formats(answer_leg)
    used: set[int] = set()
    mapping: dict[int, int] = {}
    for codec in audio_formats(offer_leg):
        same = [c for c in candidates if same_codec(codec, c)]
        if not same:
            continue
        params = offer_leg.fmtp(codec.payload_type)
        chosen = next(
            (c for c in same if c.payload_type not in used and answer_leg.fmtp(c.payload_type) == params),
            None,
        )
        if chosen is None:
            chosen = next((c for c in same if c.payload_type not in used), same[0])
        used.add(chosen.payload_type)
        mapping[codec.payload_type] = chosen.payload_type
    return mapping


def _rewrite_media(
    sdp: SessionDescription,
    media: MediaDescription,
    relay: Connection,
    port: int | None,
    *,
    strip_ice: bool,
    rtcp_mux: bool | None,
    keep_crypto: bool,
) -> MediaDescription:
    connections = (relay,) if media.connections else ()
    if port is None or media.port == 0:
        # RFC 3264 §6: a rejected stream keeps its formats (the m= line needs one) and nothing else.
        return MediaDescription(media.media, 0, media.proto, media.formats, connections=connections)
    attributes = _filter(media.attributes, strip_ice=strip_ice, keep_crypto=keep_crypto)
    mux = media.rtcp_mux if rtcp_mux is None else rtcp_mux
    rtcp_port = port if mux else port + 1
    rewritten: list[Attribute] = []
    for attribute in attributes:
        if attribute.name == "rtcp":
            rewritten.append(Attribute("rtcp", str(rtcp_port)))
        elif attribute.name == "rtcp-mux":
            if mux:
                rewritten.append(attribute)
        else:
            rewritten.append(attribute)
    if mux and not media.rtcp_mux:
        rewritten.append(Attribute("rtcp-mux"))
    original = sdp.connection_for(media)
    if original is not None and original.is_unspecified:
        # A 0.0.0.0 hold becomes a direction without "receive" (RFC 3264 §8.4), so the relay address can
        # stand in the c= line without inviting media.
        held = Direction.of(sdp.direction_for(media).sends, False)
        rewritten = [a for a in rewritten if a.name not in DIRECTION_NAMES]
        rewritten.append(Attribute(held.value))
    return replace(media, port=port, port_count=None, connections=connections, attributes=tuple(rewritten))


def _filter(
    attributes: tuple[Attribute, ...], *, strip_ice: bool, keep_crypto: bool
) -> tuple[Attribute, ...]:
    return tuple(
        a
        for a in attributes
        if not (strip_ice and a.name in ICE_ATTRIBUTES) and not (not keep_crypto and a.name == "crypto")
    )


def _addrtype(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise LocalProtocolError(f"relay address is not an IP address: {address!r}") from None
    if parsed.is_unspecified:
        raise LocalProtocolError("relay address may not be unspecified")
    return "IP6" if parsed.version == 6 else "IP4"
