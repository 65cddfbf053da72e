"""OpenAI-compatible endpoints (relays, aggregators, vLLM, LiteLLM) and named presets.

A preset only adds what a provider expects beyond the OpenAI format (extra headers).
The plan still names base_url, so nothing is sent anywhere by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmping.agent.providers.openai import OpenAIAdapter
from llmping.v1 import llmping_pb2 as pb


@dataclass(frozen=True)
class Preset:
    """Settings of one named OpenAI-compatible provider."""

    name: str
    example_base_url: str
    headers: dict[str, str] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        # OpenRouter ranks apps by the optional HTTP-Referer and X-Title headers; a plan
        # can set HTTP-Referer (and override X-Title) in provider.headers.
        Preset("openrouter", "https://openrouter.ai/api/v1", {"X-Title": "llmping"}),
        Preset("siliconflow", "https://api.siliconflow.cn/v1"),
        Preset("deepseek", "https://api.deepseek.com/v1"),
    )
}


class CompatibleAdapter(OpenAIAdapter):
    """Any server that speaks OpenAI chat completions with Bearer authentication."""

    kind = "openai_compatible"
    example_base_url = "http://127.0.0.1:8000/v1"
    max_tokens_field = "max_tokens"

    def __init__(self, provider: pb.Provider, preset: Preset | None = None) -> None:
        self.preset = preset
        if preset is not None:
            self.example_base_url = preset.example_base_url
        super().__init__(provider)

    def default_headers(self) -> dict[str, str]:
        return dict(self.preset.headers) if self.preset else {}
