"""The sandbox's PKI: one throw-away CA per sandbox, made fresh on every ``up``.

Client-certificate auth with ``O=system:masters`` is what the control-plane components
and the admin kubeconfig use: it needs no tokens, no bootstrap and no RBAC objects, and
works before the apiserver has created any. TLS keys are ECDSA P-256 because they are
generated on every start and RSA generation is the slow part; the service-account key is
RSA because that is what every Kubernetes version accepts for signing tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files a sandbox's components are started with."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path

    @classmethod
    def under(cls, directory: Path) -> Pki:
        return cls(
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            serving_cert=directory / "apiserver.crt",
            serving_key=directory / "apiserver.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            service_account_key=directory / "sa.key",
            service_account_pub=directory / "sa.pub",
        )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def make_pki(directory: Path, first_service_ip: str) -> Pki:
    """Write a CA, the apiserver's serving pair, the admin client pair and the SA key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki.under(directory)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("dsroll-sandbox-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        common_name: str, organization: str | None, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None
    ) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(_name(common_name, organization), ca_name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(first_service_ip)),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    serving_cert, serving_key = leaf("kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH, sans)
    admin_cert, admin_key = leaf("dsroll-sandbox-admin", "system:masters", ExtendedKeyUsageOID.CLIENT_AUTH, None)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    _write(pki.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(pki.ca_key, _key_pem(ca_key), private=True)
    _write(pki.serving_cert, serving_cert, private=False)
    _write(pki.serving_key, serving_key, private=True)
    _write(pki.admin_cert, admin_cert, private=False)
    _write(pki.admin_key, admin_key, private=True)
    _write(pki.service_account_key, _key_pem(sa_key), private=True)
    _write(pki.service_account_pub, sa_pub, private=False)
    return pki
