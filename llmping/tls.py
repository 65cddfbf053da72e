"""TLS and mutual TLS for the gRPC connections between agents, the CLI and the controller.

The controller serves TLS with a ServerTls, and with a client CA it also requires and
verifies a client certificate (mutual TLS). Agents and the CLI dial with a ClientTls.
Both are built from PEM files by load_server_tls and ClientTlsOptions.load, which check
the files before any connection and raise InputError naming the flag, the file and the
fix. The same credentials serve blocking channels (the CLI) and grpc.aio channels (the
agent).

gRPC reports a failed handshake as UNAVAILABLE with BoringSSL's words in the details.
diagnose_connect_failure turns those details into a sentence that names the likely
cause and what to check.

NOTE: the files are read once, when the process starts, so a renewed certificate takes
effect after a restart.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from llmping.errors import InputError

# Names the server certificate must carry when it differs from the dialed host.
SERVER_NAME_OPTION = "grpc.ssl_target_name_override"
# Used by the probe that checks whether a plaintext client reached a TLS server.
PROBE_TIMEOUT_S = 2.0

_CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY_MARKER = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )?PRIVATE KEY-----")
# PKCS#8 encrypted keys, and the older OpenSSL form with a Proc-Type header.
_ENCRYPTED_KEY_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9.\-_:\[\]*]+$")
# BoringSSL's reason after CERTIFICATE_VERIFY_FAILED, such as "certificate has expired".
_VERIFY_REASON = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")


@dataclass(frozen=True)
class ServerTls:
    """The controller's certificate and key, and the CA that client certificates need."""

    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    # PEM CA certificates; when set, every client must present a certificate they signed.
    client_ca: bytes | None = None

    @property
    def requires_client_certificate(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )

    def describe(self) -> str:
        """Return a short label for logs: "TLS" or "mutual TLS"."""
        return "mutual TLS" if self.requires_client_certificate else "TLS"


@dataclass(frozen=True)
class ClientTls:
    """TLS settings of an agent or the CLI for dialing the controller.

    Frozen and made of bytes, so it can be pickled into the worker processes of
    ``llmping agent --processes``.
    """

    # PEM CA certificates that the controller's certificate must chain to. None uses
    # gRPC's default roots: the file named by GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, else the
    # bundle shipped inside the grpcio package (not the operating system's store).
    root_certificates: bytes | None = None
    # Client certificate and key, sent when the controller requires mutual TLS.
    certificate_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    # Host name expected in the controller's certificate in place of the dialed host.
    server_name: str | None = None

    @property
    def has_client_certificate(self) -> bool:
        return self.certificate_chain is not None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def describe(self) -> str:
        """Return a short label for logs: "TLS" or "mutual TLS"."""
        return "mutual TLS" if self.has_client_certificate else "TLS"

    def channel_options(self) -> tuple[tuple[str, str], ...]:
        if self.server_name is None:
            return ()
        return ((SERVER_NAME_OPTION, self.server_name),)


@dataclass(frozen=True)
class ClientTlsOptions:
    """The client TLS flags as given, before their files are read."""

    # --tls: TLS with gRPC's default roots; implied by every other option here.
    enabled: bool = False
    ca_path: Path | None = None
    cert_path: Path | None = None
    key_path: Path | None = None
    server_name: str | None = None

    def load(self) -> ClientTls | None:
        """Read and check the files; return None when no TLS option was given.

        Raises InputError naming the flag, the file and the fix.
        """
        settings = (self.ca_path, self.cert_path, self.key_path, self.server_name)
        if not self.enabled and all(value is None for value in settings):
            return None
        _check_pair(self.cert_path, self.key_path, "--tls-cert", "--tls-key")
        roots = None
        if self.ca_path is not None:
            roots = read_ca_certificates(self.ca_path, "--tls-ca")
        chain = key = None
        if self.cert_path is not None and self.key_path is not None:
            chain, key = read_key_pair(self.cert_path, self.key_path, "--tls-cert", "--tls-key")
        return ClientTls(roots, chain, key, _check_server_name(self.server_name))


def load_server_tls(
    cert_path: Path | None, key_path: Path | None, client_ca_path: Path | None = None
) -> ServerTls | None:
    """Read and check the controller's TLS files; return None when none was given.

    Raises InputError naming the flag, the file and the fix.
    """
    if cert_path is None and key_path is None:
        if client_ca_path is not None:
            raise InputError(
                "--tls-client-ca needs --tls-cert and --tls-key, because client "
                "certificates are checked only on a TLS port; give the controller's "
                "certificate and key too"
            )
        return None
    _check_pair(cert_path, key_path, "--tls-cert", "--tls-key")
    assert cert_path is not None and key_path is not None
    chain, key = read_key_pair(cert_path, key_path, "--tls-cert", "--tls-key")
    client_ca = None
    if client_ca_path is not None:
        client_ca = read_ca_certificates(client_ca_path, "--tls-client-ca")
    return ServerTls(chain, key, client_ca)


# ---------------------------------------------------------------------------
# Reading and checking PEM files.
# ---------------------------------------------------------------------------


def read_ca_certificates(path: Path, flag: str) -> bytes:
    """Return the PEM CA certificates in ``path``; raise InputError unless they load."""
    data = _read_file(path, flag, "certificate")
    if _CERTIFICATE_MARKER not in data:
        raise _not_pem_certificate(path, flag)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"invalid {flag} value {str(path)!r}, the certificates in it cannot be loaded "
            f"({_ssl_reason(exc)}); give a PEM file of CA certificates"
        ) from exc
    return data


def read_key_pair(
    cert_path: Path, key_path: Path, cert_flag: str, key_flag: str
) -> tuple[bytes, bytes]:
    """Return the PEM certificate chain and private key; raise InputError unless they pair.

    Python's ssl module loads both into a throwaway context, which rejects a damaged file
    and a key that does not belong to the certificate.
    """
    chain = _read_file(cert_path, cert_flag, "certificate")
    if _CERTIFICATE_MARKER not in chain:
        raise _not_pem_certificate(cert_path, cert_flag)
    key = _read_file(key_path, key_flag, "private key")
    if _PRIVATE_KEY_MARKER.search(key) is None:
        raise _not_pem_key(key_path, key_flag, key, cert_flag)
    if any(marker in key for marker in _ENCRYPTED_KEY_MARKERS):
        raise InputError(
            f"invalid {key_flag} value {str(key_path)!r}, the key is encrypted with a "
            "passphrase, which gRPC cannot use; write an unencrypted copy with "
            "`openssl pkey -in KEY -out KEY.plain` and protect it with chmod 600"
        )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # The password callback keeps OpenSSL from prompting on the terminal.
        context.load_cert_chain(cert_path, key_path, password=lambda: b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise InputError(
                f"invalid {key_flag} value {str(key_path)!r}, the key does not belong to "
                f"the certificate in {cert_flag} {str(cert_path)!r}; give the key that was "
                "created with that certificate"
            ) from exc
        raise InputError(
            f"invalid {cert_flag} {str(cert_path)!r} or {key_flag} {str(key_path)!r}, they "
            f"cannot be loaded ({_ssl_reason(exc)}); give a PEM certificate and its PEM "
            "private key"
        ) from exc
    except OSError as exc:
        raise InputError(
            f"invalid {cert_flag} {str(cert_path)!r} or {key_flag} {str(key_path)!r}, they "
            f"cannot be read ({exc.strerror or exc}); check both files"
        ) from exc
    return chain, key


def _read_file(path: Path, flag: str, kind: str) -> bytes:
    if not path.exists():
        raise InputError(
            f"invalid {flag} value {str(path)!r}, the file does not exist; "
            f"give the path of a PEM {kind} file"
        )
    if path.is_dir():
        raise InputError(
            f"invalid {flag} value {str(path)!r}, it is a directory; "
            f"give the path of a PEM {kind} file"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"invalid {flag} value {str(path)!r}, the file cannot be read "
            f"({exc.strerror or exc}); check its permissions"
        ) from exc


def _not_pem_certificate(path: Path, flag: str) -> InputError:
    return InputError(
        f"invalid {flag} value {str(path)!r}, the file is not a PEM certificate (it has no "
        f"'-----BEGIN CERTIFICATE-----' line); give a PEM file, or convert a DER file with "
        "`openssl x509 -inform der -in FILE -out FILE.pem`"
    )


def _not_pem_key(path: Path, flag: str, key: bytes, cert_flag: str) -> InputError:
    if _CERTIFICATE_MARKER in key:
        return InputError(
            f"invalid {flag} value {str(path)!r}, the file is a certificate, not a private "
            f"key; give {flag} the private key of the certificate in {cert_flag}"
        )
    return InputError(
        f"invalid {flag} value {str(path)!r}, the file has no PEM private key "
        "(-----BEGIN ... PRIVATE KEY-----); give a PEM key file, or convert a DER key with "
        "`openssl pkey -inform der -in FILE -out FILE.pem`"
    )


def _check_pair(
    cert_path: Path | None, key_path: Path | None, cert_flag: str, key_flag: str
) -> None:
    if cert_path is not None and key_path is None:
        raise InputError(
            f"{cert_flag} needs {key_flag} too; give the private key of the certificate"
        )
    if key_path is not None and cert_path is None:
        raise InputError(f"{key_flag} needs {cert_flag} too; give the certificate of the key")


def _check_server_name(name: str | None) -> str | None:
    if name is None:
        return None
    if not _SERVER_NAME.match(name):
        raise InputError(
            f"invalid --tls-server-name value {name!r}, expected a host name such as "
            "controller.example.com that the controller's certificate names"
        )
    return name


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)


# ---------------------------------------------------------------------------
# Explaining a failed connection.
# ---------------------------------------------------------------------------


def diagnose_connect_failure(details: str, tls: ClientTls | None, address: str) -> str | None:
    """Return the TLS cause of a failed connection, with what to check, or None.

    ``details`` are the details of gRPC's UNAVAILABLE error. When the client dialed
    without TLS and the controller closed the socket, this probes ``address`` with a TLS
    handshake, which blocks for up to PROBE_TIMEOUT_S.
    """
    if tls is not None:
        return explain_tls_failure(details, tls, address)
    if _closed_during_connect(details) and server_speaks_tls(address):
        return (
            f"the controller at {address} serves TLS and this client connected without it; "
            "pass --tls-ca with the CA that signed the controller's certificate, or --tls "
            "when a public CA signed it"
        )
    return None


def explain_tls_failure(details: str, tls: ClientTls, address: str) -> str | None:
    """Return the likely cause of a failed TLS connection, or None when TLS is not to blame."""
    if "WRONG_VERSION_NUMBER" in details:
        return (
            f"the controller at {address} does not serve TLS; start it with --tls-cert and "
            "--tls-key, or drop the TLS options on this side"
        )
    if "Hostname Verification" in details or "No match found for server name" in details:
        if tls.server_name is not None:
            return (
                f"the controller's certificate does not name {tls.server_name!r} from "
                "--tls-server-name; set it to a host name or IP address listed in the "
                "certificate's subject alternative names"
            )
        return (
            f"the controller's certificate does not name the host in {address}; dial a host "
            "name or IP address listed in the certificate's subject alternative names, or "
            "set --tls-server-name to one of them"
        )
    verify = _VERIFY_REASON.search(details)
    if verify is not None or "CERTIFICATE_VERIFY_FAILED" in details:
        reason = verify.group(1).strip() if verify is not None else "verification failed"
        if tls.root_certificates is None:
            return (
                f"gRPC's default roots do not trust the controller's certificate ({reason}); "
                "pass --tls-ca FILE with the CA that signed the controller's --tls-cert, and "
                "check that the certificate has not expired"
            )
        return (
            f"the controller's certificate is not trusted ({reason}); check that the CA in "
            "--tls-ca signed the controller's --tls-cert and that the certificate has not "
            "expired"
        )
    if "handshake failed" in details.lower():
        return (
            f"the TLS handshake with the controller at {address} failed ({_last_error(details)}); "
            "check --tls-ca, --tls-cert and --tls-key against the controller's TLS files"
        )
    if _closed_during_connect(details):
        if tls.has_client_certificate:
            return (
                f"the controller at {address} closed the connection during the TLS handshake, "
                "so it probably rejected the client certificate in --tls-cert; check that the "
                "CA in the controller's --tls-client-ca signed it, that it has not expired and "
                "that its extended key usage includes clientAuth"
            )
        return (
            f"the controller at {address} closed the connection during the TLS handshake, so "
            "it probably requires a client certificate (mutual TLS); pass --tls-cert and "
            "--tls-key with a certificate signed by the CA in the controller's --tls-client-ca"
        )
    return None


def server_speaks_tls(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Return True when ``address`` (HOST:PORT) completes a TLS handshake.

    The probe skips certificate checks because it only tests whether the port speaks
    TLS, and it sends no data. A server that ends the handshake with an alert, such as one
    that wants a client certificate, speaks TLS too.
    """
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, int(port_text)), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host or None),
        ):
            return True
    except ssl.SSLError as exc:
        return "ALERT" in str(exc).upper()
    except (OSError, ValueError):
        return False


def _closed_during_connect(details: str) -> bool:
    """Return True when the peer closed the socket before a connection was established.

    gRPC puts "failed to connect" only in the details of a failed connection attempt, so
    an established stream that breaks with "Socket closed" does not count.
    """
    lowered = details.lower()
    closed = "socket closed" in lowered or "connection reset" in lowered
    return closed and "failed to connect" in lowered


def _last_error(details: str) -> str:
    """Return the text after gRPC's "last error:", which names the failing step."""
    _, _, last = details.rpartition("last error:")
    return (last or details).strip()
