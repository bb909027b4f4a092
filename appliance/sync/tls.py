"""TLS of the sync API: mutual authentication, and certificate rotation without a restart.

Theory of operation. The server context requires TLS 1.2 or later and a client certificate that chains to
the client CA (``CERT_REQUIRED``), so an unknown client fails in the handshake and never reaches HTTP. To
rotate the appliance's certificate, the new chain is loaded into the *same* :class:`ssl.SSLContext`:
OpenSSL copies the certificate into each connection when its handshake starts, so connections already
open keep the one they negotiated and every new handshake presents the new one. Nothing is restarted and
no connection is dropped.

A pair is first loaded into a scratch context, so a half-written file or a key that does not match its
certificate is reported and the running pair stays in force. :meth:`ServerTls.check` compares the
files' modification times (cheap, called every few seconds); :meth:`ServerTls.reload_certificates` loads
unconditionally (SIGHUP).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from appliance.sync.codec import utc_time
from appliance.sync.pki import fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The certificate presented now (``certificate-info`` of sync.cddl)."""

    subject: str
    not_after: float
    sha256: str

    def as_message(self) -> dict[str, Any]:
        return {"subject": self.subject, "not_after": utc_time(self.not_after), "sha256": self.sha256}


def _info(chain_pem: bytes) -> CertificateInfo:
    leaf = x509.load_pem_x509_certificate(chain_pem)
    return CertificateInfo(
        leaf.subject.rfc4514_string(), leaf.not_valid_after_utc.timestamp(), fingerprint(leaf)
    )


def _new_context(client_ca: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(client_ca))
    return context


class ServerTls:
    """The server's :class:`ssl.SSLContext` over a certificate chain, its key and the client CA (PEM)."""

    def __init__(self, certificate: Path, private_key: Path, client_ca: Path) -> None:
        self._certificate = certificate
        self._key = private_key
        self._client_ca = client_ca
        self.context = _new_context(client_ca)
        self._stamp = self._mtimes()
        self.info = self._load(self.context)

    def _mtimes(self) -> tuple[int, int]:
        return (self._certificate.stat().st_mtime_ns, self._key.stat().st_mtime_ns)

    def _load(self, context: ssl.SSLContext) -> CertificateInfo:
        chain = self._certificate.read_bytes()
        context.load_cert_chain(str(self._certificate), str(self._key))
        return _info(chain)

    def reload_certificates(self) -> bool:
        """Load the certificate files into the running context; True if they were loaded. A pair that
        does not load (missing, half written, key not matching) is logged and the running pair kept."""
        try:
            stamp = self._mtimes()
            self._load(_new_context(self._client_ca))  # the trial: nothing changes if this fails
            info = self._load(self.context)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("sync API certificate not reloaded, keeping %s: %s", self.info.subject, exc)
            return False
        self._stamp = stamp
        if info != self.info:
            log.info(
                "sync API certificate %s -> %s (sha256 %s)", self.info.subject, info.subject, info.sha256
            )
        self.info = info
        return True

    def check(self) -> bool:
        """Reload if either file changed since the last load; True if a new pair was loaded."""
        try:
            stamp = self._mtimes()
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        return self.reload_certificates()
