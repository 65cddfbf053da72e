"""``llmping simulate``: serve simulated providers; ``llmping simulate proxy``: a delay proxy."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import click

from llmping.errors import InputError
from llmping.logs import configure_logging
from llmping.simulator import (
    ProviderProfile,
    default_profiles,
    load_profiles_file,
    start_delay_proxy,
    start_simulator,
)
from llmping.simulator.profiles import describe_profile

EXIT_INVALID_INPUT = 2
EXIT_FAILED = 1


@click.group(invoke_without_command=True)
@click.option(
    "--listen",
    default="127.0.0.1:8000",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to serve on; port 0 picks a free port.",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="YAML file with provider profiles (a 'providers:' list); default: the built-in set.",
)
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="Print the provider profiles (built-in, or from --config) and exit.",
)
@click.pass_context
def simulate(ctx: click.Context, listen: str, config: Path | None, list_only: bool) -> None:
    """Serve simulated LLM providers with known latency, errors and rate limits.

    Each provider is served at http://HOST:PORT/NAME/v1 with POST /chat/completions
    (OpenAI format), POST /messages (Anthropic format) and GET /models. The command
    prints one line per provider with its base URL and runs until SIGINT or SIGTERM.

    To add network delay in front of it, start `llmping simulate proxy` and send
    requests through that proxy.
    """
    if ctx.invoked_subcommand is not None:
        return
    configure_logging("INFO")

    profiles = _load_profiles(ctx, config)
    if list_only:
        for profile in profiles:
            click.echo(describe_profile(profile))
        return

    host, port = _parse_listen(ctx, listen)
    exit_code = asyncio.run(_serve_simulator(host, port, profiles))
    ctx.exit(exit_code)


@simulate.command("proxy")
@click.option(
    "--listen",
    default="127.0.0.1:8001",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to serve the proxy on; port 0 picks a free port.",
)
@click.option(
    "--delay-ms",
    type=click.FloatRange(min=0),
    required=True,
    help="One-way delay in milliseconds from the client to the target.",
)
@click.option(
    "--return-delay-ms",
    type=click.FloatRange(min=0),
    default=None,
    help="One-way delay in milliseconds from the target back to the client [default: --delay-ms].",
)
@click.option(
    "--no-handshake-delay",
    is_flag=True,
    help="Open target connections at once, without one round trip for the TCP handshake.",
)
@click.pass_context
def proxy(
    ctx: click.Context,
    listen: str,
    delay_ms: float,
    return_delay_ms: float | None,
    no_handshake_delay: bool,
) -> None:
    """Run an HTTP forward proxy that delays traffic to loopback targets.

    It accepts absolute-URL requests (http:// targets) and CONNECT tunnels (https://
    targets). Targets other than 127.0.0.0/8, ::1 and localhost are rejected with 403.
    A kept-alive connection is bound to its first target, and a request on it for
    another host:port is rejected with 502 and the connection is closed. Runs until
    SIGINT or SIGTERM.
    """
    configure_logging("INFO")
    host, port = _parse_listen(ctx, listen)
    exit_code = asyncio.run(
        _serve_proxy(host, port, delay_ms, return_delay_ms, not no_handshake_delay)
    )
    ctx.exit(exit_code)


def _load_profiles(ctx: click.Context, config: Path | None) -> list[ProviderProfile]:
    if config is None:
        return default_profiles()
    try:
        return load_profiles_file(config)
    except InputError as exc:
        _fail(ctx, str(exc), EXIT_INVALID_INPUT)


def _parse_listen(ctx: click.Context, listen: str) -> tuple[str, int]:
    """Split HOST:PORT ([::1]:PORT for IPv6) or exit with status 2."""
    try:
        url = urlsplit("//" + listen)
        host, port = url.hostname, url.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        _fail(
            ctx,
            f"invalid --listen address, {listen!r}, use HOST:PORT such as 127.0.0.1:8000",
            EXIT_INVALID_INPUT,
        )
    return host, port


def _fail(ctx: click.Context, message: str, exit_code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    ctx.exit(exit_code)


async def _serve_simulator(host: str, port: int, profiles: list[ProviderProfile]) -> int:
    try:
        handle = await start_simulator(host, port, profiles)
    except OSError as exc:
        click.echo(
            f"error: cannot listen on {host}:{port}, {exc}, choose another port or 0", err=True
        )
        return EXIT_FAILED

    click.echo(f"llmping simulator listening on {handle.url}")
    width = max(len(profile.name) for profile in handle.profiles)
    for profile in handle.profiles:
        models = ", ".join(profile.models)
        click.echo(f"  {profile.name:<{width}}  {handle.base_url(profile.name)}  models: {models}")
    sys.stdout.flush()

    await _wait_for_stop_signal()
    await handle.stop()
    return 0


async def _serve_proxy(
    host: str, port: int, delay_ms: float, return_delay_ms: float | None, handshake: bool
) -> int:
    try:
        handle = await start_delay_proxy(
            host, port, delay_ms, return_delay_ms=return_delay_ms, handshake_delay=handshake
        )
    except OSError as exc:
        click.echo(
            f"error: cannot listen on {host}:{port}, {exc}, choose another port or 0", err=True
        )
        return EXIT_FAILED

    delay = handle.delay
    click.echo(
        f"llmping delay proxy listening on {handle.url}"
        f" (delay {delay.upstream_delay_ms:g} ms to target, {delay.downstream_delay_ms:g} ms back)"
    )
    sys.stdout.flush()

    await _wait_for_stop_signal()
    await handle.stop()
    return 0


def _echo_listen_error(host: str, port: int, exc: OSError) -> None:
    click.echo(f"error: cannot listen on {host}:{port}, {exc}, choose another port or 0", err=True)


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # add_signal_handler is missing on Windows, where Ctrl+C still ends asyncio.run.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await stop.wait()
