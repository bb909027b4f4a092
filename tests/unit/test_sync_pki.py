"""The site PKI of the sync API: made once, keys private, certificates with the right extensions."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.sync import pki
from tests import sync_pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_site_pki_is_made_once_with_private_keys(tmp_path: Path) -> None:
    paths = sync_pki.site(tmp_path)
    first = {p: p.read_bytes() for p in (paths.ca_certificate, paths.server_certificate, paths.client_key)}
    again = pki.ensure_site_pki(tmp_path, ["127.0.0.1"])
    assert again == paths
    assert {p: p.read_bytes() for p in first} == first
    for key in (paths.server_key, paths.client_key, paths.directory / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.directory.stat().st_mode) == 0o700


def test_lost_server_certificate_is_issued_again_from_the_same_ca(tmp_path: Path) -> None:
    paths = sync_pki.site(tmp_path)
    ca = paths.ca_certificate.read_bytes()
    old = paths.server_certificate.read_bytes()
    paths.server_certificate.unlink()
    pki.ensure_site_pki(tmp_path, ["127.0.0.1"])
    assert paths.ca_certificate.read_bytes() == ca
    assert paths.server_certificate.read_bytes() != old


def test_certificates_carry_ca_server_and_client_extensions(tmp_path: Path) -> None:
    paths = sync_pki.site(tmp_path)
    ca, server, client = (
        _load(p) for p in (paths.ca_certificate, paths.server_certificate, paths.client_certificate)
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    assert len(pki.fingerprint(server)) == 64


def test_openssl_accepts_the_chain(tmp_path: Path) -> None:
    paths = sync_pki.site(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(paths.server_certificate, paths.server_key)
    server_side.load_verify_locations(paths.ca_certificate)
    client_side = ssl.create_default_context(cafile=paths.ca_certificate)
    client_side.load_cert_chain(paths.client_certificate, paths.client_key)


def test_foreign_and_expired_clients_are_not_from_the_site_ca(tmp_path: Path) -> None:
    paths = sync_pki.site(tmp_path)
    foreign = _load(sync_pki.foreign_client(tmp_path).certificate)
    assert foreign.issuer != _load(paths.ca_certificate).subject
    expired = _load(sync_pki.expired_client(tmp_path, paths).certificate)
    assert expired.not_valid_after_utc < _load(paths.client_certificate).not_valid_before_utc
