"""Parser micro-benchmark: CPU time to parse one 64-chunk streaming response, no network.

The agent ceiling profile shows that most of an agent's CPU goes into parsing event
streams, so this script times that part alone. It parses the same 16 KB body that
nginx serves in bench/agent_ceiling.py, fed in ``--read-bytes`` pieces the way
aiohttp's readany() hands them over:

- ``llmping``: llmping's SseParser.feed_parts() plus the OpenAI reader's
  interpret_chunk_payloads() (and interpret_chunk_event() for other events) into a
  ResponseAccumulator, as agent/reading.py calls them.
- ``split+json`` and ``split+orjson``: a minimal parser written for this comparison only,
  a lower bound for any parser that decodes every chunk into dicts with that library.
  It splits lines with bytes.split, decodes each ``data:`` payload and reads
  choices[0].delta.content, usage and finish_reason. That is all this body needs, but
  none of the edge cases llmping handles (CR line ends, comments, multi-line data,
  reasoning and tool-call fields, error events).
- ``json.loads only`` and ``orjson.loads only``: just the JSON decoding of the 66
  payloads, the floor for any parser that decodes every chunk with that library.

Run:
    python bench/parse_micro.py [--responses 3000] [--read-bytes 65536]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import harness

from llmping.agent.providers.openai_format import interpret_chunk_event, interpret_chunk_payloads
from llmping.agent.sse import SseParser
from llmping.agent.stream import ResponseAccumulator

CONTENT_CHUNKS = 64


def parse_with_llmping(pieces: list[bytes]) -> int:
    """Parse one response the way agent/reading.py does; return its text events."""
    parser = SseParser()
    acc = ResponseAccumulator()
    now_ns = time.perf_counter_ns()
    for piece in pieces:
        now_ns = time.perf_counter_ns()
        before, payloads, after = parser.feed_parts(piece)
        for event in before:
            interpret_chunk_event(event, now_ns, acc)
        interpret_chunk_payloads(payloads, now_ns, acc)
        for event in after:
            interpret_chunk_event(event, now_ns, acc)
    for event in parser.finish():
        interpret_chunk_event(event, now_ns, acc)
    return acc.text_events


def split_parser(loads: Callable[[bytes], Any]) -> Callable[[list[bytes]], int]:
    """Build the lower-bound parser around one JSON decoder."""

    def parse(pieces: list[bytes]) -> int:
        pending = b""
        text_events = 0
        first_text_ns = 0
        for piece in pieces:
            now_ns = time.perf_counter_ns()
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                payload = line[6:] if line[5:6] == b" " else line[5:]
                if payload == b"[DONE]":
                    return text_events
                chunk = loads(payload)
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text_events += 1
                        first_text_ns = first_text_ns or now_ns
        return text_events

    return parse


def json_only(loads: Callable[[bytes], Any], payloads: list[bytes]) -> Callable[[list[bytes]], int]:
    def parse(_pieces: list[bytes]) -> int:
        for payload in payloads:
            loads(payload)
        return CONTENT_CHUNKS

    return parse


def time_parser(parse: Callable[[list[bytes]], int], pieces: list[bytes], responses: int) -> float:
    """Return the CPU microseconds per response, best of three rounds."""
    if parse(pieces) != CONTENT_CHUNKS:
        raise RuntimeError(f"parser found {parse(pieces)} text events, expected {CONTENT_CHUNKS}")
    best_s = float("inf")
    for _ in range(3):
        started_s = time.process_time()
        for _ in range(responses):
            parse(pieces)
        best_s = min(best_s, time.process_time() - started_s)
    return best_s / responses * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description="Time event-stream parsing per response.")
    parser.add_argument("--responses", type=int, default=3000, help="responses per round")
    parser.add_argument("--read-bytes", type=int, default=65536, help="bytes per simulated read")
    args = parser.parse_args()
    harness.print_machine_info()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")

    body = harness.build_event_stream(CONTENT_CHUNKS)
    step = args.read_bytes
    pieces = [body[start : start + step] for start in range(0, len(body), step)]
    lines = body.split(b"\n")
    payloads = [line[6:] for line in lines if line.startswith(b"data: ") and line[6:] != b"[DONE]"]
    print(f"body: {len(body)} bytes in {len(pieces)} reads, {len(payloads)} JSON payloads")

    candidates: dict[str, Callable[[list[bytes]], int]] = {
        "llmping (feed_parts + interpret_chunk_payloads)": parse_with_llmping,
        "split+json (minimal)": split_parser(json.loads),
        "json.loads only": json_only(json.loads, payloads),
    }
    try:
        import orjson
    except ImportError:
        print("orjson is not installed; its rows are left out (pip install orjson)")
    else:
        candidates["split+orjson (minimal)"] = split_parser(orjson.loads)
        candidates["orjson.loads only"] = json_only(orjson.loads, payloads)

    for name, parse in candidates.items():
        micros = time_parser(parse, pieces, args.responses)
        print(f"  {name:<44} {micros:7.1f} us per response  ({1e6 / micros:8,.0f} responses/s)")


if __name__ == "__main__":
    main()
