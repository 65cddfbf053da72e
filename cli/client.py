"""Blocking gRPC client for the controller's ControlService, used by the CLI commands.

Every call translates ``grpc.RpcError`` into an llmping error so commands only deal
with ``ControllerUnavailableError`` (exit 3; ControllerTlsError when the TLS handshake
failed), ``InputError`` (exit 2) and ``RunError`` (exit 1).
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

import grpc

from llmping.errors import (
    ControllerTlsError,
    ControllerUnavailableError,
    InputError,
    LlmpingError,
    RunError,
)
from llmping.protocol import MAX_MESSAGE_BYTES, TOKEN_REJECTED_PREFIX
from llmping.tls import ClientTls, diagnose_connect_failure
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

DEFAULT_CONTROLLER = "127.0.0.1:50051"
CONTROLLER_ENV = "LLMPING_CONTROLLER"
TOKEN_ENV = "LLMPING_TOKEN"

# Reports over long runs take the controller a while to aggregate.
UNARY_TIMEOUT_S = 30.0
REPORT_TIMEOUT_S = 300.0

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class ClientConfig:
    """Controller address, the bearer token to present to it and the TLS settings."""

    address: str = DEFAULT_CONTROLLER
    token: str | None = field(default=None, repr=False)
    # None dials in plaintext.
    tls: ClientTls | None = None

    @classmethod
    def from_env(cls, address: str | None = None, token: str | None = None) -> ClientConfig:
        """Fill what the flags left out from LLMPING_CONTROLLER and LLMPING_TOKEN."""
        return cls(
            address=address or os.environ.get(CONTROLLER_ENV) or DEFAULT_CONTROLLER,
            token=token or os.environ.get(TOKEN_ENV) or None,
        )


def validate_address(address: str) -> str:
    """Raise InputError unless the address is HOST:PORT with a port in 1..65535."""
    match = _ADDRESS.match(address)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise InputError(
            f"invalid controller address {address!r}, use HOST:PORT such as {DEFAULT_CONTROLLER}"
        )
    return address


def translate_rpc_error(
    error: grpc.RpcError, address: str, tls: ClientTls | None = None
) -> LlmpingError:
    """Map a failed call to the llmping error the CLI reports.

    ``tls`` is the channel's TLS settings, used to explain a failed handshake.
    """
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(code)
    if code == grpc.StatusCode.UNAVAILABLE:
        problem = diagnose_connect_failure(details, tls, address)
        if problem is not None:
            return ControllerTlsError(f"TLS connection to the controller failed: {problem}")
        return ControllerUnavailableError(
            f"cannot reach the controller at {address}, "
            "start it with `llmping controller` or set --controller"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ControllerUnavailableError(
            f"request to the controller at {address} timed out, check that it is running"
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return InputError(_token_rejected_message(details, address))
    if code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
    ):
        return InputError(details)
    return RunError(f"the controller at {address} failed: {code.name}: {details}")


def _token_rejected_message(details: str, address: str) -> str:
    fix = f"pass the controller's token with --token or {TOKEN_ENV}"
    # An llmping controller's details already name this fix, so only its reason is kept.
    if details.startswith(TOKEN_REJECTED_PREFIX):
        return f"the controller at {address} rejected the missing or wrong token, {fix}"
    return f"the controller at {address} rejected the token ({details}), {fix}"


# gRPC waits up to 120 s between connection attempts by default, which would outlast
# the minute `llmping run` spends reconnecting to a restarted controller.
RECONNECT_BACKOFF_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
]


def _channel_options(address: str) -> list[tuple[str, int | str]]:
    options: list[tuple[str, int | str]] = list(RECONNECT_BACKOFF_OPTIONS)
    # A report carries the plan, prompt included, so it can pass gRPC's 4 MiB default;
    # accept what the controller may send.
    options += [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    # gRPC honours http_proxy from the environment, and a proxy cannot reach our loopback.
    host = address.rsplit(":", 1)[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1"):
        options.append(("grpc.enable_http_proxy", 0))
    return options


# How long the main thread waits on a queue before it returns to Python code, where a
# pending signal handler runs. The kernel may deliver SIGINT or SIGTERM to another
# thread, and then nothing wakes a main thread that waits without a timeout.
_SIGNAL_CHECK_S = 0.2
T = TypeVar("T")


def no_interrupt_check() -> None:
    """Do nothing: the check of a client whose interrupts are not deferred."""


def _get_interruptibly(messages: queue.SimpleQueue[T], interrupt_check: Callable[[], None]) -> T:
    """Return the next item of messages, letting Ctrl-C and SIGTERM interrupt the wait."""
    while True:
        interrupt_check()
        try:
            return messages.get(timeout=_SIGNAL_CHECK_S)
        except queue.Empty:
            continue


class ControlClient:
    """One channel to the controller; use as a context manager to close it."""

    def __init__(self, config: ClientConfig) -> None:
        self.address = validate_address(config.address)
        # Check that raises a Ctrl-C or SIGTERM noted earlier (see deferred_interrupts()).
        self.interrupt_check: Callable[[], None] = no_interrupt_check
        self._tls = config.tls
        self._metadata: tuple[tuple[str, str], ...] = ()
        if config.token:
            self._metadata = (("authorization", f"Bearer {config.token}"),)
        options = _channel_options(self.address)
        if config.tls is None:
            self._channel = grpc.insecure_channel(self.address, options=options)
        else:
            options.extend(config.tls.channel_options())
            self._channel = grpc.secure_channel(
                self.address, config.tls.credentials(), options=options
            )
        self._stub = pb_grpc.ControlServiceStub(self._channel)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C or SIGTERM may have interrupted gRPC's own code while it held a lock
            # of the channel, and close() then waits for that lock forever. The process
            # is exiting, and its exit ends the channel's threads anyway.
            return
        self.close()

    def close(self) -> None:
        self._channel.close()

    def submit_run(self, plan: pb.Plan) -> pb.RunInfo:
        try:
            return self._stub.SubmitRun(
                pb.SubmitRunRequest(plan=plan), timeout=UNARY_TIMEOUT_S, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise translate_rpc_error(error, self.address, self._tls) from error

    def watch_run(self, run_id: str) -> Iterator[pb.RunProgress]:
        """Yield progress messages until the controller ends the stream.

        The stream is read on a separate thread and handed over through a queue. Ctrl-C
        raises KeyboardInterrupt in the main thread wherever it is, and raised inside
        gRPC's own waiting code it could leave a lock of the channel held, after which
        closing the channel waited forever. Here it arrives in _get_interruptibly(), or
        at interrupt_check() when the caller defers interrupts.
        """
        call = self._stub.WatchRun(pb.WatchRunRequest(run_id=run_id), metadata=self._metadata)
        messages: queue.SimpleQueue[pb.RunProgress | BaseException | None] = queue.SimpleQueue()

        def read_stream() -> None:
            try:
                for message in call:
                    messages.put(message)
                messages.put(None)
            except BaseException as error:
                # Every failure goes to the thread that reads the queue, which raises it.
                messages.put(error)

        threading.Thread(target=read_stream, name="llmping-watch-run", daemon=True).start()
        try:
            while (item := _get_interruptibly(messages, self.interrupt_check)) is not None:
                if isinstance(item, grpc.RpcError):
                    raise translate_rpc_error(item, self.address, self._tls) from item
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Stops the stream when the caller breaks out early or Ctrl-C interrupts it.
            call.cancel()

    def cancel_run(self, run_id: str, reason: str) -> pb.RunInfo:
        try:
            return self._stub.CancelRun(
                pb.CancelRunRequest(run_id=run_id, reason=reason),
                timeout=UNARY_TIMEOUT_S,
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise translate_rpc_error(error, self.address, self._tls) from error

    def list_agents(self) -> list[pb.AgentInfo]:
        try:
            response = self._stub.ListAgents(
                pb.ListAgentsRequest(), timeout=UNARY_TIMEOUT_S, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise translate_rpc_error(error, self.address, self._tls) from error
        return list(response.agents)

    def list_runs(self, limit: int) -> list[pb.RunInfo]:
        try:
            response = self._stub.ListRuns(
                pb.ListRunsRequest(limit=limit), timeout=UNARY_TIMEOUT_S, metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise translate_rpc_error(error, self.address, self._tls) from error
        return list(response.runs)

    def get_report(self, run_id: str) -> pb.Report:
        try:
            return self._stub.GetReport(
                pb.GetReportRequest(run_id=run_id),
                timeout=REPORT_TIMEOUT_S,
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise translate_rpc_error(error, self.address, self._tls) from error
