"""Locust user for the agent ceiling reference: one streaming chat completion per task.

Run by bench/agent_ceiling.py with the ``locust`` from a separate virtual environment
(Locust pins gevent and its own dependencies). Each task sends the same POST as
llmping, reads the body as it arrives, splits it into server-sent-event lines and
parses every ``data:`` payload with ``json.loads``, so the parsing work per response is
close to what llmping's stream parser does.
"""

from __future__ import annotations

import json
import time

from locust import FastHttpUser, constant, task

CHAT_PATH = "/v1/chat/completions"
REQUEST_BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Write a 100-character essay."}],
        "max_tokens": 100,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench-key"}


class StreamingChatUser(FastHttpUser):
    """Sends chat completion requests back to back and parses each event stream."""

    wait_time = constant(0)

    @task
    def chat_completion(self) -> None:
        started_s = time.perf_counter()
        response = self.client.request(
            "POST", CHAT_PATH, data=REQUEST_BODY, headers=HEADERS, stream=True
        )
        text_chunks, first_text_s = parse_event_stream(response.iter_content(65536, False))
        if text_chunks == 0 or first_text_s is None:
            raise RuntimeError("the event stream carried no text")
        # The time to first text is computed as llmping does, though Locust keeps only
        # its own time-to-headers figure.
        _ = first_text_s - started_s


def parse_event_stream(pieces: object) -> tuple[int, float | None]:
    """Return (text-carrying chunks, perf_counter time of the first) of an event stream."""
    buffer = b""
    text_chunks = 0
    first_text_s: float | None = None
    for piece in pieces:  # type: ignore[attr-defined]
        buffer += piece
        lines = buffer.split(b"\n")
        buffer = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return text_chunks, first_text_s
            chunk = json.loads(payload)
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    text_chunks += 1
                    if first_text_s is None:
                        first_text_s = time.perf_counter()
    return text_chunks, first_text_s
