"""Certificates for the sync API tests: the site PKI, a second CA the appliance does not know, expired
and not-yet-valid certificates, all under a temporary directory."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from appliance.sync import pki


@dataclass(frozen=True)
class ClientFiles:
    certificate: Path
    key: Path


def write_client(directory: Path, name: str, issued: pki.Issued) -> ClientFiles:
    files = ClientFiles(directory / f"{name}.pem", directory / f"{name}.key")
    pki.write_issued(issued, files.certificate, files.key)
    return files


def site(state_dir: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> pki.SitePki:
    return pki.ensure_site_pki(state_dir, hosts, site="test-site")


def site_ca(paths: pki.SitePki) -> pki.Issued:
    return pki.load_issued(paths.ca_certificate, paths.directory / "ca.key")


def foreign_client(directory: Path) -> ClientFiles:
    """A client certificate from a CA the appliance does not trust."""
    other = pki.make_ca("another CA")
    return write_client(directory, "foreign", pki.issue(other, "intruder", client=True))


def expired_client(directory: Path, paths: pki.SitePki) -> ClientFiles:
    """A client certificate from the site CA that expired yesterday."""
    now = dt.datetime.now(dt.UTC)
    issued = pki.issue(
        site_ca(paths),
        "expired cloud",
        client=True,
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    return write_client(directory, "expired", issued)


def new_server(paths: pki.SitePki, common_name: str = "rotated") -> pki.Issued:
    """A fresh server certificate from the site CA (for rotation), not written anywhere yet."""
    return pki.issue(site_ca(paths), common_name, server=True, hosts=("127.0.0.1", "localhost"))
