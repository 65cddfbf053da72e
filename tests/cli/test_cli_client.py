"""gRPC errors from the controller become clear CLI errors with the documented exit status."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import grpc
import pytest
from click.testing import CliRunner

from llmping.cli import run_cmds
from llmping.cli.client import ClientConfig, ControlClient, validate_address
from llmping.errors import ControllerUnavailableError, InputError, RunError
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

ServeControl = Callable[[pb_grpc.ControlServiceServicer], AbstractContextManager[str]]


class AbortingControl(pb_grpc.ControlServiceServicer):
    """Aborts every call with one status code, and records the metadata it received."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details
        self.metadata: list[tuple[str, str]] = []

    def _abort(self, context: grpc.ServicerContext) -> None:
        self.metadata = [(k, v) for k, v in context.invocation_metadata() if isinstance(v, str)]
        context.abort(self.code, self.details)

    def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.ServicerContext
    ) -> pb.ListAgentsResponse:
        self._abort(context)
        return pb.ListAgentsResponse()

    def GetReport(self, request: pb.GetReportRequest, context: grpc.ServicerContext) -> pb.Report:
        self._abort(context)
        return pb.Report()

    def CancelRun(self, request: pb.CancelRunRequest, context: grpc.ServicerContext) -> pb.RunInfo:
        self._abort(context)
        return pb.RunInfo()


def test_closed_port_exits_3(unused_port: int) -> None:
    address = f"127.0.0.1:{unused_port}"
    result = CliRunner().invoke(run_cmds.agents, ["--controller", address])
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: cannot reach the controller at {address}, "
        "start it with `llmping controller` or set --controller\n"
    )


def test_env_sets_controller_address(unused_port: int) -> None:
    address = f"127.0.0.1:{unused_port}"
    result = CliRunner().invoke(run_cmds.runs, [], env={"LLMPING_CONTROLLER": address})
    assert result.exit_code == 3
    assert address in result.stderr


def test_unavailable_from_server_exits_3(control_server: ServeControl) -> None:
    with control_server(AbortingControl(grpc.StatusCode.UNAVAILABLE, "shutting down")) as address:
        result = CliRunner().invoke(run_cmds.agents, ["--controller", address])
    assert result.exit_code == 3
    assert "cannot reach the controller" in result.stderr


def test_invalid_argument_exits_2_with_message(control_server: ServeControl) -> None:
    servicer = AbortingControl(
        grpc.StatusCode.INVALID_ARGUMENT, "invalid plan field load.rate_per_s"
    )
    with control_server(servicer) as address:
        result = CliRunner().invoke(run_cmds.cancel, ["r1", "--controller", address])
    assert result.exit_code == 2
    assert result.stderr == "error: invalid plan field load.rate_per_s\n"


def test_not_found_exits_2(control_server: ServeControl) -> None:
    servicer = AbortingControl(grpc.StatusCode.NOT_FOUND, "no run with id 'nope'")
    with control_server(servicer) as address:
        result = CliRunner().invoke(run_cmds.report, ["nope", "--controller", address])
    assert result.exit_code == 2
    assert "error: no run with id 'nope'" in result.stderr


def test_unauthenticated_says_how_to_fix_and_sends_token(control_server: ServeControl) -> None:
    servicer = AbortingControl(grpc.StatusCode.UNAUTHENTICATED, "wrong token")
    with control_server(servicer) as address:
        result = CliRunner().invoke(
            run_cmds.agents, ["--controller", address], env={"LLMPING_TOKEN": "t0ken"}
        )
    assert result.exit_code == 2
    assert "rejected the token (wrong token)" in result.stderr
    assert "--token or LLMPING_TOKEN" in result.stderr
    assert "t0ken" not in result.stderr
    assert ("authorization", "Bearer t0ken") in servicer.metadata


def test_internal_error_exits_1(control_server: ServeControl) -> None:
    servicer = AbortingControl(grpc.StatusCode.INTERNAL, "disk full")
    with (
        control_server(servicer) as address,
        ControlClient(ClientConfig(address=address)) as client,
        pytest.raises(RunError) as caught,
    ):
        client.list_agents()
    assert "INTERNAL: disk full" in str(caught.value)
    assert caught.value.exit_code == 1


def test_client_raises_typed_errors(unused_port: int) -> None:
    address = f"127.0.0.1:{unused_port}"
    with (
        ControlClient(ClientConfig(address=address)) as client,
        pytest.raises(ControllerUnavailableError),
    ):
        client.list_runs(5)


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:", "127.0.0.1:99999", "a b:1"])
def test_bad_address_is_input_error(address: str) -> None:
    with pytest.raises(InputError, match="invalid controller address"):
        validate_address(address)
    result = CliRunner().invoke(run_cmds.runs, ["--controller", address])
    assert result.exit_code == 2


def test_ipv6_address_is_accepted() -> None:
    assert validate_address("[::1]:50051") == "[::1]:50051"


class LargeReportControl(pb_grpc.ControlServiceServicer):
    """Serves a report larger than gRPC's default 4 MiB receive limit."""

    def __init__(self, report: pb.Report) -> None:
        self.report = report

    def GetReport(self, request: pb.GetReportRequest, context: grpc.ServicerContext) -> pb.Report:
        return self.report


def test_report_over_4_mib_is_received(control_server: ServeControl) -> None:
    prompt = "写" * (2 * 1024 * 1024)  # 6 MiB of UTF-8, as a long prompt would carry
    report = pb.Report(run=pb.RunInfo(run_id="run-big"))
    report.plan.request.messages.add(role="user", content=prompt)
    assert report.ByteSize() > 4 * 1024 * 1024
    with (
        control_server(LargeReportControl(report)) as address,
        ControlClient(ClientConfig(address=address)) as client,
    ):
        received = client.get_report("run-big")
    assert received.plan.request.messages[0].content == prompt
