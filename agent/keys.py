"""Resolve provider API keys on the agent. Keys are never logged, stored or traced.

A key comes from ``Assignment.provider_secrets`` when the controller sent one for the
provider (controller-held secrets), otherwise from the agent's environment variable
named by ``Provider.api_key_env``. A provider with neither gets no key, which suits
local endpoints such as the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmping.errors import LlmpingError
from llmping.v1 import llmping_pb2 as pb


class MissingApiKeyError(LlmpingError):
    """A provider's API key is not available on this agent."""


def resolve_api_keys(
    assignment: pb.Assignment, agent_id: str, env: Mapping[str, str]
) -> dict[str, str | None]:
    """Return each provider's key by provider name.

    Raises MissingApiKeyError naming the variable, the provider and the agent (never a
    value) when a key that the plan expects is missing or empty.
    """
    keys: dict[str, str | None] = {}
    for provider in assignment.plan.providers:
        secret = assignment.provider_secrets.get(provider.name)
        if secret:
            keys[provider.name] = secret
        elif provider.api_key_env:
            keys[provider.name] = _key_from_env(provider, agent_id, env)
        elif assignment.plan.controller_secrets:
            raise MissingApiKeyError(
                f"the controller sent no API key for provider {provider.name!r} to agent "
                f"{agent_id}; give the provider a key on the controller or set api_key_env"
            )
        else:
            keys[provider.name] = None
    return keys


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
