"""``llmping agent``: run an agent that dials the controller and runs its assignments."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import NoReturn
from urllib.parse import urlsplit

import click

from llmping.agent.app import DEFAULT_CONTROLLER, AgentConfig, default_agent_id, serve_agent
from llmping.agent.connection import AgentReplacedError
from llmping.agent.keys import (
    KEY_HOSTS_ENV,
    format_key_hosts,
    merge_key_host_entries,
    official_key_hosts,
    parse_key_host_entry,
)
from llmping.agent.workers import serve_agent_processes
from llmping.cli.tls_options import client_tls_options
from llmping.errors import InputError
from llmping.logs import configure_logging
from llmping.tls import ClientTlsOptions

log = logging.getLogger(__name__)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# socks5h resolves host names on the proxy, which the executor supports too.
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+):([0-9]{1,5})$")
_NAME = re.compile(r"^[^\s=,]+$")


def fail(message: str) -> NoReturn:
    """Print ``error: ...`` to stderr and exit with status 2 (invalid input)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def parse_controller(address: str) -> str:
    """Return ``address`` if it is HOST:PORT with a port in 1..65535."""
    match = _ADDRESS.match(address)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise InputError(
            f"invalid --controller value {address!r}, expected HOST:PORT such as "
            f"{DEFAULT_CONTROLLER}"
        )
    return address


def parse_labels(values: tuple[str, ...], region: str) -> dict[str, str]:
    """Turn repeated ``--label KEY=VALUE`` flags into a dict; region comes from --region."""
    if not _NAME.match(region):
        raise InputError(
            f"invalid --region value {region!r}, expected a name without spaces, '=' or ','"
        )
    labels: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not _NAME.match(key) or not value or value != value.strip():
            raise InputError(f"invalid --label value {text!r}, expected KEY=VALUE")
        if key == "region" and value != region:
            raise InputError(
                f"invalid --label value {text!r}, it contradicts --region {region}; "
                "drop the label, --region sets region"
            )
        labels[key] = value
    return labels


def _hide_credentials(url: str) -> str:
    """Replace a URL's user and password with *** so error messages never show them."""
    if "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    head = f"{scheme}{sep}" if sep else ""
    return f"{head}***@{(rest if sep else url).rpartition('@')[2]}"


def parse_proxy(url: str | None) -> str | None:
    """Return the proxy URL if it is an http://, https:// or socks5:// URL with a host."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        valid = parts.scheme in PROXY_SCHEMES and bool(parts.hostname) and parts.port != 0
    except ValueError:
        # urlsplit and .port raise on a malformed IPv6 host or a non-numeric port.
        valid = False
    if not valid:
        raise InputError(
            f"invalid --proxy value {_hide_credentials(url)!r}, expected an http://, "
            "https:// or socks5:// URL such as socks5://127.0.0.1:1080"
        )
    return url


class KeyHostType(click.ParamType):
    """A ``--key-host VAR=HOST[,HOST...]`` value; LLMPING_KEY_HOSTS separates them with ';'."""

    name = "key_host"

    def split_envvar_value(self, rv: str) -> list[str]:
        return [part for part in rv.split(";") if part.strip()]


def parse_key_hosts(values: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Parse the --key-host values; raises InputError naming an invalid one."""
    return merge_key_host_entries(parse_key_host_entry(text) for text in values)


def publish_key_hosts(configured: Mapping[str, tuple[str, ...]]) -> None:
    """Hand the --key-host rules to the runners, which read them from the environment.

    Worker processes (--processes) inherit the environment, so they get the rules too.
    """
    if configured:
        os.environ[KEY_HOSTS_ENV] = format_key_hosts(configured)
    else:
        os.environ.pop(KEY_HOSTS_ENV, None)
    for variable, hosts in configured.items():
        log.info("API keys in %s are sent only to hosts %s", variable, ", ".join(hosts))
    defaults = {
        variable: hosts
        for variable, hosts in official_key_hosts().items()
        if variable not in configured
    }
    log.info(
        "other API key variables are sent only to loopback hosts%s",
        "".join(f"; {variable} also to {', '.join(hosts)}" for variable, hosts in defaults.items()),
    )


@click.command()
@click.option(
    "--controller",
    envvar="LLMPING_CONTROLLER",
    show_envvar=True,
    default=DEFAULT_CONTROLLER,
    show_default=True,
    help="Controller address to dial, HOST:PORT.",
)
@click.option(
    "--region",
    required=True,
    help="Region of this agent, sent as the label region=NAME; plans select agents by it.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra label for the plans' target selectors; repeat for several.",
)
@click.option(
    "--agent-id",
    default=None,
    help="Agent id, stable for the process. Default: <hostname>-<pid>-<4 hex digits>.",
)
@click.option(
    "--proxy",
    default=None,
    metavar="URL",
    help="Proxy for the providers that set no proxy in the plan: http://, https:// or "
    "socks5:// URL.",
)
@click.option(
    "--key-host",
    "key_hosts",
    multiple=True,
    type=KeyHostType(),
    envvar=KEY_HOSTS_ENV,
    show_envvar=True,
    metavar="VAR=HOST[,HOST...]",
    help="Hosts that the API key in environment variable VAR may be sent to, as the "
    "host of a provider's base_url; *.example.com allows every subdomain. Repeat for "
    "several variables; the environment variable form is VAR=h1,h2;VAR2=h3. A variable "
    "without this option is sent only to loopback hosts (127.0.0.0/8, ::1, localhost) "
    "and, for OPENAI_API_KEY, ANTHROPIC_API_KEY and the presets' variables, to the "
    "provider's official host; listing a variable replaces those defaults. A provider "
    "whose key would go elsewhere fails its assignment before any request.",
)
@click.option(
    "--token",
    envvar="LLMPING_TOKEN",
    show_envvar=True,
    default=None,
    help="Bearer token that the controller expects (its --token).",
)
@client_tls_options
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Agent processes to run; each registers as <agent-id>-p<i> and uses one core.",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Requests in flight this agent advertises to the controller; 0 advertises no "
    "limit. Only advertised: the agent does not enforce it, so cap load with the plan's "
    "load.max_in_flight.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level for messages on stderr.",
)
def agent(
    controller: str,
    region: str,
    labels: tuple[str, ...],
    agent_id: str | None,
    proxy: str | None,
    key_hosts: tuple[str, ...],
    token: str | None,
    tls: ClientTlsOptions,
    processes: int,
    max_concurrency: int,
    log_level: str,
) -> None:
    """Run an agent: dial the controller, run the assignments it sends, report results.

    Provider API keys are read from the environment variables the plan names, and sent
    only to the hosts that --key-host allows for each variable. Stops cleanly on SIGINT
    or SIGTERM: running assignments are cancelled and their results sent before exit.
    Exits with status 1 when another agent connects with the same --agent-id.
    """
    try:
        config = AgentConfig(
            controller=parse_controller(controller),
            region=region,
            labels=parse_labels(labels, region),
            agent_id=_check_agent_id(agent_id) if agent_id is not None else default_agent_id(),
            proxy_url=parse_proxy(proxy),
            token=token or None,
            tls=tls.load(),
            max_concurrency=max_concurrency,
        )
        configured_key_hosts = parse_key_hosts(key_hosts)
    except InputError as exc:
        fail(str(exc))

    configure_logging(log_level)
    publish_key_hosts(configured_key_hosts)
    try:
        if processes > 1:
            sys.exit(serve_agent_processes(config, processes, log_level))
        serve_agent(config)
    except InputError as exc:
        fail(str(exc))
    except AgentReplacedError:
        # The connection has logged the error with the fix.
        sys.exit(1)


def _check_agent_id(agent_id: str) -> str:
    if not _NAME.match(agent_id):
        raise InputError(
            f"invalid --agent-id value {agent_id!r}, expected a name without spaces, '=' or ','"
        )
    return agent_id
