"""Requests that fail inside the agent (out of file descriptors or local ports).

They never reached the provider, so they are counted in the assignment's diagnosis
instead of being stored as records with an error class.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import aiohttp_socks
import pytest
import python_socks
from aiohttp.client_reqrep import ConnectionKey

from llmping.agent.errors import (
    CONNECTION_REFUSED,
    ERROR_CLASSES,
    LOCAL_FAILURES,
    LOCAL_OUT_OF_FILE_DESCRIPTORS,
    LOCAL_OUT_OF_PORTS,
    PHASE_CONNECT,
    classify_exception,
)
from llmping.agent.request import RequestExecutor
from llmping.agent.retry import RetryRule
from llmping.agent.runner import default_executor_factory
from llmping.v1 import llmping_pb2 as pb

if sys.platform != "win32":
    import resource

KEY = ConnectionKey("127.0.0.1", 9, False, True, None, None, None, None)


def connector_error(code: int) -> aiohttp.ClientConnectorError:
    return aiohttp.ClientConnectorError(KEY, OSError(code, os.strerror(code)))


@pytest.mark.parametrize(
    ("code", "marker"),
    [
        (errno.EMFILE, LOCAL_OUT_OF_FILE_DESCRIPTORS),
        (errno.ENFILE, LOCAL_OUT_OF_FILE_DESCRIPTORS),
        (errno.EADDRNOTAVAIL, LOCAL_OUT_OF_PORTS),
    ],
)
def test_classify_local_errno(code: int, marker: str) -> None:
    error = classify_exception(connector_error(code), PHASE_CONNECT)

    assert error.error_class == marker
    assert error.detail.startswith(errno.errorcode[code])
    assert error.phase == PHASE_CONNECT


def test_classify_refused_stays_provider_failure() -> None:
    error = classify_exception(connector_error(errno.ECONNREFUSED), PHASE_CONNECT)

    assert error.error_class == CONNECTION_REFUSED


def test_classify_local_errno_behind_socks() -> None:
    # aiohttp-socks chains the python-socks error, which carries the errno, as __cause__.
    cause = python_socks.ProxyConnectionError(errno.EMFILE, "Too many open files")
    try:
        raise aiohttp_socks.ProxyConnectionError(str(cause)) from cause
    except aiohttp_socks.ProxyConnectionError as exc:
        error = classify_exception(exc, PHASE_CONNECT)

    assert error.error_class == LOCAL_OUT_OF_FILE_DESCRIPTORS


def test_local_markers_are_not_error_classes() -> None:
    assert not LOCAL_FAILURES & ERROR_CLASSES


def test_local_failure_never_retried() -> None:
    rule = RetryRule(max_attempts=3)

    assert rule.should_retry("connection_refused", 1)
    assert not rule.should_retry(LOCAL_OUT_OF_FILE_DESCRIPTORS, 1)
    assert not rule.should_retry(LOCAL_OUT_OF_PORTS, 1)


@contextlib.contextmanager
def no_free_file_descriptors() -> Iterator[None]:
    """Lower the soft open-file limit to the lowest free descriptor, so the next open fails.

    The kernel hands out the lowest free number and refuses one at or above the soft
    limit with EMFILE. Only code that opens a descriptor inside the block is affected.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_NOFILE")
async def test_executor_marks_real_emfile(provider: Any) -> None:
    request = pb.RequestSpec(messages=[pb.ChatMessage(role="user", content="hi")], stream=True)
    timeouts = pb.Timeouts(connect_s=2, ttft_s=2, idle_s=2, total_s=5)
    executor = RequestExecutor(provider.provider(), request, timeouts, api_key=None)
    await executor.start()
    record = pb.Record()
    try:
        with no_free_file_descriptors():
            await executor.execute(record, 0, measure_from_scheduled=False)
    finally:
        await executor.close()

    assert record.error_class == LOCAL_OUT_OF_FILE_DESCRIPTORS
    assert record.error_detail.startswith("EMFILE")
    assert provider.behaviour.requests == 0


class OutOfDescriptorsExecutor:
    """Wraps the real executor; every second request fails with EMFILE before connecting.

    EMFILE cannot be produced in a whole agent on demand without starving its gRPC
    connection too, so the failure is injected where aiohttp would raise it.
    """

    def __init__(self, *args: Any) -> None:
        self._real = default_executor_factory(*args)
        self.calls = 0

    async def start(self) -> None:
        await self._real.start()

    async def execute(
        self, record: pb.Record, scheduled_perf_ns: int, from_scheduled: bool
    ) -> None:
        self.calls += 1
        if self.calls % 2 == 0:
            error = classify_exception(connector_error(errno.EMFILE), PHASE_CONNECT)
            record.error_class = error.error_class
            record.error_detail = error.detail
            record.error_phase = error.phase
            return
        await self._real.execute(record, scheduled_perf_ns, from_scheduled)

    async def close(self) -> None:
        await self._real.close()


async def test_runner_counts_local_failures(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await make_agent(peer.address, executor_factory=OutOfDescriptorsExecutor)
    await waiter(lambda: peer.controller.current is not None, what="the agent to connect")
    load = pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=1, request_count=6)
    plan = plan_factory([provider.provider()], load)
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=1, request_count=6)))

    controller = peer.controller
    await waiter(lambda: controller.final_update("a-1") is not None, what="a final update")
    final = controller.final_update("a-1")
    await waiter(lambda: len(controller.records("a-1")) == final.records_total, what="every batch")

    assert pb.AssignmentUpdate.State.Name(final.state) == "FINISHED"
    assert final.records_total == 3
    assert final.diagnosis.requests_failed_locally == 3
    assert "3 requests failed inside the agent: out of file descriptors" in final.diagnosis.verdict
    records = controller.records("a-1")
    assert sorted(r.index for r in records) == [0, 1, 2]
    assert all(r.error_class == "" for r in records)
    assert provider.behaviour.requests == 3
