"""A self-signed certificate for the fake Google Ads server, made once per process.

The google-ads client always opens a TLS channel and reads its roots once per
process from ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``: :func:`trusted_pair` must run
before the first TLS channel of the process (the tests' ``pytest_configure``
and the benchmark's first line call it).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_PAIR: tuple[bytes, bytes] | None = None


def trusted_pair() -> tuple[bytes, bytes]:
    """``(certificate PEM, private key PEM)`` for 127.0.0.1 and localhost; the process trusts it."""
    global _PAIR
    if _PAIR is not None:
        return _PAIR
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())  # fmt: skip
    folder = tempfile.mkdtemp(prefix="fake-google-ads-")
    path = os.path.join(folder, "roots.pem")
    with open(path, "wb") as f:
        f.write(cert_pem)
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = path
    os.environ["no_grpc_proxy"] = "127.0.0.1,localhost"  # noqa: SIM112 (gRPC reads the lowercase name)
    _PAIR = (cert_pem, key_pem)
    return _PAIR
