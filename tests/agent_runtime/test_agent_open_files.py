"""The open-file limit: raised at agent start, and the default in-flight cap it gives."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from llmping.agent import caps
from llmping.agent.caps import choose_cap
from llmping.agent.open_files import default_in_flight_cap, raise_open_file_limit
from llmping.v1 import llmping_pb2 as pb

if sys.platform != "win32":
    import resource

needs_rlimit = pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_NOFILE")


@contextlib.contextmanager
def lowered_soft_limit() -> Iterator[int]:
    """Lower the soft open-file limit below the hard one; restore both afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"hard open-file limit {hard} leaves no room to lower the soft one")
    lowered = 512
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@needs_rlimit
def test_raise_limit_to_hard(caplog: pytest.LogCaptureFixture) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with lowered_soft_limit(), caplog.at_level(logging.INFO, logger="llmping.agent.open_files"):
        raised = raise_open_file_limit()
        soft_now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)

    assert raised == soft_now
    assert soft_now > 512
    if hard != resource.RLIM_INFINITY:
        assert soft_now == hard
    assert f"from 512 to {soft_now}" in caplog.text


@needs_rlimit
def test_raise_limit_at_hard_logs_debug(caplog: pytest.LogCaptureFixture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft != hard:
        pytest.skip("needs a soft limit already at a finite hard limit")
    with caplog.at_level(logging.DEBUG, logger="llmping.agent.open_files"):
        assert raise_open_file_limit() == soft

    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


@needs_rlimit
async def test_agent_start_raises_limit(peer: Any, make_agent: Any, waiter: Any) -> None:
    with lowered_soft_limit():
        await make_agent(peer.address)
        await waiter(lambda: peer.controller.current is not None, what="the agent to connect")
        soft_now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)

    assert soft_now > 512


@pytest.mark.parametrize(
    ("limit", "lanes", "cap"),
    [
        (1024, 1, 768),
        (1024, 3, 256),
        (65536, 2, 32640),
        # Below 1024 a quarter of the limit is kept free instead of 256.
        (100, 1, 75),
        (100, 200, 1),
    ],
)
def test_default_cap_formula(limit: int, lanes: int, cap: int) -> None:
    assert default_in_flight_cap(limit, lanes) == cap


def test_choose_cap_plan_cap_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "open_file_limit", lambda: 1024)
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, max_in_flight=10)

    choice = choose_cap(load, pb.LoadShare(max_in_flight=4), 2, "delay")

    assert (choice.max_in_flight, choice.overflow, choice.is_default) == (4, "delay", False)


def test_choose_cap_default_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "open_file_limit", lambda: 1024)
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, overflow="delay")

    choice = choose_cap(load, pb.LoadShare(), 2, "delay")

    assert (choice.max_in_flight, choice.overflow, choice.is_default) == (384, "drop", True)


def test_choose_cap_without_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "open_file_limit", lambda: None)

    choice = choose_cap(pb.LoadSpec(mode=pb.LoadSpec.CONSTANT), pb.LoadShare(), 1, "delay")

    assert choice.max_in_flight == 0


async def test_default_cap_drops_overload(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An open-file limit of 2 gives a default cap of 2 per provider. The limit is
    # faked because a real one that low would starve the test's own servers.
    monkeypatch.setattr(caps, "open_file_limit", lambda: 2)
    await make_agent(peer.address)
    await waiter(lambda: peer.controller.current is not None, what="the agent to connect")
    provider.behaviour.first_chunk_delay_s = 0.1
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=0.3)
    plan = plan_factory([provider.provider()], load)
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(rate_per_s=100.0)))

    controller = peer.controller
    await waiter(lambda: controller.final_update("a-1") is not None, what="a final update")
    final = controller.final_update("a-1")

    dropped = final.diagnosis.requests_dropped_by_cap
    assert dropped > 10
    assert final.records_total + dropped == 30
    assert provider.behaviour.max_in_flight <= 2
    assert "default of 2 per provider" in final.diagnosis.verdict
