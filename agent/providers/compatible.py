"""OpenAI-compatible endpoints (relays, aggregators, vLLM, LiteLLM) and named presets.

A preset (llmping.presets) only adds what a provider expects beyond the OpenAI format
(extra headers). The plan loader fills in the preset's base_url when the plan leaves it
out, and the agent sends requests only to the base_url in the Provider message.
"""

from __future__ import annotations

from llmping.agent.providers.openai import OpenAIAdapter
from llmping.presets import Preset
from llmping.v1 import llmping_pb2 as pb


class CompatibleAdapter(OpenAIAdapter):
    """Any server that speaks OpenAI chat completions with Bearer authentication."""

    kind = "openai_compatible"
    example_base_url = "http://127.0.0.1:8000/v1"
    max_tokens_field = "max_tokens"

    def __init__(self, provider: pb.Provider, preset: Preset | None = None) -> None:
        self.preset = preset
        if preset is not None:
            self.example_base_url = preset.base_url
        super().__init__(provider)

    def default_headers(self) -> dict[str, str]:
        return dict(self.preset.headers) if self.preset else {}
