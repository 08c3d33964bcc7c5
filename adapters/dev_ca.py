"""A certificate authority for trials and tests (`mpi tls dev-ca`): its certificate, a server
certificate for this machine and a client certificate per establishment, as PEM files.

Not for production: there, the hospital's PKI issues the certificates (IGC Santé server and
client certificates work like any X.509 certificate). The keys are ECDSA P-256, written
readable by their owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevCa", "ClientFiles", "write_dev_ca", "client_name"]

_CA_DAYS = 5 * 365
_LEAF_DAYS = 2 * 365


def client_name(code: str) -> str:
    """The name of the client certificate `mpi tls dev-ca` writes for an establishment (the
    default authorities file declares it in that establishment's tls_client_names)."""
    return f"{code.lower()}-his.example"


@dataclass(frozen=True)
class ClientFiles:
    establishment: str
    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class DevCa:
    """The files written: the CA's certificate (give it as tls_client_ca and to the peers)
    and key, the server's certificate and key (tls_cert, tls_key), the clients'."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    server_names: tuple[str, ...]
    clients: list[ClientFiles] = field(default_factory=list)


def write_dev_ca(directory: Path, establishments: Iterable[str], *,
                 names: dict[str, str] | None = None,
                 server_names: Iterable[str] | None = None,
                 organization: str = "Nancy MPI development CA") -> DevCa:
    """Write a new CA, a server certificate (SANs: ``server_names``, default localhost,
    127.0.0.1, ::1 and this host's names) and one client certificate per establishment code
    (its name from ``names``, else :func:`client_name`) into ``directory``; existing files are
    replaced."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} root")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    result = DevCa(ca_cert=directory / "ca.pem", ca_key=directory / "ca-key.pem",
                   server_cert=directory / "server.pem", server_key=directory / "server-key.pem",
                   server_names=tuple(server_names or _this_host()))
    _write_cert(result.ca_cert, ca_cert)
    _write_key(result.ca_key, ca_key)

    def leaf(common_name: str, sans: list[x509.GeneralName],
             usage: x509.ObjectIdentifier) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                             x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=False,
                                         key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert, key

    cert, key = leaf(result.server_names[0], [_general_name(n) for n in result.server_names],
                     ExtendedKeyUsageOID.SERVER_AUTH)
    _write_cert(result.server_cert, cert)
    _write_key(result.server_key, key)
    for code in dict.fromkeys(establishments):
        name = (names or {}).get(code) or client_name(code)
        cert, key = leaf(name, [x509.DNSName(name)], ExtendedKeyUsageOID.CLIENT_AUTH)
        files = ClientFiles(code, name, directory / f"client-{code.lower()}.pem",
                            directory / f"client-{code.lower()}-key.pem")
        _write_cert(files.cert, cert)
        _write_key(files.key, key)
        result.clients.append(files)
    return result


def _this_host() -> list[str]:
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]
    return list(dict.fromkeys(n for n in names if n))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
