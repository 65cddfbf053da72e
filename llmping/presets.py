"""Named OpenAI-compatible providers that a plan can select with ``preset:``.

The plan loader fills in a preset's kind, base_url and api_key_env where the plan leaves
them out. The agent adds the preset's headers to every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    """Settings of one named provider."""

    name: str
    kind: str
    base_url: str
    api_key_env: str
    # Headers the provider expects beyond the OpenAI format. A plan header of the same
    # name replaces the preset's.
    headers: Mapping[str, str] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        # OpenRouter ranks apps by the optional HTTP-Referer and X-Title headers. A plan
        # can set HTTP-Referer and override X-Title in provider.headers.
        Preset(
            "openrouter",
            "openai_compatible",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            {"X-Title": "llmping"},
        ),
        Preset(
            "siliconflow",
            "openai_compatible",
            "https://api.siliconflow.cn/v1",
            "SILICONFLOW_API_KEY",
        ),
        Preset("deepseek", "openai_compatible", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    )
}
