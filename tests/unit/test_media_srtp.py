"""SDES ``a=crypto`` parsing (RFC 4568 §9.1) and the SRTP/SRTCP transform of a relay leg."""

from __future__ import annotations

import base64
import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.media.rtp import MediaError
from appliance.media.srtp import (
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    SdesCrypto,
    SrtpContext,
    SrtpError,
    answer_crypto,
    make_crypto,
    parse_crypto,
)

KEY_A = bytes(range(30))
KEY_B = bytes(range(100, 130))
B64_A = base64.b64encode(KEY_A).decode()
# The key||salt of RFC 4568 §9.1's example attribute.
RFC_KEY = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"


def rtp(seq: int, payload: bytes = b"\xd5" * 160, ssrc: int = 0x11223344) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, seq, seq * 160, ssrc) + payload


def rtcp_rr(ssrc: int = 0x11223344) -> bytes:
    # An empty receiver report (RFC 3550 §6.4.2): V=2, RC=0, PT=201, length 1 word after the header.
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def pair() -> tuple[SrtpContext, SrtpContext]:
    return SrtpContext(KEY_A, KEY_B), SrtpContext(KEY_B, KEY_A)


# --- parse_crypto vectors -----------------------------------------------------------------------------------


def test_parse_with_lifetime() -> None:
    crypto = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^31")
    assert crypto == SdesCrypto(1, AES_CM_128_HMAC_SHA1_80, base64.b64decode(RFC_KEY), 2**31, None)


def test_parse_without_lifetime() -> None:
    crypto = parse_crypto(f"7 AES_CM_128_HMAC_SHA1_32 inline:{B64_A}")
    assert (crypto.tag, crypto.suite, crypto.key, crypto.lifetime) == (
        7,
        AES_CM_128_HMAC_SHA1_32,
        KEY_A,
        None,
    )


def test_parse_decimal_lifetime_and_wsh() -> None:
    crypto = parse_crypto(f"2 AES_CM_128_HMAC_SHA1_80 inline:{B64_A}|{2**48} WSH=128")
    assert crypto.lifetime == 2**48
    assert crypto.window_size_hint == 128


@pytest.mark.parametrize(
    "crypto",
    [
        SdesCrypto(1, AES_CM_128_HMAC_SHA1_80, KEY_A),
        SdesCrypto(999_999_999, AES_CM_128_HMAC_SHA1_32, KEY_B, 2**48, 64),
    ],
)
def test_attribute_round_trip(crypto: SdesCrypto) -> None:
    assert parse_crypto(crypto.to_attribute()) == crypto


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4", "lifetime 2^20 is not supported"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:4", "MKI is not supported"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^31|1:4", "MKI is not supported"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVB!", "not valid base64"),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(16)).decode(),
            "16 octets, expected 30",
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(31)).decode(),
            "31 octets, expected 30",
        ),
        (f"1 AES_256_CM_HMAC_SHA1_80 inline:{RFC_KEY}", "unsupported crypto suite AES_256_CM_HMAC_SHA1_80"),
        (f"1 F8_128_HMAC_SHA1_80 inline:{RFC_KEY}", "unsupported crypto suite"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY};inline:{B64_A}", "more than one key"),
        (f"1 AES_CM_128_HMAC_SHA1_80 outline:{RFC_KEY}", "key method must be 'inline'"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} UNENCRYPTED_SRTP", "session parameter"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=1", "session parameter"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} WSH=32", "WSH=32 is below 64"),
        (f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}", "is not '<tag>"),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}", "is not '<tag>"),
        ("1 AES_CM_128_HMAC_SHA1_80", "is not '<tag>"),
        ("", "is not '<tag>"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^31|2^48", "more than one lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|forever", "not a number"),
    ],
)
def test_parse_refuses(value: str, reason: str) -> None:
    with pytest.raises(SrtpError) as info:
        parse_crypto(value)
    assert reason in info.value.reason
    assert isinstance(info.value, MediaError)


@given(st.text(max_size=200))
def test_parse_is_total_on_text(value: str) -> None:
    with contextlib.suppress(SrtpError):
        parse_crypto(value)


@given(st.integers(0, 80), st.text(alphabet="0123456789|:^;=+/ AWSHinle", max_size=12))
def test_parse_is_total_on_mutated_attribute(cut: int, noise: str) -> None:
    valid = f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^31 WSH=64"
    try:
        crypto = parse_crypto(valid[:cut] + noise + valid[cut:])
    except SrtpError:
        return
    assert len(crypto.key) == 30


# --- make_crypto / answer_crypto ----------------------------------------------------------------------------


def test_make_crypto_reads_back() -> None:
    value, key = make_crypto(3, lambda n: KEY_B[:n])
    assert key == KEY_B
    assert parse_crypto(value) == SdesCrypto(3, AES_CM_128_HMAC_SHA1_80, KEY_B)


def test_make_crypto_refuses_short_randomness_and_bad_tag() -> None:
    with pytest.raises(ValueError, match="expected 30"):
        make_crypto(1, lambda n: bytes(n - 1))
    with pytest.raises(ValueError, match="tag"):
        make_crypto(10**9, bytes)


def test_answer_picks_first_supported_offer() -> None:
    offers = [SdesCrypto(1, AES_CM_128_HMAC_SHA1_32, KEY_A), SdesCrypto(2, AES_CM_128_HMAC_SHA1_80, KEY_B)]
    assert answer_crypto(offers) == offers[0]
    assert answer_crypto(offers, suites={AES_CM_128_HMAC_SHA1_80}) == offers[1]
    assert answer_crypto(offers, suites=()) is None
    assert answer_crypto([]) is None


# --- SrtpContext ------------------------------------------------------------------------------------------


def test_round_trip_both_ways() -> None:
    left, right = pair()
    for seq in range(5):
        packet = rtp(seq)
        protected = left.protect(packet)
        assert protected != packet
        assert len(protected) == len(packet) + 10  # 80-bit authentication tag
        assert right.unprotect(protected) == packet
        assert left.unprotect(right.protect(rtp(seq, ssrc=7))) == rtp(seq, ssrc=7)


def test_round_trip_sha1_32() -> None:
    left = SrtpContext(KEY_A, KEY_B, suite=AES_CM_128_HMAC_SHA1_32)
    right = SrtpContext(KEY_B, KEY_A, suite=AES_CM_128_HMAC_SHA1_32)
    protected = left.protect(rtp(1))
    assert len(protected) == len(rtp(1)) + 4
    assert right.unprotect(protected) == rtp(1)


def test_wrong_key_is_auth_failure() -> None:
    left, _ = pair()
    stranger = SrtpContext(KEY_A, KEY_A)
    with pytest.raises(SrtpError, match="authentication failure"):
        stranger.unprotect(left.protect(rtp(1)))
    assert (stranger.auth_failures, stranger.replays) == (1, 0)


@pytest.mark.parametrize("offset", [0, 2, 12, 100, 171, 172, 181])
def test_tampered_packet_rejected(offset: int) -> None:
    left, right = pair()
    protected = bytearray(left.protect(rtp(1)))
    protected[offset] ^= 0x01
    with pytest.raises(SrtpError):
        right.unprotect(bytes(protected))
    assert right.auth_failures == 1
    # The genuine packet still passes: a forged one does not poison the replay window.
    assert right.unprotect(left.protect(rtp(2))) == rtp(2)


def test_replay_rejected() -> None:
    left, right = pair()
    protected = left.protect(rtp(10))
    assert right.unprotect(protected) == rtp(10)
    with pytest.raises(SrtpError, match="replay"):
        right.unprotect(protected)
    assert (right.replays, right.auth_failures) == (1, 0)


def test_rtcp_round_trip_replay_and_tamper() -> None:
    left, right = pair()
    report = rtcp_rr()
    protected = left.protect_rtcp(report)
    assert len(protected) == len(report) + 4 + 10  # E flag + SRTCP index, then the tag
    assert right.unprotect_rtcp(protected) == report
    with pytest.raises(SrtpError, match="replay"):
        right.unprotect_rtcp(protected)
    tampered = bytearray(left.protect_rtcp(report))
    tampered[5] ^= 0x80
    with pytest.raises(SrtpError, match="authentication"):
        right.unprotect_rtcp(bytes(tampered))
    assert (right.replays, right.auth_failures) == (1, 1)


def test_oversized_and_malformed_packets_are_srtp_errors() -> None:
    left, right = pair()
    with pytest.raises(SrtpError, match="too long"):
        left.protect(rtp(1, payload=bytes(1400)))
    with pytest.raises(SrtpError, match="too long"):
        right.unprotect(bytes(1501))
    with pytest.raises(SrtpError):
        left.protect(b"\x80")
    with pytest.raises(SrtpError):
        right.unprotect(b"")


def test_context_refuses_bad_keys() -> None:
    with pytest.raises(ValueError, match="30 octets"):
        SrtpContext(KEY_A[:16], KEY_B)
    with pytest.raises(ValueError, match="suite"):
        SrtpContext(KEY_A, KEY_B, suite="AES_256_CM_HMAC_SHA1_80")


@given(st.binary(max_size=1600))
def test_unprotect_random_bytes_only_raises_srtp_error(data: bytes) -> None:
    _, right = pair()
    for transform in (right.unprotect, right.unprotect_rtcp):
        with contextlib.suppress(SrtpError):
            transform(data)


@given(st.integers(0, 181), st.integers(1, 255))
def test_any_single_byte_change_is_refused(offset: int, flip: int) -> None:
    left, right = pair()
    protected = bytearray(left.protect(rtp(1)))
    protected[offset] ^= flip
    with pytest.raises(SrtpError):
        right.unprotect(bytes(protected))
