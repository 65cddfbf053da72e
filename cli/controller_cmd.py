"""``llmping controller``: run the controller until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

import click

from llmping.controller.server import ControllerConfig, parse_listen_address, serve
from llmping.errors import InputError, StoreError
from llmping.logs import configure_logging
from llmping.tls import ServerTls, load_server_tls

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The controller's TLS variables carry CONTROLLER in their names, so that a shell that
# runs a controller and the CLI side by side cannot hand the server's certificate to
# the CLI's LLMPING_TLS_CERT, which names a client certificate.
TLS_CERT_ENV = "LLMPING_CONTROLLER_TLS_CERT"
TLS_KEY_ENV = "LLMPING_CONTROLLER_TLS_KEY"
TLS_CLIENT_CA_ENV = "LLMPING_CONTROLLER_TLS_CLIENT_CA"


def fail(message: str) -> NoReturn:
    """Print ``error: ...`` to stderr and exit with status 2 (invalid input)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def check_db_path(path: Path) -> None:
    """Raise InputError unless the database file can be created or written."""
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"invalid --db value {str(path)!r}, it is a directory; give a file path")
    if not directory.is_dir():
        raise InputError(
            f"invalid --db value {str(path)!r}, the directory {str(directory)!r} does not exist; "
            "create it or choose another path"
        )
    writable = os.access(path, os.W_OK) if path.exists() else os.access(directory, os.W_OK)
    if not writable:
        raise InputError(
            f"invalid --db value {str(path)!r}, the file or its directory is not writable; "
            "choose a writable path"
        )


def is_loopback_listen(host: str) -> bool:
    """Return True when only this machine can reach ``host``: localhost, 127.0.0.0/8, ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(
    listen: str, token: str, insecure_no_token: bool, tls: ServerTls | None = None
) -> None:
    """Reject a --listen beyond loopback that nothing authenticates, and warn without TLS.

    Raises InputError unless the address is loopback, a token is set, client certificates
    are required (mutual TLS), or the user chose --insecure-no-token.
    """
    host, _ = parse_listen_address(listen, "--listen value")
    if is_loopback_listen(host):
        return
    mutual_tls = tls is not None and tls.requires_client_certificate
    if not token and not mutual_tls and not insecure_no_token:
        raise InputError(
            f"--listen {listen} accepts connections from other machines, and without "
            "--token anyone who reaches it can submit plans that make the agents spend "
            "their API keys; set --token (or LLMPING_TOKEN) to a long random value, require "
            "client certificates with --tls-client-ca, listen on 127.0.0.1, or pass "
            "--insecure-no-token on a network you trust"
        )
    if tls is None:
        log.warning(
            "listening on %s without TLS: the token, plans and results travel unencrypted; "
            "pass --tls-cert and --tls-key to serve TLS, or keep the controller on a "
            "trusted network",
            listen,
        )


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the coroutine on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def serve_until_signal(config: ControllerConfig) -> None:
    """Start the controller, print its address and stop cleanly on SIGINT or SIGTERM."""
    controller = await serve(config)
    click.echo(f"llmping controller listening on {controller.address}")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows event loops have no add_signal_handler; Ctrl+C still raises there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await controller.stop()


@click.command()
@click.option(
    "--listen",
    default="127.0.0.1:50051",
    show_default=True,
    help="Address to serve agents and the CLI on, HOST:PORT. Port 0 picks a free port.",
)
@click.option(
    "--db",
    "db_path",
    default="llmping.db",
    show_default=True,
    type=click.Path(path_type=Path),
    help="SQLite file that stores runs and records; created when missing.",
)
@click.option(
    "--token",
    envvar="LLMPING_TOKEN",
    default="",
    show_envvar=True,
    help="Token that agents and the CLI must send as 'authorization: Bearer <token>'. "
    "Empty: no check.",
)
@click.option(
    "--insecure-no-token",
    is_flag=True,
    default=False,
    help="Allow a --listen address beyond loopback without --token, so that anyone who "
    "reaches the port can submit runs. For trusted, isolated networks only.",
)
@click.option(
    "--tls-cert",
    envvar=TLS_CERT_ENV,
    show_envvar=True,
    default=None,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="PEM certificate of the controller, followed by any intermediate CA certificates. "
    "With --tls-key, the port serves TLS only.",
)
@click.option(
    "--tls-key",
    envvar=TLS_KEY_ENV,
    show_envvar=True,
    default=None,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="PEM private key of --tls-cert, unencrypted.",
)
@click.option(
    "--tls-client-ca",
    envvar=TLS_CLIENT_CA_ENV,
    show_envvar=True,
    default=None,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="PEM CA certificates that client certificates must be signed by. When set, agents and "
    "the CLI must present such a certificate (mutual TLS). Needs --tls-cert.",
)
@click.option(
    "--agent-grace-s",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds a disconnected or silent agent has to return before its share of a run "
    "counts as lost and the run ends PARTIAL.",
)
@click.option(
    "--metrics-listen",
    default="",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics. Empty: no metrics endpoint.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Lowest level of log lines written to stderr.",
)
def controller(
    listen: str,
    db_path: Path,
    token: str,
    insecure_no_token: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    agent_grace_s: float,
    metrics_listen: str,
    log_level: str,
) -> None:
    """Run the controller: agents connect to it, the CLI submits runs to it.

    A --listen address other than loopback needs --token, --tls-client-ca or
    --insecure-no-token. Exits with status 2 when a TLS file is invalid, or when the
    address or the --db file is taken by another process.
    """
    configure_logging(log_level)
    try:
        parse_listen_address(listen, "--listen value")
        if metrics_listen:
            parse_listen_address(metrics_listen, "--metrics-listen value")
        tls = load_server_tls(tls_cert, tls_key, tls_client_ca)
        check_exposure(listen, token, insecure_no_token, tls)
    except InputError as exc:
        fail(str(exc))
    try:
        check_db_path(db_path)
    except InputError as exc:
        fail(str(exc))

    config = ControllerConfig(
        listen=listen,
        db_path=db_path,
        token=token,
        agent_grace_s=agent_grace_s,
        metrics_listen=metrics_listen,
        tls=tls,
    )
    try:
        run_event_loop(serve_until_signal(config))
    except (InputError, StoreError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        # Only reached where signal handlers could not be installed (Windows).
        pass
