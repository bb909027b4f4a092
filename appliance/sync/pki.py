"""The site's private CA for the sync API: EC P-256 keys and X.509v3 certificates (RFC 5280).

Theory of operation. A site not yet enrolled with the cloud's CA makes its own on first start, under
``<state_dir>/keys/sync/``: a CA (basicConstraints CA, keyCertSign), the appliance's server certificate
(serverAuth, subjectAltName with the addresses and names it is reached by) and one client certificate
for the cloud (clientAuth), all signed by that CA. The TLS server trusts only clients signed by the CA
(``ca.pem``), so a client certificate from any other CA is refused in the handshake. Files are written
once, atomically (:func:`appliance.durable.write_atomically`); private keys are 0600. The issuing
functions are public so that tests can make a second CA, an expired certificate and so on.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.durable import write_atomically

CA_DAYS: Final = 20 * 365
LEAF_DAYS: Final = 5 * 365
_BACKDATE: Final = dt.timedelta(minutes=5)  # tolerate a peer clock a little behind ours


@dataclass(frozen=True, slots=True)
class Issued:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class SitePki:
    """Paths of the site's PKI files (PEM)."""

    directory: Path
    ca_certificate: Path
    server_certificate: Path
    server_key: Path
    client_certificate: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(
    not_before: dt.datetime | None, days: int, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before if not_before is not None else dt.datetime.now(dt.UTC) - _BACKDATE
    return start, not_after if not_after is not None else start + dt.timedelta(days=days)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """digitalSignature for TLS (ECDHE-ECDSA); keyCertSign and cRLSign for a CA (RFC 5280 §4.2.1.3)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A self-signed CA certificate (basicConstraints CA, path length 0; RFC 5280 §4.2.1.9)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(not_before, CA_DAYS, not_after)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, certificate)


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue(
    ca: Issued,
    common_name: str,
    *,
    server: bool = False,
    client: bool = False,
    hosts: Iterable[str] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A leaf certificate signed by ``ca``: serverAuth and a subjectAltName of ``hosts`` (IP addresses
    or DNS names) when ``server``, clientAuth when ``client`` (RFC 5280 §4.2.1.6, §4.2.1.12)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(not_before, LEAF_DAYS, not_after)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    san = _san(hosts)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def load_issued(certificate: Path, key: Path) -> Issued:
    """A key and certificate from PEM files."""
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key} does not hold an EC private key")
    return Issued(loaded, x509.load_pem_x509_certificate(certificate.read_bytes()))


def write_issued(issued: Issued, certificate: Path, key: Path) -> None:
    """Write the key (0600) and then the certificate (0644), each atomically."""
    write_atomically(key, issued.key_pem(), mode=0o600)
    write_atomically(certificate, issued.certificate_pem(), mode=0o644)


def site_paths(state_dir: Path) -> SitePki:
    directory = state_dir / "keys" / "sync"
    return SitePki(
        directory=directory,
        ca_certificate=directory / "ca.pem",
        server_certificate=directory / "server.pem",
        server_key=directory / "server.key",
        client_certificate=directory / "cloud-client.pem",
        client_key=directory / "cloud-client.key",
    )


def ensure_site_pki(state_dir: Path, hosts: Iterable[str], *, site: str = "appliance") -> SitePki:
    """The site's PKI under ``<state_dir>/keys/sync``, made on first call and reused afterwards.

    Each missing piece is made from what exists: a server or client certificate lost on its own is
    issued again from the kept CA. The CA key (``ca.key``, 0600) stays on the appliance."""
    paths = site_paths(state_dir)
    paths.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(paths.directory, 0o700)
    ca_key = paths.directory / "ca.key"
    if paths.ca_certificate.exists() and ca_key.exists():
        ca = load_issued(paths.ca_certificate, ca_key)
    else:
        ca = make_ca(f"{site} sync CA")
        write_issued(ca, paths.ca_certificate, ca_key)
        # A new CA invalidates whatever it did not sign.
        for stale in (paths.server_certificate, paths.client_certificate):
            stale.unlink(missing_ok=True)
    if not (paths.server_certificate.exists() and paths.server_key.exists()):
        hosts = list(hosts)
        server = issue(ca, hosts[0] if hosts else site, server=True, hosts=hosts)
        write_issued(server, paths.server_certificate, paths.server_key)
    if not (paths.client_certificate.exists() and paths.client_key.exists()):
        write_issued(issue(ca, f"{site} cloud", client=True), paths.client_certificate, paths.client_key)
    return paths


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex (the ``sha256`` of sync.cddl ``certificate-info``)."""
    return certificate.fingerprint(hashes.SHA256()).hex()
