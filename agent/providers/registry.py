"""Choosing the adapter for a plan's provider."""

from __future__ import annotations

from llmping.agent.providers.anthropic import AnthropicAdapter
from llmping.agent.providers.azure import AzureAdapter
from llmping.agent.providers.base import ProviderAdapter
from llmping.agent.providers.compatible import CompatibleAdapter
from llmping.agent.providers.openai import OpenAIAdapter
from llmping.errors import PlanError
from llmping.presets import PRESETS
from llmping.v1 import llmping_pb2 as pb

KINDS = ("openai", "azure", "anthropic", "openai_compatible")


def get_adapter(provider: pb.Provider) -> ProviderAdapter:
    """Return the adapter for provider.kind and provider.preset.

    Raises PlanError for an unknown kind or preset, a preset combined with a kind other
    than openai_compatible, or an invalid base_url.
    """
    kind = provider.kind or ("openai_compatible" if provider.preset else "")
    if provider.preset:
        preset = PRESETS.get(provider.preset)
        if preset is None:
            raise PlanError(
                f"providers[{provider.name}].preset",
                f"unknown preset {provider.preset!r}",
                f"use one of {', '.join(sorted(PRESETS))} or leave it empty",
            )
        if kind != "openai_compatible":
            raise PlanError(
                f"providers[{provider.name}].kind",
                f"preset {provider.preset!r} needs kind openai_compatible, got {kind!r}",
                "set kind to openai_compatible or leave it empty",
            )
        return CompatibleAdapter(provider, preset)
    if kind == "openai":
        return OpenAIAdapter(provider)
    if kind == "azure":
        return AzureAdapter(provider)
    if kind == "anthropic":
        return AnthropicAdapter(provider)
    if kind == "openai_compatible":
        return CompatibleAdapter(provider)
    raise PlanError(
        f"providers[{provider.name}].kind",
        f"unknown provider kind {provider.kind!r}",
        f"use one of {', '.join(KINDS)}",
    )
