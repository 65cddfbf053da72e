"""Agents against the real controller: a whole run, and a controller restart mid-run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from llmping.controller.server import Controller, ControllerConfig, serve
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc


def controller_config(db_path: Path, listen: str = "127.0.0.1:0") -> ControllerConfig:
    return ControllerConfig(
        listen=listen,
        db_path=db_path,
        heartbeat_interval_s=0.2,
        start_delay_s=0.3,
        agent_grace_s=10.0,
        shutdown_grace_s=0.2,
    )


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[list[Controller]]:
    """A list holding the running controller; a test may replace it after a restart."""
    holder = [await serve(controller_config(tmp_path / "llmping.db"))]
    yield holder
    await holder[-1].stop()


async def wait_for_run_end(address: str, run_id: str) -> pb.Report:
    async with grpc.aio.insecure_channel(address) as channel:
        control = pb_grpc.ControlServiceStub(channel)
        async for _ in control.WatchRun(pb.WatchRunRequest(run_id=run_id)):
            pass
        return await control.GetReport(pb.GetReportRequest(run_id=run_id))


async def submit(address: str, plan: pb.Plan) -> pb.RunInfo:
    async with grpc.aio.insecure_channel(address) as channel:
        return await pb_grpc.ControlServiceStub(channel).SubmitRun(pb.SubmitRunRequest(plan=plan))


def tokyo_plan(plan_factory: Any, provider: Any, load: pb.LoadSpec) -> pb.Plan:
    plan = plan_factory([provider.provider(name="local")], load)
    plan.targets.append(pb.Target(name="tokyo", selector={"region": "tokyo"}))
    return plan


async def test_run_completes_with_two_agents(
    controller: list[Controller], make_agent: Any, waiter: Any, plan_factory: Any, provider: Any
) -> None:
    address = controller[0].address
    for name in ("tokyo-1", "tokyo-2"):
        await make_agent(address, region="tokyo", agent_id=name)
    await waiter(lambda: len(controller[0].registry.sessions()) == 2, what="two agents")
    plan = tokyo_plan(
        plan_factory,
        provider,
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=3, request_count=9),
    )

    info = await submit(address, plan)
    report = await asyncio.wait_for(wait_for_run_end(address, info.run_id), 15)

    assert report.run.state == pb.COMPLETED, report.run.reason
    stored = {a.agent_id: a.records_stored for a in report.run.assignments}
    assert stored == {"tokyo-1": 5, "tokyo-2": 4}
    (summary,) = report.summaries
    assert summary.requests == 9
    assert summary.errors == 0
    assert summary.ttft_ms.count == 9
    assert {d.agent_id for d in report.agent_diagnoses} == {"tokyo-1", "tokyo-2"}
    assert provider.behaviour.requests == 9


async def test_controller_restart_mid_run(
    controller: list[Controller],
    tmp_path: Path,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    provider: Any,
) -> None:
    first = controller[0]
    running = await make_agent(first.address, region="tokyo", agent_id="tokyo-1")
    await waiter(lambda: len(first.registry.sessions()) == 1, what="the agent")
    plan = tokyo_plan(
        plan_factory,
        provider,
        pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=40, duration_s=1.5),
    )
    info = await submit(first.address, plan)
    await waiter(lambda: provider.behaviour.requests >= 10, what="the run to be under way")

    await first.stop()
    await waiter(lambda: running.agent.outbox.batch_count >= 1, what="batches buffered")
    controller.append(await serve(controller_config(tmp_path / "llmping.db", first.address)))

    report = await asyncio.wait_for(wait_for_run_end(first.address, info.run_id), 20)

    assert report.run.state == pb.COMPLETED, report.run.reason
    (assignment,) = report.run.assignments
    assert assignment.records_stored == 60
    (summary,) = report.summaries
    assert summary.requests == 60
    assert provider.behaviour.requests == 60
