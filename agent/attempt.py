"""The state of one request while it runs, and how it becomes a record.

Latencies in the record (ttfb_ms, ttft_ms, ttft_content_ms, e2e_ms) count from the
scheduled start in open-loop mode and from the actual send time in closed-loop mode.
start_lag_ms is always the send time minus the scheduled start. For a request that failed,
e2e_ms is the time until the failure was detected.

A non-streaming response has no token stream, so its TTFT (and TTFT of content) is
the arrival of the complete body, the same instant as its E2E.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from llmping.agent.errors import PHASE_CONNECT, ClassifiedError
from llmping.agent.stream import ResponseAccumulator
from llmping.agent.timing import ConnectionTiming
from llmping.stats import percentile
from llmping.v1 import llmping_pb2 as pb


@dataclass
class RequestAttempt:
    """State of one request in flight; every instant is a perf_counter_ns value."""

    scheduled_ns: int
    is_https: bool
    send_ns: int = 0
    headers_ns: int | None = None
    end_ns: int | None = None
    phase: str = PHASE_CONNECT
    timing: ConnectionTiming = field(default_factory=ConnectionTiming)
    acc: ResponseAccumulator = field(default_factory=ResponseAccumulator)
    http_status: int = 0
    http_version: str = ""
    remote_ip: str = ""
    bytes_received: int = 0
    error: ClassifiedError | None = None
    retry_after_s: float | None = None
    rate_limit_headers: dict[str, str] = field(default_factory=dict)

    def fail(self, error: ClassifiedError) -> None:
        """Record the request's error; the first one wins, as later ones are consequences.

        An error raised without a phase gets the phase the request is in now.
        """
        if self.error is None:
            if not error.phase:
                error.phase = self.phase
            self.error = error
        self.finish()

    def finish(self, end_ns: int | None = None) -> None:
        """Mark the end of the response (now, unless given) if it is not marked yet."""
        if self.end_ns is None:
            self.end_ns = end_ns if end_ns is not None else time.perf_counter_ns()

    def fill_record(self, record: pb.Record, measure_from_scheduled: bool) -> None:
        """Write every measurement field of the record (not the identity fields)."""
        origin_ns = self.scheduled_ns if measure_from_scheduled else self.send_ns
        record.start_lag_ms = (self.send_ns - self.scheduled_ns) / 1e6
        record.attempt = 1
        self._fill_connection(record)
        self._fill_latencies(record, origin_ns)
        self._fill_itl(record)
        self._fill_tokens(record)
        self._fill_http(record)
        self._fill_error(record)

    def _fill_connection(self, record: pb.Record) -> None:
        timing = self.timing
        record.connection_reused = timing.reused
        if not (timing.reused or timing.create_end_ns is not None):
            return
        record.dns_ms = timing.dns_ms()
        connect_ms = timing.connect_ms()
        if connect_ms is not None:
            record.connect_ms = connect_ms
        tls_ms = timing.tls_ms(self.is_https)
        if tls_ms is not None:
            record.tls_ms = tls_ms

    def _fill_latencies(self, record: pb.Record, origin_ns: int) -> None:
        acc = self.acc
        if self.headers_ns is not None:
            record.ttfb_ms = _ms(self.headers_ns - origin_ns)
        if acc.first_text_ns is not None:
            record.ttft_ms = _ms(acc.first_text_ns - origin_ns)
        if acc.first_content_ns is not None:
            record.ttft_content_ms = _ms(acc.first_content_ns - origin_ns)
        if self.end_ns is not None:
            record.e2e_ms = _ms(self.end_ns - origin_ns)

    def _fill_itl(self, record: pb.Record) -> None:
        gaps = sorted(self.acc.itl_gaps_ms)
        record.itl_count = len(gaps)
        if not gaps:
            return
        record.itl_mean_ms = sum(gaps) / len(gaps)
        record.itl_p50_ms = percentile(gaps, 50)
        record.itl_p90_ms = percentile(gaps, 90)
        record.itl_max_ms = gaps[-1]

    def _fill_tokens(self, record: pb.Record) -> None:
        acc = self.acc
        if acc.output_tokens is not None:
            record.output_tokens = acc.output_tokens
        elif acc.text_events:
            record.output_tokens = acc.estimator.estimate()
            record.output_tokens_estimated = True
        record.input_tokens = acc.input_tokens or 0
        record.reasoning_tokens = acc.reasoning_tokens or 0
        record.content_chunks = acc.content_chunks
        # TPOT only for successful responses, because a failed one stops at an arbitrary point.
        if self.error is None and record.output_tokens > 1 and record.HasField("ttft_ms"):
            decode_ms = record.e2e_ms - record.ttft_ms
            record.tpot_ms = decode_ms / (record.output_tokens - 1)

    def _fill_http(self, record: pb.Record) -> None:
        acc = self.acc
        record.bytes_received = self.bytes_received
        record.http_status = self.http_status
        record.http_version = self.http_version
        record.remote_ip = self.remote_ip
        record.finish_reason = _valid_utf8(acc.finish_reason)
        record.response_model = _valid_utf8(acc.response_model)
        record.response_id = _valid_utf8(acc.response_id)

    def _fill_error(self, record: pb.Record) -> None:
        if self.retry_after_s is not None:
            record.retry_after_s = self.retry_after_s
        record.rate_limit_headers.update(self.rate_limit_headers)
        if self.error is None:
            return
        record.error_class = self.error.error_class
        record.error_detail = _valid_utf8(self.error.detail)
        record.error_phase = self.error.phase or self.phase


def _ms(duration_ns: int) -> float:
    return duration_ns / 1e6


def _valid_utf8(text: str) -> str:
    """Replace lone surrogates, which JSON escapes allow but protobuf strings reject."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")
