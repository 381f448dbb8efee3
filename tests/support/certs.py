"""Throw-away TLS material for test servers: CAs and server certificates made with ``cryptography``.

Clients trust a CA by its file (``ca_bundle=...``), so verification stays on in tests exactly as in production
(DESIGN.md section 2).  ECDSA P-256 keys, valid from yesterday for 30 days.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class TLSFiles:
    """PEM paths: ``ca_cert`` (trust this), ``cert`` (server certificate followed by the CA), ``key``."""

    ca_cert: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA key and self-signed certificate that can sign server certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))


def make_ca(common_name: str = "email_service test CA") -> CertificateAuthority:
    """A new self-signed CA (BasicConstraints CA, keyCertSign/cRLSign)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _validity(x509.CertificateBuilder())
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, cert)


def make_server_cert(
    ca: CertificateAuthority, hosts: tuple[str, ...]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate signed by ``ca`` whose subjectAltName lists ``hosts`` (DNS names or IP addresses)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _validity(x509.CertificateBuilder())
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return key, cert


def write_ca(ca: CertificateAuthority, path: Path) -> Path:
    """Write the CA certificate (what clients trust) to ``path``."""
    path.write_bytes(ca.cert.public_bytes(_PEM))
    return path


def write_server_files(
    ca: CertificateAuthority, hosts: tuple[str, ...], cert_path: Path, key_path: Path
) -> tuple[Path, Path]:
    """Write a server certificate for ``hosts`` (followed by the CA) and its key (mode 0600)."""
    key, cert = make_server_cert(ca, hosts)
    cert_path.write_bytes(cert.public_bytes(_PEM) + ca.cert.public_bytes(_PEM))
    key_path.write_bytes(key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def write_tls_files(tls_dir: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TLSFiles:
    """Create ``tls_dir`` (0755) with ``ca.pem``, ``server.pem`` and ``server.key`` (0600) for ``hosts``."""
    tls_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    ca = make_ca()
    cert, key = write_server_files(ca, hosts, tls_dir / "server.pem", tls_dir / "server.key")
    return TLSFiles(write_ca(ca, tls_dir / "ca.pem"), cert, key)
