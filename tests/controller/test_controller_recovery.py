"""Lost agents, reconnects, controller restarts and deadlines end runs correctly."""

from __future__ import annotations

import asyncio

import pytest

from llmping.controller.store import Store
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

Update = pb.AssignmentUpdate


async def get_run(control: pb_grpc.ControlServiceStub, run_id: str) -> pb.RunInfo:
    response = await control.ListRuns(pb.ListRunsRequest())
    return next(r for r in response.runs if r.run_id == run_id)


def stored_indexes(db_path, run_id: str) -> list[int]:
    store = Store(db_path)
    try:
        return sorted(record.index for record in store.iter_records(run_id))
    finally:
        store.close()


def wait_for_state(control, run_id: str, state: int):
    async def reached() -> bool:
        return (await get_run(control, run_id)).state == state

    return reached


async def test_controller_lost_agent_partial(harness, make_plan, make_record, wait_until):
    controller = await harness.start(agent_grace_s=0.5)
    lost = harness.agent(controller, "tokyo-lost")
    steady = harness.agent(controller, "tokyo-steady")
    await lost.connect()
    await steady.connect()
    control = harness.control(controller)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=2)))
    lost_assignment = await lost.expect("assignment")
    steady_assignment = await steady.expect("assignment")

    lost.send_batch(lost_assignment.assignment_id, 1, [make_record(0)])
    await lost.expect_ack(lost_assignment.assignment_id, 1)
    await lost.disconnect()
    await steady.run_assignment(steady_assignment, [[make_record(10), make_record(11)]])

    await wait_until(wait_for_state(control, info.run_id, pb.PARTIAL))
    run = await get_run(control, info.run_id)
    messages = {a.agent_id: a.message for a in run.assignments}
    assert "agent tokyo-lost (target tokyo) was lost" in run.reason
    assert "tokyo-steady" not in run.reason
    assert "was lost" in messages["tokyo-lost"]
    assert stored_indexes(harness.db_path, info.run_id) == [0, 10, 11]


async def test_controller_silent_agent_lost(harness, make_plan, wait_until):
    controller = await harness.start(agent_grace_s=0.3)
    agent = harness.agent(controller, "quiet", heartbeats=False)
    await agent.connect()
    control = harness.control(controller)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))

    await wait_until(wait_for_state(control, info.run_id, pb.PARTIAL))
    run = await get_run(control, info.run_id)
    assert "agent quiet (target tokyo) was lost" in run.reason


async def test_controller_reconnect_within_grace(harness, make_plan, make_record, wait_until):
    controller = await harness.start(agent_grace_s=5.0)
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    assignment = await agent.expect("assignment")
    batch_1 = [make_record(i) for i in range(0, 3)]
    batch_2 = [make_record(i) for i in range(3, 5)]
    batch_3 = [make_record(i) for i in range(5, 9)]

    agent.update(assignment.assignment_id, Update.RUNNING)
    agent.send_batch(assignment.assignment_id, 1, batch_1)
    await agent.expect_ack(assignment.assignment_id, 1)
    # Batch 2 may or may not be stored before the cut; either way the agent has no
    # ack for it and resends it after reconnecting.
    agent.send_batch(assignment.assignment_id, 2, batch_2)
    await agent.disconnect()
    welcome = await agent.connect(active_assignment_ids=[assignment.assignment_id])
    agent.send_batch(assignment.assignment_id, 2, batch_2)
    await agent.expect_ack(assignment.assignment_id, 2)
    agent.send_batch(assignment.assignment_id, 3, batch_3)
    await agent.expect_ack(assignment.assignment_id, 3)
    agent.update(assignment.assignment_id, Update.FINISHED, final_batch_seq=3, records_total=9)

    await wait_until(wait_for_state(control, info.run_id, pb.COMPLETED))
    report = await control.GetReport(pb.GetReportRequest(run_id=info.run_id))
    assert list(welcome.cancelled_assignment_ids) == []
    assert stored_indexes(harness.db_path, info.run_id) == list(range(9))
    assert report.summaries[0].requests == 9
    assert report.run.assignments[0].records_stored == 9


async def test_controller_resends_unreceived_assignment(harness, make_plan, wait_until):
    controller = await harness.start(agent_grace_s=5.0)
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    first = await agent.expect("assignment")

    # The agent never accepted it, so after a reconnect that does not list it the
    # controller sends it again.
    await agent.disconnect()
    await agent.connect()
    again = await agent.expect("assignment")

    assert again.assignment_id == first.assignment_id
    assert again.start_at_unix_ns == first.start_at_unix_ns


async def test_controller_restart_resumes_run(harness, make_plan, make_record, wait_until):
    first = await harness.start(agent_grace_s=5.0)
    agent = harness.agent(first, "agent-1")
    await agent.connect()
    control = harness.control(first)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    assignment = await agent.expect("assignment")
    batch_1 = [make_record(i) for i in range(0, 4)]
    batch_2 = [make_record(i, error_class="http_502") for i in range(4, 6)]
    batch_3 = [make_record(i) for i in range(6, 7)]
    agent.update(assignment.assignment_id, Update.RUNNING)
    agent.send_batch(assignment.assignment_id, 1, batch_1)
    await agent.expect_ack(assignment.assignment_id, 1)
    agent.send_batch(assignment.assignment_id, 2, batch_2)
    await agent.expect_ack(assignment.assignment_id, 2)

    await agent.disconnect()
    await first.stop()
    second = await harness.start(agent_grace_s=5.0)
    agent.address = second.address
    control = harness.control(second)
    resumed = await get_run(control, info.run_id)
    welcome = await agent.connect(active_assignment_ids=[assignment.assignment_id])
    # Pretend the ack of batch 2 was lost with the old connection: resend it.
    agent.send_batch(assignment.assignment_id, 2, batch_2)
    await agent.expect_ack(assignment.assignment_id, 2)
    agent.send_batch(assignment.assignment_id, 3, batch_3)
    await agent.expect_ack(assignment.assignment_id, 3)
    agent.update(assignment.assignment_id, Update.FINISHED, final_batch_seq=3, records_total=7)

    await wait_until(wait_for_state(control, info.run_id, pb.COMPLETED))
    report = await control.GetReport(pb.GetReportRequest(run_id=info.run_id))
    assert resumed.state == pb.RUNNING
    assert list(welcome.cancelled_assignment_ids) == []
    assert stored_indexes(harness.db_path, info.run_id) == list(range(7))
    assert report.summaries[0].requests == 7
    assert report.summaries[0].errors == 2


async def test_controller_restart_agent_never_returns(harness, make_plan, wait_until):
    first = await harness.start()
    agent = harness.agent(first, "agent-gone")
    await agent.connect()
    control = harness.control(first)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    await agent.expect("assignment")
    await agent.disconnect()
    await first.stop()

    second = await harness.start(agent_grace_s=0.3)
    control = harness.control(second)

    await wait_until(wait_for_state(control, info.run_id, pb.PARTIAL))
    run = await get_run(control, info.run_id)
    assert "controller restarted; agent agent-gone (target tokyo) did not return" in run.reason


async def test_controller_cancels_stale_assignment(harness, make_plan, wait_until):
    controller = await harness.start(agent_grace_s=0.3)
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    assignment = await agent.expect("assignment")
    await agent.disconnect()
    await wait_until(wait_for_state(control, info.run_id, pb.PARTIAL))

    welcome = await agent.connect(active_assignment_ids=[assignment.assignment_id, "unknown-id"])

    assert sorted(welcome.cancelled_assignment_ids) == sorted(
        [assignment.assignment_id, "unknown-id"]
    )


async def test_controller_deadline_ends_run(harness, make_plan, wait_until):
    controller = await harness.start(deadline_slack_s=0.0)
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    plan = make_plan(concurrency=1, duration_s=0.2)
    plan.timeouts.total_s = 0.2

    info = await control.SubmitRun(pb.SubmitRunRequest(plan=plan))
    assignment = await agent.expect("assignment")
    agent.update(assignment.assignment_id, Update.RUNNING)
    cancel = await agent.expect("cancel")

    await wait_until(wait_for_state(control, info.run_id, pb.PARTIAL))
    run = await get_run(control, info.run_id)
    assert cancel.assignment_id == assignment.assignment_id
    assert "deadline" in run.reason
    assert "agent agent-1 (target tokyo)" in run.reason


async def test_controller_rejects_batch_from_other_agent(harness, make_plan, make_record):
    controller = await harness.start()
    owner = harness.agent(controller, "owner", labels={"region": "tokyo"})
    other = harness.agent(controller, "other", labels={"region": "osaka"})
    await owner.connect()
    await other.connect()
    control = harness.control(controller)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    assignment = await owner.expect("assignment")

    other.send_batch(assignment.assignment_id, 1, [make_record(0)])
    with pytest.raises(asyncio.TimeoutError):
        await other.expect("batch_ack", timeout_s=0.5)

    assert stored_indexes(harness.db_path, info.run_id) == []
