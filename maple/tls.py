"""TLS for Maple's links: server certificates that reload without a restart, client contexts, secret files.

A server (the OTLP ingest) holds a `ServerTLS`: the certificate, key and client CA bundle named by its settings,
read once at start (a bad file stops start-up with the setting named) and again on `reload()` (SIGHUP, or every
`reload_interval_s`). A reload that finds the files changed builds a new TLS context, and only connections
made after it use it: open connections keep the context they were made with, so nothing is dropped. A reload
that cannot use the files (a key that does not match the certificate, a file half-written by a rotation) keeps
the certificate being served, says why, and is tried again at the next reload.

Errors name the setting (`ingest_tls.cert_file (MAPLE_INGEST_TLS_CERT_FILE)`), never the file's contents:
private keys and passwords are read from files or the environment and are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from maple.settings import ServerTLSSettings, SettingsError

log = logging.getLogger(__name__)

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# gRPC reports the negotiated version as OpenSSL names it (auth context key ssl_tls_version).
_VERSION_NAMES = {"TLSv1": (1, 0), "TLSv1.1": (1, 1), "TLSv1.2": (1, 2), "TLSv1.3": (1, 3)}


def _env(key: str) -> str:
    return "MAPLE_" + key.replace(".", "_").upper()


def read_file(key: str, path: str, *, pem: bool = False) -> bytes:
    """The contents of the file a setting names; SettingsError naming the setting if it cannot be used."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise SettingsError(f"cannot read {key} ({_env(key)}): {path}: {exc.strerror or exc}") from exc
    if pem and b"-----BEGIN " not in data:
        raise SettingsError(f"invalid value for {key} ({_env(key)}): {path} holds no PEM block "
                            "(-----BEGIN ...-----)")
    return data


def read_secret(key: str, value: str, file_key: str, path: str) -> str:
    """A secret given directly (an environment variable) or in a file (a mounted secret, newline-trimmed)."""
    if path:
        return read_file(file_key, path).decode().rstrip("\r\n")
    return value


_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log a warning about a setting once per process (clients are built many times)."""
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


def warn_insecure(key: str, what: str) -> None:
    """Say once per process, loudly, that a link's certificates are not verified."""
    warn_once(key, f"{key} is on: {what} certificates are NOT verified; anyone on the network path can read "
                   "and change this traffic. Use it only for a test setup.")


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the first certificate's DER, as in `openssl x509 -fingerprint -sha256` (for logs)."""
    text = cert_pem.decode("ascii", "replace")
    start = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        return "?"
    der = ssl.PEM_cert_to_DER_cert(text[start:end + len("-----END CERTIFICATE-----")])
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 16, 2)) + "..."


def version_allowed(negotiated: str, minimum: str) -> bool:
    """Whether a negotiated version name (OpenSSL's, e.g. 'TLSv1.3') meets `minimum` ('1.2' or '1.3')."""
    have = _VERSION_NAMES.get(negotiated)
    want = tuple(int(part) for part in minimum.split("."))
    return have is not None and have >= want


# ---------------------------------------------------------------------------------------------------
# Servers


@dataclass(frozen=True)
class ServerCertificates:
    """One loaded generation of a server's files, as bytes (gRPC takes these) and as a built context."""

    generation: int
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext
    digest: str


class ServerTLS:
    """A server's certificate, key and client CA bundle from files, reloadable while the server runs.

    `http_context()` is what an asyncio server listens with (aiohttp): its handshakes switch to the newest
    loaded context as they start. gRPC reads `current` through its certificate fetcher (ingest/grpc.py).
    """

    def __init__(self, tls: ServerTLSSettings, section: str = "ingest_tls") -> None:
        if not tls.cert_file:
            raise ValueError(f"{section}.cert_file is not set: the server is plaintext")
        self.settings = tls
        self.section = section
        self._lock = threading.Lock()
        self.current = self._load(generation=1)  # bad files stop start-up here, naming the setting
        self._last_failure = ""
        log.info("%s: serving certificate %s (%s)%s, TLS %s and newer", section, tls.cert_file,
                 fingerprint(self.current.cert_chain), ", client certificates required" if self.mutual else "",
                 tls.min_version)

    @property
    def mutual(self) -> bool:
        return bool(self.settings.client_ca_file)

    def _key(self, name: str) -> str:
        return f"{self.section}.{name}"

    def _read(self) -> tuple[bytes, bytes, bytes | None, str]:
        tls = self.settings
        chain = read_file(self._key("cert_file"), tls.cert_file, pem=True)
        key = read_file(self._key("key_file"), tls.key_file, pem=True)
        client_ca = read_file(self._key("client_ca_file"), tls.client_ca_file, pem=True) if tls.client_ca_file else None
        digest = hashlib.sha256(b"\0".join([chain, key, client_ca or b""])).hexdigest()
        return chain, key, client_ca, digest

    def _context(self) -> ssl.SSLContext:
        tls = self.settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        try:
            context.load_cert_chain(str(Path(tls.cert_file).expanduser()), str(Path(tls.key_file).expanduser()))
        except ssl.SSLError as exc:
            raise SettingsError(f"invalid value for {self._key('key_file')} ({_env(self._key('key_file'))}): the "
                                f"certificate and key cannot be used together ({exc.reason or exc})") from exc
        except OSError as exc:
            raise SettingsError(f"cannot read {self._key('cert_file')} or {self._key('key_file')}: "
                                f"{exc.strerror or exc}") from exc
        if tls.client_ca_file:
            try:
                context.load_verify_locations(cafile=str(Path(tls.client_ca_file).expanduser()))
            except (ssl.SSLError, OSError) as exc:
                key = self._key("client_ca_file")
                raise SettingsError(f"invalid value for {key} ({_env(key)}): no CA certificate could be "
                                    f"loaded ({exc})") from exc
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _load(self, generation: int, files: tuple[bytes, bytes, bytes | None, str] | None = None) -> ServerCertificates:
        chain, key, client_ca, digest = files or self._read()
        return ServerCertificates(generation, chain, key, client_ca, self._context(), digest)

    def reload(self) -> bool:
        """Load the files again if they changed; True when new certificates are now served to new connections.

        Never raises: files that cannot be used leave the current certificates in place (said once per
        distinct content), and the next reload tries again."""
        with self._lock:
            try:
                files = self._read()
                if files[3] == self.current.digest:
                    return False
                loaded = self._load(self.current.generation + 1, files)
            except SettingsError as exc:
                if str(exc) != self._last_failure:
                    self._last_failure = str(exc)
                    log.warning("%s: new files not loaded, still serving the previous certificate: %s",
                                self.section, exc)
                return False
            self.current = loaded
            self._last_failure = ""
        log.info("%s: reloaded; new connections get certificate %s (%s)", self.section, self.settings.cert_file,
                 fingerprint(loaded.cert_chain))
        return True

    def http_context(self) -> ssl.SSLContext:
        """The context an asyncio server listens with. Each handshake moves to the newest loaded context in the
        server-name callback, which OpenSSL runs early in every handshake, with or without SNI. Version limits
        and whether a client certificate is asked for come from this listening context (they are settings, not
        files, and change with a restart)."""
        listening = self._context()

        def newest(ssl_object: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
            current = self.current.context
            if ssl_object.context is not current:
                ssl_object.context = current
            return None

        listening.sni_callback = newest
        return listening


# ---------------------------------------------------------------------------------------------------
# Clients


def client_context(section: str, *, ca_file: str, cert_file: str, key_file: str,
                   insecure_skip_verify: bool) -> ssl.SSLContext:
    """A client context (Python's ssl: aiokafka under Faust) verifying the server against `ca_file` (else the
    system trust store), presenting a client certificate if one is given."""
    if ca_file:
        read_file(f"{section}.ca_file", ca_file, pem=True)
    context = ssl.create_default_context(cafile=str(Path(ca_file).expanduser()) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        read_file(f"{section}.cert_file", cert_file, pem=True)
        read_file(f"{section}.key_file", key_file, pem=True)
        try:
            context.load_cert_chain(str(Path(cert_file).expanduser()), str(Path(key_file).expanduser()))
        except ssl.SSLError as exc:
            raise SettingsError(f"invalid value for {section}.key_file ({_env(section + '.key_file')}): the "
                                f"certificate and key cannot be used together ({exc.reason or exc})") from exc
    if insecure_skip_verify:
        warn_insecure(f"{section}.insecure_skip_verify", "server")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
