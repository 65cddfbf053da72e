"""Anthropic Messages API (POST {base_url}/v1/messages)."""

from __future__ import annotations

from typing import Any

from llmping.agent.providers.anthropic_format import (
    interpret_message_body,
    interpret_message_event,
)
from llmping.agent.providers.base import ProviderAdapter
from llmping.agent.sse import SseEvent
from llmping.agent.stream import ResponseAccumulator
from llmping.v1 import llmping_pb2 as pb

ANTHROPIC_VERSION = "2023-06-01"
# The Messages API requires max_tokens; used when the plan leaves it at 0.
DEFAULT_MAX_TOKENS = 1024


class AnthropicAdapter(ProviderAdapter):
    """Anthropic's own API, with x-api-key and anthropic-version headers."""

    kind = "anthropic"
    example_base_url = "https://api.anthropic.com"

    def build_url(self) -> str:
        # Accept base URLs with or without the /v1 suffix.
        if self.base_url.endswith("/v1"):
            return f"{self.base_url}/messages"
        return f"{self.base_url}/v1/messages"

    def default_headers(self) -> dict[str, str]:
        return {"anthropic-version": ANTHROPIC_VERSION}

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def build_body(self, request: pb.RequestSpec) -> dict[str, Any]:
        # System prompts are a top-level field in this API, not a message role.
        system = [m.content for m in request.messages if m.role == "system"]
        messages = [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ]
        body: dict[str, Any] = {
            "model": self.provider.model,
            "messages": messages,
            "max_tokens": request.max_tokens if request.max_tokens > 0 else DEFAULT_MAX_TOKENS,
            "stream": request.stream,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.HasField("temperature"):
            body["temperature"] = request.temperature
        return body

    def interpret_event(self, event: SseEvent, now_ns: int, acc: ResponseAccumulator) -> None:
        interpret_message_event(event, now_ns, acc)

    def interpret_body(self, obj: Any, now_ns: int, acc: ResponseAccumulator) -> None:
        interpret_message_body(obj, now_ns, acc)
