"""The accumulated content of one response, event by event, and the way it ended.

Provider formats (providers/openai_format.py, providers/anthropic_format.py) turn
their events into calls on ResponseAccumulator, so every provider's numbers mean the
same thing:

* text-carrying event: one that carries non-empty generated text of any kind (visible
  content, reasoning, tool-call name or arguments). Role-only and empty events,
  comments, pings, filter annotations and usage-only events are not.
* TTFT is the arrival of the first text-carrying event; the time of the first visible
  content is kept apart for reasoning models.
* ITL gaps are taken between successive text-carrying events, at the arrival time of
  the read that completed each event, so events that arrive in one read have a gap of 0.
* content_chunks counts events with visible content only (not reasoning or tool calls).
* usage is cumulative in every format, so the last value wins; values are never summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from llmping.agent.errors import (
    CONTENT_FILTER,
    EMPTY_RESPONSE,
    STREAM_TRUNCATED,
    ClassifiedError,
)
from llmping.agent.tokens import TokenEstimator

# Finish reasons that mean a safety filter stopped the response: OpenAI and Azure
# "content_filter", Anthropic "refusal", Gemini's OpenAI-compatible "safety".
CONTENT_FILTER_REASONS = frozenset({"content_filter", "refusal", "safety"})

# Generated text kept per response for inspection; counts go on past it.
MAX_KEPT_TEXT_CHARS = 1_000_000


class StreamEnd(Enum):
    """The way the body of a response ended."""

    CLEAN = "clean"
    """The server ended the body normally (chunked terminator, Content-Length, EOF)."""
    ABORTED = "aborted"
    """The connection dropped before the end of the body."""
    WHOLE_BODY = "whole_body"
    """A complete non-streaming body, where text alone makes a complete response."""


@dataclass
class ResponseAccumulator:
    """Everything one response carried; the executor turns it into a record."""

    first_text_ns: int | None = None
    first_content_ns: int | None = None
    last_text_ns: int | None = None
    itl_gaps_ms: list[float] = field(default_factory=list)
    text_events: int = 0
    content_chunks: int = 0
    keepalive_count: int = 0
    output_tokens: int | None = None
    input_tokens: int | None = None
    reasoning_tokens: int | None = None
    finish_reason: str = ""
    response_id: str = ""
    response_model: str = ""
    done_seen: bool = False
    error: ClassifiedError | None = None
    estimator: TokenEstimator = field(default_factory=TokenEstimator)
    _content_parts: list[str] = field(default_factory=list)
    _reasoning_parts: list[str] = field(default_factory=list)
    _kept_chars: int = 0

    @property
    def output_text(self) -> str:
        """Visible content text (up to MAX_KEPT_TEXT_CHARS)."""
        return "".join(self._content_parts)

    @property
    def reasoning_text(self) -> str:
        """Reasoning text (up to MAX_KEPT_TEXT_CHARS together with the content)."""
        return "".join(self._reasoning_parts)

    def record_text(
        self, now_ns: int, content: str = "", reasoning: str = "", tool: str = ""
    ) -> None:
        """Record the generated text of one event that arrived at now_ns."""
        if not (content or reasoning or tool):
            return
        if self.last_text_ns is None:
            self.first_text_ns = now_ns
        else:
            self.itl_gaps_ms.append((now_ns - self.last_text_ns) / 1e6)
        self.last_text_ns = now_ns
        self.text_events += 1

        if content:
            self.content_chunks += 1
            if self.first_content_ns is None:
                self.first_content_ns = now_ns
            self._keep(self._content_parts, content)
            self.estimator.add(content)
        if reasoning:
            self._keep(self._reasoning_parts, reasoning)
            self.estimator.add(reasoning)
        if tool:
            self.estimator.add(tool)

    def record_content_events(self, now_ns: int, contents: list[str]) -> None:
        """Record events with visible content only, all from the read at now_ns.

        The same as record_text(now_ns, content) for each item in turn: the events
        after the first have an ITL gap of 0. Every item must be non-empty.
        """
        count = len(contents)
        if self.last_text_ns is None:
            self.first_text_ns = now_ns
        else:
            self.itl_gaps_ms.append((now_ns - self.last_text_ns) / 1e6)
        if count > 1:
            self.itl_gaps_ms.extend([0.0] * (count - 1))
        self.last_text_ns = now_ns
        self.text_events += count
        self.content_chunks += count
        if self.first_content_ns is None:
            self.first_content_ns = now_ns
        # Kept text and the token estimate add up over pieces, so one joined piece
        # gives the same result as the pieces one by one.
        text = contents[0] if count == 1 else "".join(contents)
        self._keep(self._content_parts, text)
        self.estimator.add(text)

    def set_usage(
        self,
        output_tokens: int | None = None,
        input_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Store usage counts; each replaces the previous value because usage is cumulative."""
        if output_tokens is not None:
            self.output_tokens = output_tokens
        if input_tokens is not None:
            self.input_tokens = input_tokens
        if reasoning_tokens is not None:
            self.reasoning_tokens = reasoning_tokens

    def set_identity(self, response_id: object, model: object) -> None:
        """Keep the first non-empty response id and model name."""
        if not self.response_id and isinstance(response_id, str):
            self.response_id = response_id
        if not self.response_model and isinstance(model, str):
            self.response_model = model

    def set_finish_reason(self, reason: object) -> None:
        """Keep a finish or stop reason; null and empty values are ignored."""
        if isinstance(reason, str) and reason:
            self.finish_reason = reason

    def outcome(self, end: StreamEnd, abort_detail: str = "") -> ClassifiedError | None:
        """Return the error a finished response amounts to, or None for a success.

        A finish reason is the finish signal. A [DONE] marker or Anthropic's
        message_stop also completes a response that has text, and so does a whole
        non-streaming body, whose end is its own end marker. Otherwise a clean end
        with text is stream_truncated, and a clean end without text is empty_response.
        An aborted connection before any finish signal is stream_truncated.
        """
        if self.error is not None:
            return self.error
        if self.finish_reason.lower() in CONTENT_FILTER_REASONS:
            return ClassifiedError(CONTENT_FILTER, f"finish_reason {self.finish_reason}")
        has_text = self.text_events > 0
        complete = self.done_seen or end is StreamEnd.WHOLE_BODY
        if self.finish_reason or (complete and has_text):
            return None
        if end is StreamEnd.ABORTED:
            return ClassifiedError(STREAM_TRUNCATED, abort_detail or "connection closed mid-body")
        if not has_text:
            return ClassifiedError(
                EMPTY_RESPONSE, "response ended with no generated text and no finish_reason"
            )
        return ClassifiedError(
            STREAM_TRUNCATED, "stream ended without a finish_reason or end marker"
        )

    def _keep(self, parts: list[str], text: str) -> None:
        room = MAX_KEPT_TEXT_CHARS - self._kept_chars
        if room <= 0:
            return
        kept = text[:room]
        parts.append(kept)
        self._kept_chars += len(kept)
