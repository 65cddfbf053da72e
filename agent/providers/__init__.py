"""Provider adapters: one module per API family, chosen by get_adapter()."""

from llmping.agent.providers.registry import get_adapter

__all__ = ["get_adapter"]
