"""Certificates made at test time: a CA, server and client certificates, an expired one, one from another CA.

Keys are written as unencrypted PKCS#8 (-----BEGIN PRIVATE KEY-----), the one form every consumer here
reads: Python's ssl, gRPC, librdkafka and the Kafka broker.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key


@dataclass(frozen=True)
class Pair:
    """A certificate chain file and its key file."""

    cert: Path
    key: Path

    def pem(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()

    def copy_to(self, other: Pair) -> None:
        """Write this pair over `other`'s files (a certificate rotated on disk)."""
        other.key.write_bytes(self.key.read_bytes())
        other.cert.write_bytes(self.cert.read_bytes())


class Authority:
    """A test CA that writes its certificate and the certificates it issues into `directory`."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.ca = trustme.CA(organization_name=f"Maple test {name}")
        self.cert = directory / f"{name}-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.cert))

    def issue(self, name: str, *identities: str, expired: bool = False) -> Pair:
        """A leaf certificate for `identities` (host names or IPs; a client's name for client certificates)."""
        now = datetime.datetime.now(datetime.UTC)
        window = {"not_before": now - datetime.timedelta(days=30), "not_after": now - datetime.timedelta(days=1)} \
            if expired else {}
        leaf = self.ca.issue_cert(*(identities or ("127.0.0.1", "localhost")), common_name=name, **window)
        pair = Pair(self.directory / f"{self.name}-{name}.pem", self.directory / f"{self.name}-{name}-key.pem")
        pair.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key = load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
        pair.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        pair.key.chmod(0o600)
        return pair


@dataclass(frozen=True)
class PKI:
    """Everything the TLS tests need, in one directory."""

    server_ca: Authority
    client_ca: Authority
    other_ca: Authority
    server: Pair
    client: Pair
    expired_client: Pair
    foreign_client: Pair

    @classmethod
    def create(cls, directory: Path) -> PKI:
        directory.mkdir(parents=True, exist_ok=True)
        server_ca, client_ca, other_ca = (Authority(directory, n) for n in ("server", "client", "other"))
        return cls(server_ca, client_ca, other_ca,
                   server=server_ca.issue("server", "127.0.0.1", "localhost"),
                   client=client_ca.issue("client", "maple-test-client"),
                   expired_client=client_ca.issue("expired", "maple-test-client", expired=True),
                   foreign_client=other_ca.issue("foreign", "maple-test-client"))
