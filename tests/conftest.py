"""Fixtures shared by every test folder: a throwaway certificate authority for TLS tests.

``tls_pki`` writes PEM files made with the ``cryptography`` package (dev extra) into a
temporary folder once per session. They are a CA, a server certificate for 127.0.0.1
and localhost, and a client certificate. A second CA, which the server does not trust,
signs another client certificate, and an encrypted key and a DER file serve the input
checks. EC P-256 keys keep it fast.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERTIFICATE_LIFETIME = datetime.timedelta(days=2)
# Started a little in the past, so a clock a few seconds behind still accepts them.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class TlsPki:
    """Paths of the PEM files written by the tls_pki fixture."""

    folder: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A CA the server does not trust, and a client certificate it signed.
    other_ca_cert: Path
    other_client_cert: Path
    other_client_key: Path
    # The client key encrypted with the passphrase "secret".
    encrypted_client_key: Path
    # The CA certificate in DER form instead of PEM.
    der_ca_cert: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CERTIFICATE_LIFETIME)
    )


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    certificate = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _make_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    usage: x509.ObjectIdentifier,
    alternative_names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name(common_name), ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alternative_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alternative_names), critical=False
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def _write_certificate(path: Path, certificate: x509.Certificate) -> Path:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(
    path: Path,
    key: ec.EllipticCurvePrivateKey,
    encryption: serialization.KeySerializationEncryption | None = None,
) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            encryption or serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _make_ca("llmping test CA")
    other_ca_key, other_ca_cert = _make_ca("llmping other CA")
    server_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    server_key, server_cert = _make_leaf(
        ca_key, ca_cert, "controller", ExtendedKeyUsageOID.SERVER_AUTH, server_names
    )
    client_key, client_cert = _make_leaf(
        ca_key, ca_cert, "agent", ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    other_key, other_cert = _make_leaf(
        other_ca_key, other_ca_cert, "stranger", ExtendedKeyUsageOID.CLIENT_AUTH, []
    )

    der_ca_cert = folder / "ca.der"
    der_ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.DER))
    return TlsPki(
        folder=folder,
        ca_cert=_write_certificate(folder / "ca.crt", ca_cert),
        server_cert=_write_certificate(folder / "server.crt", server_cert),
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=_write_certificate(folder / "client.crt", client_cert),
        client_key=_write_key(folder / "client.key", client_key),
        other_ca_cert=_write_certificate(folder / "other-ca.crt", other_ca_cert),
        other_client_cert=_write_certificate(folder / "other-client.crt", other_cert),
        other_client_key=_write_key(folder / "other-client.key", other_key),
        encrypted_client_key=_write_key(
            folder / "client-encrypted.key",
            client_key,
            serialization.BestAvailableEncryption(b"secret"),
        ),
        der_ca_cert=der_ca_cert,
    )
