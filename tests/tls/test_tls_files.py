"""Invalid TLS flags and files: every command exits 2 with a message naming the fix.

The checks run before any connection, so the commands here dial nothing: the client
commands name a loopback port that nothing listens on, and the controller stops
before it binds.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization

from llmping.errors import InputError
from llmping.tls import ClientTlsOptions, load_server_tls

RunCli = Callable[..., Result]

PLAN = """\
name: tls-input
providers:
  - name: sim
    base_url: http://127.0.0.1:9/v1
    model: gpt-4o
request:
  prompt: hi
load:
  concurrency: 1
  request_count: 1
targets:
  - tokyo
"""


@pytest.fixture
def unreadable_file() -> Iterator[Path]:
    """A path that exists but cannot be opened for reading, even by root: a Unix socket.

    It lives in a short temporary folder because socket paths are limited to about
    100 bytes.
    """
    with tempfile.TemporaryDirectory(prefix="tls-") as folder:
        path = Path(folder) / "ca.sock"
        listener = socket.socket(socket.AF_UNIX)
        with contextlib.closing(listener):
            listener.bind(str(path))
            yield path


@pytest.fixture
def bad_files(tls_pki: Any, tmp_path: Path, unreadable_file: Path) -> dict[str, Path]:
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    damaged = tmp_path / "damaged.crt"
    damaged.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    return {
        "missing": tmp_path / "missing.crt",
        "directory": tmp_path,
        "unreadable": unreadable_file,
        "text": text,
        "der": tls_pki.der_ca_cert,
        "damaged": damaged,
    }


# (case, the flags, the start of the message after "error: ").
def client_cases(pki: Any, bad: dict[str, Path]) -> list[tuple[str, list[str], str]]:
    def quoted(path: Path) -> str:
        return repr(str(path))

    return [
        (
            "missing-ca",
            ["--tls-ca", str(bad["missing"])],
            f"invalid --tls-ca value {quoted(bad['missing'])}, the file does not exist",
        ),
        (
            "ca-is-directory",
            ["--tls-ca", str(bad["directory"])],
            f"invalid --tls-ca value {quoted(bad['directory'])}, it is a directory",
        ),
        (
            "unreadable-ca",
            ["--tls-ca", str(bad["unreadable"])],
            f"invalid --tls-ca value {quoted(bad['unreadable'])}, the file cannot be read",
        ),
        (
            "ca-not-pem",
            ["--tls-ca", str(bad["text"])],
            f"invalid --tls-ca value {quoted(bad['text'])}, the file is not a PEM certificate",
        ),
        (
            "ca-in-der",
            ["--tls-ca", str(bad["der"])],
            f"invalid --tls-ca value {quoted(bad['der'])}, the file is not a PEM certificate",
        ),
        (
            "ca-damaged",
            ["--tls-ca", str(bad["damaged"])],
            f"invalid --tls-ca value {quoted(bad['damaged'])}, the certificates in it cannot "
            "be loaded",
        ),
        (
            "cert-without-key",
            ["--tls-cert", str(pki.client_cert)],
            "--tls-cert needs --tls-key too",
        ),
        (
            "key-without-cert",
            ["--tls-key", str(pki.client_key)],
            "--tls-key needs --tls-cert too",
        ),
        (
            "missing-key",
            ["--tls-cert", str(pki.client_cert), "--tls-key", str(bad["missing"])],
            f"invalid --tls-key value {quoted(bad['missing'])}, the file does not exist",
        ),
        (
            "key-of-other-cert",
            ["--tls-cert", str(pki.client_cert), "--tls-key", str(pki.other_client_key)],
            f"invalid --tls-key value {quoted(pki.other_client_key)}, the key does not "
            f"belong to the certificate in --tls-cert {quoted(pki.client_cert)}",
        ),
        (
            "encrypted-key",
            ["--tls-cert", str(pki.client_cert), "--tls-key", str(pki.encrypted_client_key)],
            f"invalid --tls-key value {quoted(pki.encrypted_client_key)}, the key is "
            "encrypted with a passphrase",
        ),
        (
            "certificate-as-key",
            ["--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_cert)],
            f"invalid --tls-key value {quoted(pki.client_cert)}, the file is a certificate, not "
            "a private key; give --tls-key the private key of the certificate in --tls-cert",
        ),
        (
            "key-not-pem",
            ["--tls-cert", str(pki.client_cert), "--tls-key", str(bad["text"])],
            f"invalid --tls-key value {quoted(bad['text'])}, the file has no PEM private key "
            "(-----BEGIN ... PRIVATE KEY-----)",
        ),
        (
            "key-as-certificate",
            ["--tls-cert", str(pki.client_key), "--tls-key", str(pki.client_key)],
            f"invalid --tls-cert value {quoted(pki.client_key)}, the file is not a PEM certificate",
        ),
        (
            "server-name-with-space",
            ["--tls-server-name", "two words"],
            "invalid --tls-server-name value 'two words'",
        ),
    ]


CASE_NAMES = [
    "missing-ca",
    "ca-is-directory",
    "unreadable-ca",
    "ca-not-pem",
    "ca-in-der",
    "ca-damaged",
    "cert-without-key",
    "key-without-cert",
    "missing-key",
    "key-of-other-cert",
    "encrypted-key",
    "certificate-as-key",
    "key-not-pem",
    "key-as-certificate",
    "server-name-with-space",
]


def closed_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def find_case(pki: Any, bad: dict[str, Path], name: str) -> tuple[list[str], str]:
    cases = {case: (flags, message) for case, flags, message in client_cases(pki, bad)}
    assert set(cases) == set(CASE_NAMES)
    return cases[name]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_agents_command_bad_tls_input(
    tls_pki: Any, bad_files: dict[str, Path], run_cli: RunCli, case: str
) -> None:
    flags, message = find_case(tls_pki, bad_files, case)

    result = run_cli("agents", "--controller", closed_address(), *flags)

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}"), result.stderr


@pytest.mark.parametrize("case", CASE_NAMES)
def test_agent_bad_tls_input(
    tls_pki: Any, bad_files: dict[str, Path], run_cli: RunCli, case: str
) -> None:
    flags, message = find_case(tls_pki, bad_files, case)

    result = run_cli("agent", "--controller", closed_address(), "--region", "tokyo", *flags)

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}"), result.stderr


@pytest.mark.parametrize(
    "command", [["runs"], ["report", "run-1"], ["cancel", "run-1"], ["run", "PLAN"]]
)
def test_every_client_command_checks_tls_files(
    bad_files: dict[str, Path], tmp_path: Path, run_cli: RunCli, command: list[str]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    arguments = [str(plan) if word == "PLAN" else word for word in command]
    missing = bad_files["missing"]

    result = run_cli(*arguments, "--controller", closed_address(), "--tls-ca", str(missing))

    assert result.exit_code == 2, result.output
    assert f"error: invalid --tls-ca value {str(missing)!r}" in result.stderr


def test_client_tls_variable_is_read(bad_files: dict[str, Path], run_cli: RunCli) -> None:
    missing = bad_files["missing"]

    result = run_cli("agents", "--controller", closed_address(), LLMPING_TLS_CA=str(missing))

    assert result.exit_code == 2
    assert f"error: invalid --tls-ca value {str(missing)!r}" in result.stderr


# (case, the flags after --listen and --db, the start of the message after "error: ").
def controller_cases(pki: Any, bad: dict[str, Path]) -> list[tuple[str, list[str], str]]:
    missing = repr(str(bad["missing"]))
    return [
        (
            "cert-without-key",
            ["--tls-cert", str(pki.server_cert)],
            "--tls-cert needs --tls-key too",
        ),
        ("key-without-cert", ["--tls-key", str(pki.server_key)], "--tls-key needs --tls-cert too"),
        (
            "client-ca-without-cert",
            ["--tls-client-ca", str(pki.ca_cert)],
            "--tls-client-ca needs --tls-cert and --tls-key",
        ),
        (
            "missing-cert",
            ["--tls-cert", str(bad["missing"]), "--tls-key", str(pki.server_key)],
            f"invalid --tls-cert value {missing}, the file does not exist",
        ),
        (
            "key-of-other-cert",
            ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.client_key)],
            f"invalid --tls-key value {str(pki.client_key)!r}, the key does not belong to "
            f"the certificate in --tls-cert {str(pki.server_cert)!r}",
        ),
        (
            "client-ca-not-pem",
            [
                "--tls-cert",
                str(pki.server_cert),
                "--tls-key",
                str(pki.server_key),
                "--tls-client-ca",
                str(bad["text"]),
            ],
            f"invalid --tls-client-ca value {str(bad['text'])!r}, the file is not a PEM "
            "certificate",
        ),
        (
            "unreadable-client-ca",
            [
                "--tls-cert",
                str(pki.server_cert),
                "--tls-key",
                str(pki.server_key),
                "--tls-client-ca",
                str(bad["unreadable"]),
            ],
            f"invalid --tls-client-ca value {str(bad['unreadable'])!r}, the file cannot be read",
        ),
    ]


CONTROLLER_CASE_NAMES = [
    "cert-without-key",
    "key-without-cert",
    "client-ca-without-cert",
    "missing-cert",
    "key-of-other-cert",
    "client-ca-not-pem",
    "unreadable-client-ca",
]


@pytest.mark.parametrize("case", CONTROLLER_CASE_NAMES)
def test_controller_bad_tls_input(
    tls_pki: Any, bad_files: dict[str, Path], tmp_path: Path, run_cli: RunCli, case: str
) -> None:
    cases = {
        name: (flags, message) for name, flags, message in controller_cases(tls_pki, bad_files)
    }
    assert set(cases) == set(CONTROLLER_CASE_NAMES)
    flags, message = cases[case]
    db_path = tmp_path / "controller.db"

    result = run_cli("controller", "--listen", "127.0.0.1:0", "--db", str(db_path), *flags)

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert not db_path.exists()


def test_controller_tls_variables_are_read(
    tls_pki: Any, bad_files: dict[str, Path], tmp_path: Path, run_cli: RunCli
) -> None:
    missing = bad_files["missing"]

    result = run_cli(
        "controller",
        "--listen",
        "127.0.0.1:0",
        "--db",
        str(tmp_path / "controller.db"),
        LLMPING_CONTROLLER_TLS_CERT=str(tls_pki.server_cert),
        LLMPING_CONTROLLER_TLS_KEY=str(missing),
    )

    assert result.exit_code == 2
    assert f"error: invalid --tls-key value {str(missing)!r}" in result.stderr


def test_load_without_options_is_plaintext() -> None:
    assert ClientTlsOptions().load() is None
    assert load_server_tls(None, None, None) is None


def test_tls_flag_alone_uses_default_roots() -> None:
    tls = ClientTlsOptions(enabled=True).load()

    assert tls is not None
    assert tls.root_certificates is None
    assert tls.certificate_chain is None
    assert tls.channel_options() == ()


def test_loaded_files_and_server_name(tls_pki: Any) -> None:
    options = ClientTlsOptions(
        ca_path=tls_pki.ca_cert,
        cert_path=tls_pki.client_cert,
        key_path=tls_pki.client_key,
        server_name="localhost",
    )

    tls = options.load()

    assert tls is not None
    assert tls.root_certificates == tls_pki.ca_cert.read_bytes()
    assert tls.certificate_chain == tls_pki.client_cert.read_bytes()
    assert tls.channel_options() == (("grpc.ssl_target_name_override", "localhost"),)
    # The key stays out of logs that print the settings.
    assert "PRIVATE KEY" not in repr(tls)


def test_server_key_kept_out_of_repr(tls_pki: Any) -> None:
    tls = load_server_tls(tls_pki.server_cert, tls_pki.server_key, tls_pki.ca_cert)

    assert tls is not None
    assert tls.requires_client_certificate
    assert "PRIVATE KEY" not in repr(tls)


def test_damaged_key_is_input_error(tls_pki: Any, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.key"
    damaged.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")

    with pytest.raises(InputError, match="cannot be loaded"):
        load_server_tls(tls_pki.server_cert, damaged)


def test_ec_private_key_form_loads(tls_pki: Any, tmp_path: Path) -> None:
    # The key in the form `openssl ec` writes: "-----BEGIN EC PRIVATE KEY-----".
    pkcs8_key = serialization.load_pem_private_key(tls_pki.client_key.read_bytes(), None)
    ec_key_path = tmp_path / "client-ec.key"
    ec_key_path.write_bytes(
        pkcs8_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    options = ClientTlsOptions(cert_path=tls_pki.client_cert, key_path=ec_key_path)

    tls = options.load()

    assert ec_key_path.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert tls is not None
    assert tls.has_client_certificate
