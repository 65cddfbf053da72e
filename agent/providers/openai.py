"""OpenAI chat completions (POST {base_url}/chat/completions)."""

from __future__ import annotations

from typing import Any

from llmping.agent.providers.base import ProviderAdapter, messages_to_json
from llmping.agent.providers.openai_format import (
    interpret_chunk_event,
    interpret_chunk_payloads,
    interpret_completion_body,
)
from llmping.agent.sse import SseEvent
from llmping.agent.stream import ResponseAccumulator
from llmping.v1 import llmping_pb2 as pb


class OpenAIAdapter(ProviderAdapter):
    """The official OpenAI API; the base of every OpenAI-style adapter."""

    kind = "openai"
    example_base_url = "https://api.openai.com/v1"
    # OpenAI's reasoning models reject max_tokens and want max_completion_tokens, which
    # the other models accept too. Compatible servers mostly know only max_tokens.
    max_tokens_field = "max_completion_tokens"

    def build_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def build_body(self, request: pb.RequestSpec) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": messages_to_json(request), "stream": request.stream}
        if self.provider.model:
            body["model"] = self.provider.model
        if request.max_tokens > 0:
            body[self.max_tokens_field] = request.max_tokens
        if request.HasField("temperature"):
            body["temperature"] = request.temperature
        if request.stream and request.include_usage:
            # Without it, streams carry no usage and output tokens must be estimated.
            body["stream_options"] = {"include_usage": True}
        return body

    def interpret_event(self, event: SseEvent, now_ns: int, acc: ResponseAccumulator) -> None:
        interpret_chunk_event(event, now_ns, acc)

    def interpret_payloads(
        self, payloads: list[bytes], now_ns: int, acc: ResponseAccumulator
    ) -> None:
        interpret_chunk_payloads(payloads, now_ns, acc)

    def interpret_body(self, obj: Any, now_ns: int, acc: ResponseAccumulator) -> None:
        interpret_completion_body(obj, now_ns, acc)
