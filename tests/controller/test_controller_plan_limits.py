"""What a submitted plan may contain: finite numbers within limits, a bounded size, no
pasted keys in storage; and an assignment an agent cannot receive is given up."""

from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf import struct_pb2

from llmping import plan_schema
from llmping.controller import validate
from llmping.controller.redact import REDACTED, redact_plan
from llmping.controller.store import Store
from llmping.controller.validate import validate_plan
from llmping.errors import PlanError
from llmping.protocol import MAX_ASSIGNMENT_BYTES
from llmping.v1 import llmping_pb2 as pb

Update = pb.AssignmentUpdate
PASTED_KEY = "sk-proj-Abc123def456GHI789jkl012MNO345"


def with_extra_body_nan(plan: pb.Plan) -> None:
    plan.providers[0].extra_body.update({"top_p": 0.5})
    plan.providers[0].extra_body.fields["top_p"].CopyFrom(struct_pb2.Value(number_value=math.nan))


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda p: setattr(p.load, "rate_per_s", math.nan), "load.rate_per_s"),
        (lambda p: setattr(p.load, "duration_s", math.inf), "load.duration_s"),
        (lambda p: setattr(p.load, "duration_s", 1e308), "load.duration_s"),
        (lambda p: setattr(p.load, "duration_s", 31 * 86400.0), "load.duration_s"),
        (lambda p: setattr(p.load, "warmup_s", 31 * 86400.0), "load.warmup_s"),
        (lambda p: setattr(p.load, "rate_per_s", 2e6), "load.rate_per_s"),
        (
            lambda p: p.load.stages.add(rate_per_s=-math.inf, duration_s=1),
            "load.stages[0].rate_per_s",
        ),
        (lambda p: p.load.stages.add(rate_per_s=1, duration_s=1e300), "load.stages[0].duration_s"),
        (lambda p: setattr(p.timeouts, "total_s", 1e12), "timeouts.total_s"),
        (lambda p: setattr(p.timeouts, "ttft_s", -1.0), "timeouts.ttft_s"),
        (lambda p: setattr(p.load.retry, "backoff_s", math.inf), "load.retry.backoff_s"),
        (lambda p: setattr(p.request, "temperature", math.nan), "request.temperature"),
        (
            lambda p: p.thresholds.add(metric="error_rate", op="lt", value=math.nan),
            "thresholds[0].value",
        ),
        (with_extra_body_nan, "providers[0].extra_body.fields.top_p.number_value"),
    ],
)
def test_validate_rejects_absurd_numbers(make_plan, change, path):
    plan = make_plan()
    change(plan)

    with pytest.raises(PlanError) as caught:
        validate_plan(plan)

    assert caught.value.path == path


def test_validate_accepts_limits(make_plan):
    plan = make_plan(duration_s=30 * 86400.0)
    plan.load.rate_per_s = 1e6
    plan.timeouts.total_s = 86400.0

    validate_plan(plan)


def test_limits_match_plan_loader():
    assert validate.MAX_RUN_S == plan_schema.MAX_RUN_S
    assert validate.MAX_TIMEOUT_S == plan_schema.MAX_TIMEOUT_S
    assert validate.MAX_RATE_PER_S == plan_schema.MAX_RATE_PER_S


def test_validate_rejects_oversized_plan(make_plan):
    plan = make_plan()
    plan.request.messages.add(role="user", content="x" * (5 * 1024 * 1024))
    plan.source_yaml = plan.request.messages[0].content

    with pytest.raises(PlanError) as caught:
        validate_plan(plan)

    message = str(caught.value)
    assert caught.value.path == "request.messages"
    assert f"over the limit of {MAX_ASSIGNMENT_BYTES} bytes (8 MiB)" in message
    assert str(validate.assignment_size_bytes(plan)) in message
    assert "shorten the prompt" in message


async def submit_error(harness, plan: pb.Plan) -> grpc.aio.AioRpcError:
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await control.SubmitRun(pb.SubmitRunRequest(plan=plan))
    return caught.value


async def test_submit_huge_duration_invalid(harness, make_plan):
    error = await submit_error(harness, make_plan(duration_s=1e308))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid plan field load.duration_s" in error.details()


async def test_submit_oversized_plan_invalid(harness, make_plan):
    plan = make_plan()
    plan.request.messages.add(role="user", content="x" * (9 * 1024 * 1024))

    error = await submit_error(harness, plan)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "over the limit of 8388608 bytes (8 MiB)" in error.details()


async def test_unreceivable_assignment_given_up(harness, make_plan, wait_until):
    controller = await harness.start(agent_grace_s=5.0)
    # The test agent keeps gRPC's 4 MiB receive limit, like an agent older than this fix.
    agent = harness.agent(controller, "old-agent")
    await agent.connect()
    control = harness.control(controller)
    plan = make_plan()
    plan.request.messages.add(role="user", content="x" * (5 * 1024 * 1024))

    info = await control.SubmitRun(pb.SubmitRunRequest(plan=plan))
    for _ in range(3):
        # The stream ends with RESOURCE_EXHAUSTED, or INTERNAL when a heartbeat write
        # races with the failed read.
        await wait_until(lambda: _stream_failed(agent))
        await agent.disconnect()
        agent.error = None
        await agent.connect()

    async def partial() -> bool:
        response = await control.ListRuns(pb.ListRunsRequest())
        run = next(r for r in response.runs if r.run_id == info.run_id)
        return run.state == pb.PARTIAL

    await wait_until(partial)
    response = await control.ListRuns(pb.ListRunsRequest())
    run = next(r for r in response.runs if r.run_id == info.run_id)
    assert "agent old-agent (target tokyo) did not accept assignment" in run.reason
    assert "sent 3 times" in run.reason


async def _stream_failed(agent) -> bool:
    return agent.error is not None


def test_redact_pasted_keys_in_source():
    plan = pb.Plan(
        source_yaml=(
            f"# my key: {PASTED_KEY}\n"
            "# anthropic: sk-ant-api03-AbCdEf0123456789GhIjKl\n"
            "# groq gsk_AbCdEf0123456789GhIjKlMnOp and xai-AbCdEf0123456789GhIjKlMn\n"
            "# curl -H 'Authorization: Bearer eyJhbGciOi.J9abc123.def456ghi789'\n"
            "name: task-list-for-the-whole-team-2024\n"
            "api_key_env: HF_INFERENCE_API_TOKEN_2\n"
        )
    )
    provider = plan.providers.add(name="relay")
    provider.headers["X-Custom"] = f"prefix {PASTED_KEY}"

    safe = redact_plan(plan)

    lines = safe.source_yaml.splitlines()
    assert lines[0] == f"# my key: {REDACTED}"
    assert lines[1] == f"# anthropic: {REDACTED}"
    assert lines[2] == f"# groq {REDACTED} and {REDACTED}"
    assert lines[3] == f"# curl -H 'Authorization: Bearer {REDACTED}'"
    assert lines[4] == "name: task-list-for-the-whole-team-2024"
    assert lines[5] == "api_key_env: HF_INFERENCE_API_TOKEN_2"
    assert safe.providers[0].headers["X-Custom"] == f"prefix {REDACTED}"


async def test_pasted_key_not_stored(harness, make_plan):
    controller = await harness.start()
    agent = harness.agent(controller, "agent-1")
    await agent.connect()
    control = harness.control(controller)
    plan = make_plan()
    plan.source_yaml = f"name: test-plan  # my key: {PASTED_KEY}\n"

    info = await control.SubmitRun(pb.SubmitRunRequest(plan=plan))
    report = await control.GetReport(pb.GetReportRequest(run_id=info.run_id))

    assert PASTED_KEY not in report.plan.source_yaml
    store = Store(harness.db_path)
    try:
        row = store.get_run(info.run_id)
    finally:
        store.close()
    assert row is not None
    assert PASTED_KEY.encode() not in row.plan


async def test_replaced_stream_gets_goodbye(harness):
    controller = await harness.start()
    first = harness.agent(controller, "dup")
    second = harness.agent(controller, "dup")
    await first.connect()

    await second.connect()

    goodbye = await first.expect("goodbye")
    assert goodbye.reason.startswith("replaced by a newer connection with agent id dup from ")
    assert goodbye.reason.endswith(controller.registry.get("dup").peer)
