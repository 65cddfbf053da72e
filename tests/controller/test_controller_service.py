"""AgentService and ControlService over a real gRPC server and a real SQLite file."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from llmping.controller.store import Store
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

Update = pb.AssignmentUpdate


async def run_state(control: pb_grpc.ControlServiceStub, run_id: str) -> int:
    response = await control.ListRuns(pb.ListRunsRequest())
    return next(r.state for r in response.runs if r.run_id == run_id)


async def test_controller_registers_and_lists_agent(harness):
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1", labels={"region": "tokyo", "net": "aws"})
    welcome = await agent.connect()
    control = harness.control(controller)

    response = await control.ListAgents(pb.ListAgentsRequest())
    reply = await agent.expect("heartbeat_reply")

    assert welcome.heartbeat_interval_s == pytest.approx(0.2)
    assert list(welcome.cancelled_assignment_ids) == []
    assert [a.agent_id for a in response.agents] == ["agent-1"]
    assert dict(response.agents[0].labels) == {"region": "tokyo", "net": "aws"}
    assert response.agents[0].hostname == "test-host"
    assert response.agents[0].version == "test"
    assert response.agents[0].connected_unix_ns > 0
    assert reply.agent_sent_unix_ns == 1
    assert abs(reply.controller_unix_ns - time.time_ns()) < 5 * 10**9


async def test_controller_submit_without_matching_agent(harness, make_plan):
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1", labels={"region": "tokyo"})
    await agent.connect()
    control = harness.control(controller)
    plan = make_plan(targets=[("frankfurt", {"region": "frankfurt"})])

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await control.SubmitRun(pb.SubmitRunRequest(plan=plan))

    details = raised.value.details()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "target frankfurt" in details
    assert "{region=frankfurt}" in details
    assert "agent-1 {region=tokyo}" in details
    assert "--region frankfurt" in details


async def test_controller_rejects_invalid_plan(harness, make_plan):
    controller = await harness.start()
    control = harness.control(controller)
    plan = make_plan()
    plan.thresholds.append(pb.Threshold(metric="ttft_p97_ms", op="lt", value=1))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await control.SubmitRun(pb.SubmitRunRequest(plan=plan))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "thresholds[0].metric" in raised.value.details()


async def test_controller_rejects_plan_over_request_cap(harness, make_plan):
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1", labels={"region": "tokyo"})
    await agent.connect()
    control = harness.control(controller)
    plan = make_plan(concurrency=4, duration_s=30.0)
    plan.load.max_requests = 100

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await control.SubmitRun(pb.SubmitRunRequest(plan=plan))

    details = raised.value.details()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "load.max_requests" in details
    assert "about 120 requests" in details
    assert "over the cap of 100" in details
    assert "raise load.max_requests" in details
    listed = await control.ListRuns(pb.ListRunsRequest())
    assert list(listed.runs) == []


async def test_controller_splits_max_in_flight(harness, make_plan):
    controller = await harness.start()
    agents = [harness.agent(controller, f"tokyo-{i}", labels={"region": "tokyo"}) for i in (1, 2)]
    for agent in agents:
        await agent.connect()
    control = harness.control(controller)
    plan = make_plan()
    plan.load.CopyFrom(
        pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=10, duration_s=1, max_in_flight=5)
    )

    await control.SubmitRun(pb.SubmitRunRequest(plan=plan))
    shares = [(await agent.expect("assignment")).share for agent in agents]

    assert sorted(s.max_in_flight for s in shares) == [2, 3]


async def test_controller_full_run_completes(harness, make_plan, make_record):
    controller = await harness.start()
    tokyo_1 = harness.agent(controller, "tokyo-1", labels={"region": "tokyo"})
    tokyo_2 = harness.agent(controller, "tokyo-2", labels={"region": "tokyo"})
    shanghai = harness.agent(controller, "shanghai-1", labels={"region": "shanghai"})
    for agent in (tokyo_1, tokyo_2, shanghai):
        await agent.connect()
    control = harness.control(controller)
    plan = make_plan(
        targets=[("tokyo", {"region": "tokyo"}), ("shanghai", {"region": "shanghai"})],
        concurrency=5,
    )

    submitted_ns = time.time_ns()
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=plan))
    assignments = {a.agent_id: await a.expect("assignment") for a in (tokyo_1, tokyo_2, shanghai)}

    assert info.state == pb.PENDING
    assert len(info.assignments) == 3
    assert assignments["tokyo-1"].share.concurrency == 3
    assert assignments["tokyo-2"].share.concurrency == 2
    assert assignments["shanghai-1"].share.concurrency == 5
    assert assignments["tokyo-1"].share.agent_count == 2
    assert assignments["tokyo-1"].target == "tokyo"
    assert assignments["tokyo-1"].plan == plan
    assert assignments["tokyo-1"].run_id == info.run_id
    assert assignments["tokyo-1"].traceparent.startswith("00-" + info.trace_id)
    start_delay_ns = assignments["shanghai-1"].start_at_unix_ns - submitted_ns
    assert 0 < start_delay_ns < 2 * 10**9

    tokyo_1_batches = [
        [make_record(i, ttft_ms=100.0 + i, e2e_ms=400.0 + i) for i in range(0, 4)],
        [make_record(i, ttft_ms=100.0 + i, e2e_ms=400.0 + i) for i in range(4, 6)],
    ]
    tokyo_2_batches = [
        [make_record(i, error_class="http_429", error_detail="rate limited") for i in range(6, 8)]
    ]
    shanghai_batches = [[make_record(i, target="shanghai", ttft_ms=300.0) for i in range(3)]]
    await tokyo_1.run_assignment(assignments["tokyo-1"], tokyo_1_batches)
    await tokyo_2.run_assignment(assignments["tokyo-2"], tokyo_2_batches)
    await shanghai.run_assignment(assignments["shanghai-1"], shanghai_batches)

    progress = [p async for p in control.WatchRun(pb.WatchRunRequest(run_id=info.run_id))]
    report = await control.GetReport(pb.GetReportRequest(run_id=info.run_id))

    assert progress[-1].run.state == pb.COMPLETED
    final_targets = {t.target: t for t in progress[-1].targets}
    assert final_targets["tokyo"].requests_done == 8
    assert final_targets["tokyo"].errors == 2
    assert final_targets["shanghai"].requests_done == 3
    assert report.run.state == pb.COMPLETED
    assert report.run.reason == ""
    stored = {a.agent_id: a.records_stored for a in report.run.assignments}
    assert stored == {"tokyo-1": 6, "tokyo-2": 2, "shanghai-1": 3}
    summaries = {(s.provider, s.target): s for s in report.summaries}
    tokyo = summaries[("alpha", "tokyo")]
    assert tokyo.requests == 8
    assert tokyo.successes == 6
    assert tokyo.errors == 2
    assert tokyo.error_rate == pytest.approx(0.25)
    assert dict(tokyo.error_classes) == {"http_429": 2}
    assert tokyo.ttft_ms.count == 6
    assert tokyo.ttft_ms.p50 == pytest.approx(102.5)
    assert tokyo.e2e_ms.max == pytest.approx(405.0)
    assert summaries[("alpha", "shanghai")].ttft_ms.mean == pytest.approx(300.0)
    assert report.plan.name == "test-plan"


async def test_controller_stores_resent_batch_once(harness, make_plan, make_record, wait_until):
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    assignment = await agent.expect("assignment")
    records = [make_record(i) for i in range(5)]

    agent.update(assignment.assignment_id, Update.RUNNING)
    agent.send_batch(assignment.assignment_id, 1, records)
    await agent.expect_ack(assignment.assignment_id, 1)
    agent.send_batch(assignment.assignment_id, 1, records)
    await agent.expect_ack(assignment.assignment_id, 1)
    agent.update(assignment.assignment_id, Update.FINISHED, final_batch_seq=1, records_total=5)

    async def completed() -> bool:
        return await run_state(control, info.run_id) == pb.COMPLETED

    await wait_until(completed)
    report = await control.GetReport(pb.GetReportRequest(run_id=info.run_id))
    store = Store(harness.db_path)
    try:
        assert len(list(store.iter_records(info.run_id))) == 5
    finally:
        store.close()
    assert report.summaries[0].requests == 5
    assert report.run.assignments[0].records_stored == 5


async def test_controller_failed_assignment_partial(harness, make_plan, make_record, wait_until):
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    assignment = await agent.expect("assignment")

    agent.send_batch(assignment.assignment_id, 1, [make_record(0)])
    await agent.expect_ack(assignment.assignment_id, 1)
    agent.update(
        assignment.assignment_id,
        Update.FAILED,
        final_batch_seq=1,
        records_total=1,
        message="API key variable OPENAI_API_KEY is not set",
    )

    async def ended() -> bool:
        return await run_state(control, info.run_id) == pb.PARTIAL

    await wait_until(ended)
    run = (await control.ListRuns(pb.ListRunsRequest())).runs[0]
    assert "agent agent-1 (target tokyo) failed" in run.reason
    assert "OPENAI_API_KEY is not set" in run.reason


async def test_controller_cancel_run(harness, make_plan, make_record, wait_until):
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    info = await control.SubmitRun(pb.SubmitRunRequest(plan=make_plan(concurrency=1)))
    assignment = await agent.expect("assignment")
    agent.update(assignment.assignment_id, Update.RUNNING)

    cancelled = await control.CancelRun(pb.CancelRunRequest(run_id=info.run_id, reason="user stop"))
    cancel = await agent.expect("cancel")
    records = [make_record(0), make_record(1, error_class="cancelled")]
    agent.send_batch(assignment.assignment_id, 1, records)
    await agent.expect_ack(assignment.assignment_id, 1)
    agent.update(assignment.assignment_id, Update.CANCELLED, final_batch_seq=1, records_total=2)
    again = await control.CancelRun(pb.CancelRunRequest(run_id=info.run_id))

    async def assignment_cancelled() -> bool:
        runs = await control.ListRuns(pb.ListRunsRequest())
        return runs.runs[0].assignments[0].state == Update.CANCELLED

    await wait_until(assignment_cancelled)
    report = await control.GetReport(pb.GetReportRequest(run_id=info.run_id))
    assert cancelled.state == pb.CANCELLED
    assert cancelled.reason == "user stop"
    assert cancel.assignment_id == assignment.assignment_id
    assert cancel.reason == "user stop"
    assert again.state == pb.CANCELLED
    assert report.run.state == pb.CANCELLED
    # A cancelled request is llmping's doing, not the provider's: it is counted apart.
    assert report.summaries[0].requests == 1
    assert report.summaries[0].cancelled == 1
    assert dict(report.summaries[0].error_classes) == {}


async def test_controller_report_unknown_run(harness):
    controller = await harness.start()
    control = harness.control(controller)

    for call in (
        control.GetReport(pb.GetReportRequest(run_id="no-such-run")),
        control.CancelRun(pb.CancelRunRequest(run_id="no-such-run")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no-such-run" in raised.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in control.WatchRun(pb.WatchRunRequest(run_id="no-such-run")):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_controller_token_required(harness):
    controller = await harness.start(token="s3cret-token")

    for token in ("", "wrong-token"):
        agent = harness.agent(controller, "agent-x", token=token)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await agent.connect()
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "--token" in raised.value.details()
        assert "s3cret-token" not in raised.value.details()
    good = harness.agent(controller, "agent-ok", token="s3cret-token")
    welcome = await good.connect()

    assert welcome.heartbeat_interval_s > 0


async def test_controller_control_requires_token(harness):
    controller = await harness.start(token="s3cret-token")
    control = harness.control(controller)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await control.ListAgents(pb.ListAgentsRequest())
    response = await control.ListAgents(
        pb.ListAgentsRequest(), metadata=(("authorization", "Bearer s3cret-token"),)
    )

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert list(response.agents) == []


async def test_controller_hello_must_come_first(harness):
    controller = await harness.start()
    channel = grpc.aio.insecure_channel(controller.address)
    harness.channels.append(channel)
    stub = pb_grpc.AgentServiceStub(channel)

    async def messages():
        yield pb.AgentMessage(heartbeat=pb.Heartbeat(sent_unix_ns=1))

    call = stub.Connect(messages())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call:
            pass

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Hello" in raised.value.details()


async def test_controller_health_and_reflection(harness):
    controller = await harness.start()
    channel = grpc.aio.insecure_channel(controller.address)
    harness.channels.append(channel)
    health = health_pb2_grpc.HealthStub(channel)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

    overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    control = await health.Check(health_pb2.HealthCheckRequest(service="llmping.v1.ControlService"))

    async def list_request():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    responses = [r async for r in reflection.ServerReflectionInfo(list_request())]
    names = {s.name for s in responses[0].list_services_response.service}
    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert control.status == health_pb2.HealthCheckResponse.SERVING
    assert "llmping.v1.AgentService" in names
    assert "llmping.v1.ControlService" in names
    assert "grpc.health.v1.Health" in names


async def test_controller_reconnect_replaces_session(harness):
    controller = await harness.start()
    first = harness.agent(controller, "agent-1")
    await first.connect()
    second = harness.agent(controller, "agent-1", labels={"region": "tokyo", "v": "2"})
    await second.connect()
    control = harness.control(controller)

    goodbye = await first.expect("goodbye")
    response = await control.ListAgents(pb.ListAgentsRequest())

    assert "replaced" in goodbye.reason
    assert len(response.agents) == 1
    assert response.agents[0].labels["v"] == "2"


async def test_controller_stored_plan_has_no_secrets(harness, make_plan):
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    plan = make_plan()
    plan.providers[0].headers["Authorization"] = "Bearer sk-live-abcdef123456"
    plan.providers[0].proxy_url = "http://user:pr0xy-pass@127.0.0.1:3128"
    plan.source_yaml = "headers: {Authorization: Bearer sk-live-abcdef123456}"

    info = await control.SubmitRun(pb.SubmitRunRequest(plan=plan))
    assignment = await agent.expect("assignment")
    report = await control.GetReport(pb.GetReportRequest(run_id=info.run_id))

    assert assignment.plan.providers[0].headers["Authorization"] == "Bearer sk-live-abcdef123456"
    raw = harness.db_path.read_bytes()
    wal = harness.db_path.with_name(harness.db_path.name + "-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"sk-live-abcdef123456" not in raw
    assert b"pr0xy-pass" not in raw
    assert report.plan.providers[0].headers["Authorization"] == "<redacted>"
    assert "sk-live" not in report.plan.source_yaml
