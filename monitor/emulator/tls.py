"""HTTPS for the emulated fleet, with certificates shaped like a real instance's.

Real instances only speak HTTPS, and against them a connection opened for a probe is a
TLS handshake too. A real instance presents a certificate that names its own host and
little else, issued by an intermediate CA that it sends along, under a root the client
trusts. The emulator does the same on loopback: `write_certificates(dir)` writes a root
CA (`ca`: what a client trusts, through `SSL_CERT_FILE` or a context's `cafile`), an
intermediate, one key for every instance, and for every loopback address the instances
listen on (127.0.0.1-254) a certificate naming that address and `localhost`, stored with
the intermediate after it. Each instance socket serves the certificate of its own
address (`server_context(host)`): one certificate naming all 254 addresses would make
every client handshake parse and check 255 names, which no real instance asks of it.
A client that does not trust the root sees a certificate failure.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "emulator-ca.pem"
KEY_NAME = "emulator-key.pem"
HOSTS = tuple(f"127.0.0.{n}" for n in range(1, 255))


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path  # the root a client trusts
    key: Path  # every instance's private key (mode 0600)
    directory: Path

    def chain(self, host: str) -> Path:
        """The certificate for `host`, then the intermediate: what its socket sends."""
        if host not in HOSTS:
            raise ValueError(f"no certificate for {host!r}: the emulator listens on 127.0.0.x")
        return self.directory / f"emulator-{host}.pem"

    def server_context(self, host: str = "127.0.0.1") -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.chain(host), self.key)
        return context


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    now: datetime.datetime,
    days: int,
) -> x509.Certificate:
    public = key.public_key()
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )


def write_certificates(directory: Path, *, days: int = 30) -> TlsFiles:
    """New P-256 keys and certificates, valid from a day ago for `days` days."""
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca("snowmon emulator root CA", root_key, None, now, days)
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = _ca("snowmon emulator issuing CA", middle_key, (root, root_key), now, days)
    key = ec.generate_private_key(ec.SECP256R1())
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / CA_NAME, directory / KEY_NAME, directory)
    files.ca.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    middle_pem = middle.public_bytes(serialization.Encoding.PEM)
    builder = (
        x509.CertificateBuilder()
        .issuer_name(middle.subject)
        .public_key(key.public_key())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(middle_key.public_key()),
            critical=False,
        )
    )
    for host in HOSTS:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address(host))]
        cert = (
            builder.subject_name(_name(host))
            .serial_number(x509.random_serial_number())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(middle_key, hashes.SHA256())
        )
        files.chain(host).write_bytes(cert.public_bytes(serialization.Encoding.PEM) + middle_pem)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return files
