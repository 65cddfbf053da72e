"""The client TLS flags shared by ``llmping agent`` and the commands that call the controller.

The decorator adds --tls, --tls-ca, --tls-cert, --tls-key and --tls-server-name, with
their LLMPING_TLS* variables, and hands the command one ``tls`` argument, a
ClientTlsOptions whose files are read later by its load() method. The command calls
load() where it reports InputError, so a bad file exits with status 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from llmping.tls import ClientTlsOptions

TLS_ENV = "LLMPING_TLS"
TLS_CA_ENV = "LLMPING_TLS_CA"
TLS_CERT_ENV = "LLMPING_TLS_CERT"
TLS_KEY_ENV = "LLMPING_TLS_KEY"
TLS_SERVER_NAME_ENV = "LLMPING_TLS_SERVER_NAME"


def _file_option(name: str, envvar: str, help_text: str) -> Callable[..., Any]:
    return click.option(
        name,
        envvar=envvar,
        show_envvar=True,
        default=None,
        type=click.Path(path_type=Path),
        metavar="FILE",
        help=help_text,
    )


def client_tls_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the client TLS flags and pass them to ``command`` as ``tls: ClientTlsOptions``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        tls_on: bool,
        tls_ca: Path | None,
        tls_cert: Path | None,
        tls_key: Path | None,
        tls_server_name: str | None,
        **kwargs: Any,
    ) -> Any:
        kwargs["tls"] = ClientTlsOptions(tls_on, tls_ca, tls_cert, tls_key, tls_server_name)
        return command(*args, **kwargs)

    options = [
        click.option(
            "--tls",
            "tls_on",
            is_flag=True,
            default=False,
            envvar=TLS_ENV,
            show_envvar=True,
            help="Dial the controller over TLS and trust gRPC's default roots: the file in "
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, else the CA bundle shipped with grpcio. Every "
            "other --tls-* option turns TLS on too.",
        ),
        _file_option(
            "--tls-ca",
            TLS_CA_ENV,
            "PEM CA certificates that the controller's certificate must be signed by, in "
            "place of the default roots. Turns TLS on.",
        ),
        _file_option(
            "--tls-cert",
            TLS_CERT_ENV,
            "PEM client certificate, for a controller that requires one (its "
            "--tls-client-ca). Needs --tls-key; turns TLS on.",
        ),
        _file_option("--tls-key", TLS_KEY_ENV, "PEM private key of --tls-cert, unencrypted."),
        click.option(
            "--tls-server-name",
            envvar=TLS_SERVER_NAME_ENV,
            show_envvar=True,
            default=None,
            metavar="NAME",
            help="Host name to expect in the controller's certificate when it differs "
            "from the host in --controller, for example when dialing an IP address or a "
            "tunnel. Turns TLS on.",
        ),
    ]
    # click.option decorators run bottom-up and list options in reverse; reversed()
    # keeps the help in the order written above.
    decorated: Callable[..., Any] = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated
