"""Resolve provider API keys on the agent. Keys are never logged, stored or traced.

A key comes from ``Assignment.provider_secrets`` when the controller sent one for the
provider (controller-held secrets), otherwise from the agent's environment variable
named by ``Provider.api_key_env``. A provider with neither gets no key, which suits
local endpoints such as the simulator.

Any client of the controller can submit a plan and choose each provider's base_url. So
a key from the agent's environment is sent only to the hosts the agent allows for its
variable. Those are the hosts set with ``--key-host VAR=HOST[,HOST...]`` (or
LLMPING_KEY_HOSTS), else loopback hosts and, for well-known variables such as
OPENAI_API_KEY, the provider's official host. The key travels to the base_url host even
through a proxy, so the proxy is not checked. Controller-held secrets are the
controller's to send and are not checked.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from yarl import URL

from llmping.errors import InputError, LlmpingError
from llmping.v1 import llmping_pb2 as pb

# Read by resolve_api_keys from the agent's environment; the CLI writes --key-host here.
KEY_HOSTS_ENV = "LLMPING_KEY_HOSTS"
LOOPBACK_DESCRIPTION = "loopback (127.0.0.0/8, ::1, localhost)"

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
# A host name, optionally as "*.name" for every subdomain of name.
_HOST_PATTERN = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


class MissingApiKeyError(LlmpingError):
    """A provider's API key is not available on this agent."""


class KeyHostError(LlmpingError):
    """A provider's key would go to a host that the agent does not allow for its variable."""


@functools.cache
def official_key_hosts() -> dict[str, tuple[str, ...]]:
    """Return {variable: official hosts} from the provider kind and preset defaults."""
    # Imported here because the plan loader pulls in pydantic, which the agent needs
    # only once, for this table.
    from llmping.plan_convert import KIND_DEFAULTS
    from llmping.presets import PRESETS

    pairs = [(d.base_url, d.api_key_env) for d in KIND_DEFAULTS.values()]
    pairs += [(p.base_url, p.api_key_env) for p in PRESETS.values()]
    hosts: dict[str, list[str]] = {}
    for base_url, variable in pairs:
        host = urlsplit(base_url).hostname if base_url else None
        if host and variable:
            known = hosts.setdefault(variable, [])
            if host not in known:
                known.append(host)
    return {variable: tuple(names) for variable, names in hosts.items()}


def is_loopback_host(host: str) -> bool:
    """Return True for localhost and addresses in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_host(text: str) -> str:
    """Lowercase a host, drop IPv6 brackets and a trailing dot, and compress IPv6."""
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.rstrip(".")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


# -- parsing the agent's rules ---------------------------------------------------------


def parse_key_host_entry(text: str) -> tuple[str, tuple[str, ...]]:
    """Parse ``VAR=HOST[,HOST...]`` into the variable and its normalized hosts.

    A host is a name, an IP address or ``*.name`` for every subdomain of name. Raises
    InputError naming the entry.
    """
    variable, sep, host_list = text.partition("=")
    variable = variable.strip()
    if not sep or not _VARIABLE.match(variable):
        raise InputError(
            f"invalid --key-host value {text!r}, expected VAR=HOST[,HOST...] such as "
            "OPENAI_API_KEY=api.openai.com"
        )
    hosts = []
    for part in host_list.split(","):
        host = normalize_host(part)
        if not _is_valid_host(host):
            raise InputError(
                f"invalid host {part.strip()!r} in --key-host value {text!r}, expected a host "
                "name, an IP address or *.domain, without scheme, port or path"
            )
        if host not in hosts:
            hosts.append(host)
    return variable, tuple(hosts)


def _is_valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST_PATTERN.match(host))
    return True


def merge_key_host_entries(
    entries: Iterable[tuple[str, tuple[str, ...]]],
) -> dict[str, tuple[str, ...]]:
    """Combine parsed entries; hosts of a variable named twice are joined."""
    merged: dict[str, list[str]] = {}
    for variable, hosts in entries:
        known = merged.setdefault(variable, [])
        known.extend(host for host in hosts if host not in known)
    return {variable: tuple(hosts) for variable, hosts in merged.items()}


def parse_key_hosts_env(text: str) -> dict[str, tuple[str, ...]]:
    """Parse LLMPING_KEY_HOSTS, ``VAR=h1,h2;VAR2=h3``; raises InputError."""
    entries = [part for part in text.split(";") if part.strip()]
    return merge_key_host_entries(parse_key_host_entry(entry) for entry in entries)


def format_key_hosts(configured: Mapping[str, Iterable[str]]) -> str:
    """Format rules in the LLMPING_KEY_HOSTS form that parse_key_hosts_env reads."""
    return ";".join(f"{variable}={','.join(hosts)}" for variable, hosts in configured.items())


@dataclass(frozen=True)
class KeyHostRules:
    """The hosts each key variable may be sent to.

    A variable in ``configured`` may go to those hosts only. Any other variable may go
    to loopback hosts and to its official hosts (official_key_hosts).
    """

    configured: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KeyHostRules:
        """Read LLMPING_KEY_HOSTS; raises InputError when it is invalid."""
        return cls(parse_key_hosts_env(env.get(KEY_HOSTS_ENV, "")))

    def allows(self, variable: str, host: str) -> bool:
        configured = self.configured.get(variable)
        if configured is not None:
            return any(_host_matches(pattern, host) for pattern in configured)
        return is_loopback_host(host) or host in official_key_hosts().get(variable, ())

    def describe(self, variable: str) -> str:
        """Describe the hosts a variable may be sent to, for messages."""
        configured = self.configured.get(variable)
        if configured is not None:
            return ", ".join(configured)
        return ", ".join((LOOPBACK_DESCRIPTION, *official_key_hosts().get(variable, ())))

    def suggested_hosts(self, variable: str, host: str) -> str:
        """Return the --key-host value that also allows ``host`` for ``variable``."""
        current = self.configured.get(variable)
        if current is None:
            current = official_key_hosts().get(variable, ())
        return ",".join((*current, host))


# -- resolving keys --------------------------------------------------------------------


def resolve_api_keys(
    assignment: pb.Assignment,
    agent_id: str,
    env: Mapping[str, str],
    rules: KeyHostRules | None = None,
) -> dict[str, str | None]:
    """Return each provider's key by provider name.

    ``rules`` default to the LLMPING_KEY_HOSTS entry of ``env``. Raises KeyHostError
    when a key from ``env`` would go to a host the rules do not allow, MissingApiKeyError
    when a key that the plan expects is missing or empty, and InputError when
    LLMPING_KEY_HOSTS is invalid. Messages name the variable, the provider and the agent,
    never a key.
    """
    if rules is None:
        rules = KeyHostRules.from_env(env)
    keys: dict[str, str | None] = {}
    for provider in assignment.plan.providers:
        secret = assignment.provider_secrets.get(provider.name)
        if secret:
            keys[provider.name] = secret
        elif provider.api_key_env:
            _check_key_host(provider, agent_id, rules)
            keys[provider.name] = _key_from_env(provider, agent_id, env)
        elif assignment.plan.controller_secrets:
            raise MissingApiKeyError(
                f"the controller sent no API key for provider {provider.name!r} to agent "
                f"{agent_id}; give the provider a key on the controller or set api_key_env"
            )
        else:
            keys[provider.name] = None
    return keys


def key_destination_host(base_url: str) -> str | None:
    """Return the host a request to ``base_url`` connects to, or None when unclear.

    Two URL parsers must agree on the host: urllib's, and yarl's, which aiohttp uses to
    send the request. A URL they read differently is treated as having no host.
    """
    try:
        split_host = urlsplit(base_url).hostname
        yarl_host = URL(base_url).raw_host
    except ValueError:
        return None
    if not split_host or not yarl_host:
        return None
    host = normalize_host(split_host)
    return host if host == normalize_host(yarl_host) else None


def _check_key_host(provider: pb.Provider, agent_id: str, rules: KeyHostRules) -> None:
    variable = provider.api_key_env
    host = key_destination_host(provider.base_url)
    if host is None:
        raise KeyHostError(
            f"provider {provider.name!r} has base_url {provider.base_url!r} with no clear "
            f"host, so agent {agent_id} does not send it the key in {variable}; set base_url "
            "to an http:// or https:// URL with an ASCII host name"
        )
    if rules.allows(variable, host):
        return
    raise KeyHostError(
        f"provider {provider.name!r} would send the key in {variable} to host {host}, "
        f"which agent {agent_id} does not allow for {variable} (allowed: "
        f"{rules.describe(variable)}); if that host should get the key, start the agent "
        f"with --key-host {variable}={rules.suggested_hosts(variable, host)}"
    )


def _key_from_env(provider: pb.Provider, agent_id: str, env: Mapping[str, str]) -> str:
    value = env.get(provider.api_key_env, "")
    if not value:
        state = "is empty" if provider.api_key_env in env else "is not set"
        raise MissingApiKeyError(
            f"environment variable {provider.api_key_env} {state} on agent {agent_id} "
            f"for provider {provider.name!r}; set it in the agent's environment and "
            f"restart the agent"
        )
    return value
